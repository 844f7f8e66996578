"""How bench/ starts csync as a program: this interpreter, `-m reconciler.cli.main`, with
the `reconciler` package this process imported first on PYTHONPATH. So a benchmark measures
the code it was started from (a work tree, a checkout), whatever `csync` script is installed
and whatever directory the program runs in."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import reconciler

CSYNC = (sys.executable, "-m", "reconciler.cli.main")
SOURCE = str(Path(reconciler.__file__).resolve().parents[1])


def csync_argv(*args: str) -> list[str]:
    return [*CSYNC, *args]


def csync_env(**extra: str) -> dict[str, str]:
    """The environment for a csync program: ours, the source first on PYTHONPATH, ``extra``."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": SOURCE + (os.pathsep + path if path else ""), **extra}
