"""Serviceguard's own prediction of a cluster operation (the -t preview), and the rule that
compares it with csync's. Pure: reconciler/driver/preview.py runs the previews and parses
what the hosts print into `PreviewRun`s; `judge` decides; the planner takes the verdicts as
facts (`make_plan(..., previews=...)`).

From A.11.19, cmrunpkg, cmhaltpkg and ``cmmodpkg -e`` take -t [doc: "Managing Serviceguard",
16th edition, "Previewing the Effect of Cluster Changes"]: the command predicts what it would
do without doing it, one ``package:P|node:N|action:A`` line per package it would start, halt
or fail over, then ``<command>: Command preview completed successfully``; a command it would
refuse is refused. csync previews each operation it asks of Serviceguard:

    operation  csync runs                          previewed as          csync predicts
    start      cmrunpkg -n N P && cmmodpkg -e P    cmrunpkg -t -n N P    package:P|node:N|action:starting
    halt       cmhaltpkg P                         cmhaltpkg -t P        package:P|node:OWNER|action:halting
    enable     cmmodpkg -e P (P runs)              cmmodpkg -e -t P      no change

A start's second command is not previewed: Serviceguard previews one command against the
cluster as it is, and ``cmmodpkg -e -t`` of the package still halted would predict an AUTO_RUN
start, which is not what the sequence does; on the package the first command started it
changes no placement (the enable row). dispatch-member is not a Serviceguard command.

The rule: a preview that could not run, is refused, or predicts anything else than csync
blocks the operation (and what depends on it), and so does a cmversion that fails; a release
before A.11.19, a cmversion that is not installed, or a release it prints that csync cannot
read, has no preview: the plan says so and proceeds, as csync did before previews.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from reconciler.domain import dsau
from reconciler.domain.base import Frozen

Operation = Literal["start", "halt", "enable"]

# [doc] one line per predicted change, and the closing line
PREDICTION = re.compile(r"^package:([^|\s]+)\|node:([^|\s]+)\|action:([a-z_]+)$")
COMPLETED = "Command preview completed successfully"
_RELEASE = re.compile(r"^A\.(\d\d)\.(\d\d)(?:\.\d\d)?$")  # as the preview script's shell pattern reads it
NOT_FOUND = 127  # the shell's exit status for a command it cannot find


def release_tuple(text: str | None) -> tuple[int, int] | None:
    """``A.11.20.00`` or ``A.11.20`` -> (11, 20); None for anything else."""
    m = _RELEASE.fullmatch(text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def release_name(release: tuple[int, int]) -> str:
    return f"A.{release[0]:02d}.{release[1]:02d}"


PREVIEW_SINCE_NAME = release_name(dsau.SERVICEGUARD_PREVIEW_SINCE)


def has_preview(release: str | None) -> bool | None:
    """Whether ``release`` has -t; None when it cannot be read."""
    r = release_tuple(release)
    return None if r is None else r >= dsau.SERVICEGUARD_PREVIEW_SINCE


def prediction(package: str, node: str, action: str) -> str:
    return f"package:{package}|node:{node}|action:{action}"


@dataclass(frozen=True)
class PreviewRequest:
    """One operation of a plan to preview: ``node`` is where csync starts the package
    (start), or where it runs (halt, enable); ``host`` is where the action, and so its
    preview, runs."""

    action: str  # the plan's action id
    operation: Operation
    package: str
    node: str
    host: str

    @property
    def argv(self) -> tuple[str, ...]:
        if self.operation == "start":
            return ("cmrunpkg", "-t", "-n", self.node, self.package)
        if self.operation == "halt":
            return ("cmhaltpkg", "-t", self.package)
        return ("cmmodpkg", "-e", "-t", self.package)

    @property
    def command(self) -> str:
        return " ".join(self.argv)

    @property
    def expected(self) -> tuple[str, ...]:
        """csync's prediction, in Serviceguard's preview format."""
        if self.operation == "start":
            return (prediction(self.package, self.node, "starting"),)
        if self.operation == "halt":
            return (prediction(self.package, self.node, "halting"),)
        return ()


@dataclass(frozen=True)
class PreviewRun:
    """What a host said for one preview (reconciler/driver/preview.py parses it)."""

    release: str | None = None  # cmversion's first line
    release_exit: int | None = None
    ran: bool = False  # the script ran the preview: the release has -t
    exit_code: int | None = None  # None: it did not finish
    stdout: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()
    error: str | None = None  # the script could not run or complete on the host


class Preview(Frozen):
    """Serviceguard's prediction of one operation beside csync's, as a plan records it."""

    action: str
    operation: Operation
    package: str
    node: str
    host: str
    command: str
    release: str | None = None
    expected: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()
    exit_code: int | None = None
    agrees: bool | None = None  # None: no preview (a release without -t, or unreadable)
    verdict: str = ""

    @property
    def blocks(self) -> bool:
        return self.agrees is False

    @property
    def predicted(self) -> tuple[str, ...]:
        """Serviceguard's prediction lines, in its order."""
        return tuple(line for line in self.lines if PREDICTION.fullmatch(line))


def _shown(lines: Iterable[str]) -> str:
    return ", ".join(lines) or "no change"


def _said(lines: tuple[str, ...], shown: int = 3) -> str:
    """Serviceguard's message in a verdict: its first lines (the plan records them all)."""
    return "; ".join(lines[:shown]) + (f"; ... ({len(lines) - shown} more lines)" if len(lines) > shown else "") or "no message"


def judge(request: PreviewRequest, run: PreviewRun) -> Preview:
    """The rule: Serviceguard agrees when the preview completed (exit 0 and its closing line)
    and predicts exactly csync's changes; otherwise it blocks, except where the release has no
    preview. Only the exit status, the closing line and the prediction lines are read; a
    message is shown, never parsed."""
    base = {
        "action": request.action,
        "operation": request.operation,
        "package": request.package,
        "node": request.node,
        "host": request.host,
        "command": request.command,
        "release": run.release if run.release_exit == 0 else None,
        "expected": request.expected,
        "lines": run.stdout + run.stderr,
        "exit_code": run.exit_code,
    }
    if run.error is not None:
        return Preview(**base, agrees=False, verdict=f"the preview could not run on {request.host}: {run.error}")
    if not run.ran:
        said = run.release or "nothing"
        if run.release_exit == NOT_FOUND:
            return Preview(
                **base, agrees=None, verdict=f"no preview: cmversion was not found on {request.host} ({said}), so csync cannot tell the Serviceguard release"
            )
        if run.release_exit != 0:
            return Preview(**base, agrees=False, verdict=f"cmversion failed on {request.host} (exit {run.release_exit}): {said}")
        if has_preview(run.release) is False:
            return Preview(**base, agrees=None, verdict=f"no preview on this release ({run.release}; -t from {PREVIEW_SINCE_NAME})")
        # unreadable, or not exactly a release as the script's shell pattern reads it
        return Preview(**base, agrees=None, verdict=f"no preview: cannot tell the Serviceguard release (cmversion said {said!r})")
    if run.exit_code is None:
        return Preview(**base, agrees=False, verdict=f"the preview did not complete on {request.host}")
    if run.exit_code != 0:
        said = _said(run.stderr or run.stdout)
        return Preview(**base, agrees=False, verdict=f"Serviceguard refuses it (exit {run.exit_code}): {said}")
    if not any(line == f"{request.argv[0]}: {COMPLETED}" for line in run.stdout):
        return Preview(**base, agrees=False, verdict=f"the preview exited 0 without saying '{request.argv[0]}: {COMPLETED}'")
    predicted = tuple(line for line in run.stdout if PREDICTION.fullmatch(line))
    if sorted(predicted) == sorted(request.expected):
        return Preview(**base, agrees=True, verdict=f"Serviceguard predicts the same: {_shown(predicted)}")
    return Preview(**base, agrees=False, verdict=f"Serviceguard predicts {_shown(predicted)}, csync {_shown(request.expected)}")


def refusals(previews: Iterable[Preview]) -> dict[tuple[str, str], str]:
    """(operation, node) -> why, for every preview that blocks its operation: what
    `decide_package` takes as facts."""
    return {(p.operation, p.node): blocking_message(p) for p in previews if p.blocks}


def blocking_message(p: Preview) -> str:
    release = f", {p.release}" if p.release else ""
    if p.exit_code is None:  # Serviceguard was not asked, or did not answer
        return (
            f"Serviceguard's preview ({p.command} on {p.host}{release}) cannot confirm it: {p.verdict.rstrip('.')}. "
            f"Not planned, nor what depends on it; plan again"
        )
    return (
        f"Serviceguard's preview ({p.command} on {p.host}{release}) does not confirm it: {p.verdict.rstrip('.')}; csync "
        f"planned it from the probe's facts, predicting {_shown(p.expected)}: the cluster changed since, or Serviceguard "
        f"sees what csync does not. Not planned, nor what depends on it; plan again"
    )
