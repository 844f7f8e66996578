"""What every view shares: whether a stream is a terminal to draw on, colour, and the
one-line spelling of a plan's finding.

Light on purpose (click and the standard library only): `csync validate` and `--help`
import the command line, which imports this.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO

import click

Styler = Callable[..., str]


def use_color(stream: TextIO | None = None) -> bool:
    """Colour when ``stream`` (default: standard output) is a terminal and NO_COLOR is not set."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR")


def interactive(stream: TextIO | None = None) -> bool:
    """Draw on ``stream`` (progress bars, rich tables) only when it is a terminal and the
    ``CI`` environment variable is not set: a CI log, a pipe or a file gets plain lines."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("CI")


def _plain(text: str, **_kw) -> str:
    return text


def styler(color: bool) -> Styler:
    """``style(text, fg=..., bold=...)``: click.style when ``color``, the text unchanged otherwise."""
    return click.style if color else _plain


def finding_line(finding) -> str:
    """A plan's finding (blocked, unknown, notice) on one line: ``address (on host): message``."""
    on = f" (on {finding.host})" if finding.host else ""
    return f"{finding.address}{on}: {finding.message}"
