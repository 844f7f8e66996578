"""The one progress view: the probe of `plan`, `facts`, `trust` and `import`, trust's live
checks, and apply's waves.

Three modes, picked from the stream it writes to:

- ``rich``: the stream is a terminal and ``CI`` is not set: a transient rich progress bar
  per task (``probed ━━━━━━━━━━ 12/200 0:00:01``), gone when the work is done.
- ``lines``: the stream is a terminal but ``CI`` is set: no bar, no cursor movement, one
  plain line per task when the view stops (``probed 200/200 in 1.3s``).
- ``off``: the stream is not a terminal (a pipe, a file, a CI log), or the command's output
  is for a machine (JSON): nothing at all.

rich is imported only in ``rich`` mode, so a command whose output is JSON never loads it.
The callbacks run on the thread that waits for the hosts (transport.fan_out); rich's
progress is thread-safe regardless.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Literal, Self, TextIO

import click

from reconciler.views.style import interactive

if TYPE_CHECKING:
    from rich.progress import Progress

Mode = Literal["rich", "lines", "off"]


def progress_mode(stream: TextIO, enabled: bool = True) -> Mode:
    if not enabled or not stream.isatty():
        return "off"
    return "rich" if interactive(stream) else "lines"


class Task:
    """One counter of the view; calling it (with any arguments, so it fits every
    ``on_done`` callback) counts one more item done. ``total`` None: a count without an end."""

    def __init__(self, rich: Progress | None, label: str, total: int | None):
        self.label, self.total, self.done = label, total, 0
        self.started = time.monotonic()
        self.seconds: float | None = None
        self._rich = rich
        self._id = rich.add_task(label, total=total) if rich is not None else None

    def __call__(self, *_ignored) -> None:
        self.done += 1
        if self._rich is not None and self._id is not None:
            self._rich.advance(self._id)
        if self.total is not None and self.done >= self.total and self.seconds is None:
            self.seconds = time.monotonic() - self.started

    def describe(self, label: str) -> None:
        """Change what the bar says (a live count, for instance)."""
        self.label = label
        if self._rich is not None and self._id is not None:
            self._rich.update(self._id, description=label)

    def line(self) -> str:
        seconds = self.seconds if self.seconds is not None else time.monotonic() - self.started
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.label} {self.done}{of} in {seconds:.1f}s"


class ProgressView:
    """``with ProgressView(enabled=...) as progress: work(on_done=progress.task("probed", n))``.

    ``stream`` defaults to standard error (the probe's progress never mixes with a plan on
    standard output); apply draws on standard output, where its action lines go.
    """

    def __init__(self, *, enabled: bool = True, stream: TextIO | None = None, color: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.mode: Mode = progress_mode(self.stream, enabled)
        self.tasks: list[Task] = []
        self._rich: Progress | None = None
        self._running = False
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console(file=self.stream, highlight=False, no_color=not color)
            self._rich = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                # lines written to the stream meanwhile are printed above the bar; standard
                # output is left alone when the bar is on standard error
                redirect_stdout=self.stream is sys.stdout,
                redirect_stderr=True,
            )

    def task(self, label: str, total: int | None = None) -> Task:
        t = Task(self._rich, label, total)
        self.tasks.append(t)
        return t

    def print(self, text: str = "") -> None:
        """A line above the bar (ANSI colours kept), or a plain line when there is no bar."""
        if self._rich is not None and self._running:
            from rich.text import Text

            self._rich.console.print(Text.from_ansi(text), soft_wrap=True)
        else:
            click.echo(text, file=self.stream)

    def start(self) -> Self:
        if self._rich is not None and not self._running:
            self._rich.start()
        self._running = True
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if self._rich is not None:
            self._rich.stop()
        elif self.mode == "lines":
            for t in self.tasks:
                click.echo(t.line(), file=self.stream)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
