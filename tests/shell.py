"""Run a csync script with a real /bin/sh the way it runs on a host over ssh.

sshd makes every session its own process group (the probe's watcher and the batch's watchdog
signal that group, `kill 0`), so the shell gets a session of its own here too: never the test
run's group. A script that watches its standard input (the probe, BOUNDED=stdin in probe.sh;
its watcher arms only where SSH_CONNECTION is set, as sshd sets it) has it held open until
the shell ends, as the transport does (Session.run(hold_stdin=True)); ``close_stdin_after``
closes it earlier, as a transport that gives up does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

BOUNDED = "\nBOUNDED=stdin\n"


def watches_stdin(script: str) -> bool:
    return BOUNDED in script


def run_sh(
    argv: Sequence[str],
    script: bytes | str | None = None,
    *,
    env: dict[str, str] | None = None,
    cwd=None,
    timeout: float = 30,
    hold_stdin: bool | None = None,
    close_stdin_after: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``argv`` (a shell, or a shell and a program) with ``script`` on its standard input.
    ``hold_stdin`` (default: whether ``script`` watches it) keeps the input open until the
    process ends, or for ``close_stdin_after`` seconds. Raises subprocess.TimeoutExpired
    (after killing the session's group) past ``timeout``."""
    data = script.encode() if isinstance(script, str) else (script or b"")
    hold = watches_stdin(data.decode("utf-8", "replace")) if hold_stdin is None else hold_stdin
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True)
    assert proc.stdin and proc.stdout and proc.stderr
    chunks: dict[str, bytes] = {}

    def drain(name, stream):
        chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
    except BrokenPipeError:
        pass
    if not hold:
        proc.stdin.close()
    deadline = time.monotonic() + timeout
    try:
        if hold and close_stdin_after is not None:
            try:
                proc.wait(close_stdin_after)
            except subprocess.TimeoutExpired:
                proc.stdin.close()
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        if not proc.stdin.closed:
            proc.stdin.close()
        for r in readers:
            r.join(10)
    return subprocess.CompletedProcess(list(argv), proc.returncode, chunks.get("out", b""), chunks.get("err", b""))
