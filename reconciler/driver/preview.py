"""Serviceguard's -t previews of a plan's cluster operations: one script per host, and its parser.

The script asks ``cmversion`` for the release first and runs the previews only on a release
that has -t (`dsau.SERVICEGUARD_PREVIEW_SINCE`): an older command would take -t for an
unknown option at best, and csync never hands a command that changes the cluster an option
it may not know. Each preview runs as an action of a `batch` (its own subshell, stdin from
/dev/null, between nonce markers carrying its exit code), under the batch's watchdog. What
the output means is decided in reconciler/domain/preview.py.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping, Sequence

from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.domain.preview import PreviewRequest, PreviewRun
from reconciler.driver.batch import BATCH_TIMEOUT_GRACE, batch, batch_timeout, parse_batch
from reconciler.driver.commands import NAME, RemoteCommand, UnsafeValue, check, quote_argv, search_path
from reconciler.driver.transport import CommandResult, Pool, TransportError, fan_out

_OPERATIONS = ("start", "halt", "enable")
_RELEASE_LINE = re.compile(r"^@@(?P<nonce>[0-9a-f]+) release (?P<rc>\d+) ?(?P<text>.*)$")


def preview_argv(request: PreviewRequest) -> list[str]:
    """The preview's command line, from validated values only."""
    if request.operation not in _OPERATIONS:
        raise UnsafeValue(f"refusing preview operation {request.operation!r}")
    check(NAME, request.package, "package name")
    check(NAME, request.node, "node name")
    return list(request.argv)


def preview_script(requests: Sequence[PreviewRequest], nonce: str, timeout: int, *, serviceguard_path: str) -> RemoteCommand:
    """``cmversion``, then, on a release with -t, every preview of ``requests`` (one host's).
    The release is read with the shell's own pattern matching (no sed, awk or tr that could
    fail and turn a release into "unreadable"); cmversion's exit status and first line go back
    as they are."""
    major, minor = dsau.SERVICEGUARD_PREVIEW_SINCE
    previews = batch([quote_argv(preview_argv(r)) for r in requests], nonce, timeout=timeout)  # checks the nonce
    sg_path = shlex.quote(search_path(serviceguard_path, "Serviceguard search path"))
    script = (
        f"PATH={sg_path}:$PATH; export PATH\n"
        "LC_ALL=C; export LC_ALL\n"
        "v=$(cmversion </dev/null 2>&1); rc=$?\n"
        "nl='\n'\n"
        'v=${v%%"$nl"*}\n'
        f'printf \'\\n@@{nonce} release %d %s\\n\' "$rc" "$v"\n'
        "ok=\n"
        'if [ "$rc" -eq 0 ]; then\n'
        "  case $v in\n"
        "    A.[0-9][0-9].[0-9][0-9]|A.[0-9][0-9].[0-9][0-9].[0-9][0-9])\n"
        "      r=${v#A.}; maj=${r%%.*}; r=${r#*.}; min=${r%%.*}\n"
        f'      if [ "$maj" -gt {major} ] || {{ [ "$maj" -eq {major} ] && [ "$min" -ge {minor} ]; }}; then ok=1; fi ;;\n'
        "  esac\n"
        "fi\n"
        'if [ -n "$ok" ]; then\n'
        f"printf '\\n@@{nonce} previews\\n'\n"
        f"{previews.script}"
        "else\n"
        f"printf '\\n@@{nonce} no-previews\\n'\n"
        "fi\n"
    )
    return RemoteCommand(script, f"csync preview ({len(requests)}): " + "; ".join(r.command for r in requests))


MAX_LINES = 50  # of one preview's output kept: Serviceguard prints a line per package it acts on
MAX_LINE = 300


def _clean(text: str) -> tuple[str, ...]:
    """A host's output as plan-safe lines: control characters shown escaped, bounded."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    shown = ["".join(c if c.isprintable() else repr(c)[1:-1] for c in line)[:MAX_LINE] for line in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        shown.append(f"... ({len(lines) - MAX_LINES} more lines)")
    return tuple(shown)


def parse_preview(result: CommandResult, nonce: str, count: int) -> list[PreviewRun]:
    """One `PreviewRun` per request of a `preview_script`, in its order."""
    release: str | None = None
    release_exit: int | None = None
    ran = False
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        m = _RELEASE_LINE.fullmatch(line)
        if m and m["nonce"] == nonce:
            release, release_exit = (next(iter(_clean(m["text"])), None)), int(m["rc"])
        elif line == f"@@{nonce} previews":
            ran = True
    if release_exit is None:
        why = result.stderr_text(300) or f"exit {result.exit_code}, no output"
        return [PreviewRun(error=f"the preview script did not run ({why})")] * count
    if not ran:
        return [PreviewRun(release=release, release_exit=release_exit)] * count
    stopped = batch_timeout(result, nonce)
    runs = []
    for code, out, err in parse_batch(result, nonce, count):
        error = f"timed out after {stopped} s; stopped on the host" if code is None and stopped else None
        runs.append(PreviewRun(release=release, release_exit=release_exit, ran=True, exit_code=code, stdout=_clean(out), stderr=_clean(err), error=error))
    return runs


def run_previews(state: DesiredState, pool: Pool, requests: Sequence[PreviewRequest], unreachable: Mapping[str, str] | None = None) -> dict[str, PreviewRun]:
    """Run every preview, one script per host, hosts in parallel; results by action id.
    A host in ``unreachable`` (name -> why) is not contacted again. Never raises for host
    trouble: it is the preview's result."""
    unreachable = unreachable or {}
    by_host: dict[str, list[PreviewRequest]] = {}
    for r in requests:
        by_host.setdefault(r.host, []).append(r)
    results: dict[str, PreviewRun] = {}
    for name in [h for h in by_host if h in unreachable]:
        for r in by_host.pop(name):
            results[r.action] = PreviewRun(error=f"{name} did not answer the probe ({unreachable[name]})")

    def work(host) -> list[PreviewRun]:
        mine = by_host[host.name]
        nonce = secrets.token_hex(16)
        timeout = int(state.access.command_timeout) * len(mine)
        try:
            script = preview_script(mine, nonce, max(1, timeout), serviceguard_path=state.platform.serviceguard_path)
        except UnsafeValue as e:
            return [PreviewRun(error=str(e))] * len(mine)
        try:
            result = pool.connect(host).run_script(script, timeout=timeout + BATCH_TIMEOUT_GRACE)
        except TransportError as e:
            return [PreviewRun(error=e.reason)] * len(mine)
        return parse_preview(result, nonce, len(mine))

    done = fan_out([state.host(name) for name in by_host], work, parallelism=state.access.parallelism)
    for name, runs in done.items():
        for r, run in zip(by_host[name], runs):
            results[r.action] = run
    return results
