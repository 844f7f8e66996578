"""Several actions on one host in one round trip: the batch script and its parser."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from reconciler.driver.commands import RemoteCommand, UnsafeValue, check

if TYPE_CHECKING:
    pass
from reconciler.driver.transport import CommandResult

_NONCE = re.compile(r"^[0-9a-f]{16,64}$")


def batch(scripts: list[str], nonce: str, timeout: int | None = None) -> RemoteCommand:
    """Action scripts for one host as one script: each runs in its own subshell (its exit,
    cd and umask stay inside), with stdin from /dev/null (the batch itself is on stdin),
    between marker lines that carry its exit code on both stdout and stderr. ``nonce`` is
    random per batch, so an action's output cannot forge a marker.

    With ``timeout`` (seconds), a watchdog ends the batch on the host when it runs longer:
    it prints ``@@<nonce> timeout <seconds>`` on stderr and signals the batch's process
    group (TERM, then KILL 2 s later). sshd makes every session's command a process-group
    leader, so this reaches the programs the actions started (a hung dispatcher), which
    would otherwise outlive a run that gave up on them. The caller waits a little longer
    than ``timeout`` (`BATCH_TIMEOUT_GRACE`) so that it reads what the host said."""
    n = check(_NONCE, nonce, "batch nonce")
    parts = []
    if timeout is not None:
        t = int(timeout)
        if t < 1:
            raise UnsafeValue(f"refusing batch timeout {timeout!r}")
        # the loop's sleeps do not hold the channel's output open: a batch that ends in time
        # kills the watchdog and returns at once
        parts.append(
            "( trap '' TERM; s=0\n"
            f"  while [ $s -lt {t} ]; do sleep 1 </dev/null >/dev/null 2>&1; s=$((s + 1)); done\n"
            f"  printf '\\n@@{n} timeout {t}\\n' >&2; kill -TERM 0; sleep 2 </dev/null >/dev/null 2>&1; kill -KILL 0\n"
            ") </dev/null >/dev/null &\nCSYNC_WATCHDOG=$!"
        )
    for i, script in enumerate(scripts):
        parts.append(
            f"printf '\\n@@{n} begin {i}\\n'; printf '\\n@@{n} begin {i}\\n' >&2\n"
            f"(\n{script}\n) </dev/null\n"
            f"rc=$?; printf '\\n@@{n} end {i} %d\\n' $rc; printf '\\n@@{n} end {i} %d\\n' $rc >&2"
        )
    if timeout is not None:
        parts.append("kill -KILL $CSYNC_WATCHDOG 2>/dev/null")
    return RemoteCommand("\n".join(parts) + "\n", f"{len(scripts)} action(s)")


# Seconds the driver waits for a batch beyond its on-host timeout (the watchdog's TERM,
# KILL and the last output on the way back).
BATCH_TIMEOUT_GRACE = 5


def parse_batch(result: CommandResult, nonce: str, count: int) -> list[tuple[int | None, str, str]]:
    """(exit code or None when the action did not finish, stdout, stderr) per action of a
    `batch` script."""
    out_rc, out = _split(result.stdout, nonce, count)
    err_rc, err = _split(result.stderr, nonce, count)
    return [(out_rc[i] if out_rc[i] is not None else err_rc[i], out[i], err[i]) for i in range(count)]


def batch_timeout(result: CommandResult, nonce: str) -> int | None:
    """The seconds after which the batch's watchdog stopped it on the host, if it did."""
    marker = f"@@{nonce} timeout "
    for line in result.stderr.decode("utf-8", "replace").splitlines():
        if line.startswith(marker) and line[len(marker) :].strip().isdigit():
            return int(line[len(marker) :])
    return None


def _split(data: bytes, nonce: str, count: int) -> tuple[list[int | None], list[str]]:
    marker = f"@@{nonce} "
    codes: list[int | None] = [None] * count
    chunks: list[list[str]] = [[] for _ in range(count)]
    current: int | None = None
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(marker):
            parts = line.split()
            try:
                index = int(parts[2])
                if parts[1] == "begin" and 0 <= index < count:
                    current = index
                elif parts[1] == "end" and 0 <= index < count:
                    codes[index] = int(parts[3])
                    current = None
            except (IndexError, ValueError):
                pass
            continue
        if current is not None:
            chunks[current].append(line)
    return codes, ["\n".join(c).strip() for c in chunks]
