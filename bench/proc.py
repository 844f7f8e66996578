"""How bench/ starts csync as a program: this interpreter, `-m reconciler.cli.main`, with
the `reconciler` package this process imported first on PYTHONPATH. So a benchmark measures
the code it was started from (a work tree, a checkout), whatever `csync` script is installed
and whatever directory the program runs in."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
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


@dataclass
class Measured:
    """One program's run: wall seconds, CPU seconds (user + system, its children included
    once they were waited for) and peak resident set (MiB), from wait4's rusage."""

    seconds: float
    cpu: float
    rss_mib: float
    done: subprocess.CompletedProcess


TIME = "/usr/bin/time"


def measured_run(argv: list[str], *, env: dict | None = None, cwd: Path | None = None, timeout: float = 1800) -> Measured:
    """Run ``argv`` to its end with its output in temporary files (no pipe to drain, so the
    child can be reaped with os.wait4: its CPU, its children's included).

    The peak RSS comes from GNU time (``%M``) run in between, not from wait4: Linux carries
    a process's high-water mark across exec, and a child forked from a parent that holds a
    2,000-host lab (700 MiB) reported the parent's. time is small, so what it reports is the
    program's own. Without /usr/bin/time, wait4's figure is kept (an upper bound)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        wrapped = [TIME, "-f", "%M", "-o", rss.name, *argv] if os.path.exists(TIME) else argv
        start = time.monotonic()
        proc = subprocess.Popen(wrapped, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(argv, proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))
        peak = usage.ru_maxrss
        lines = [x for x in rss.read().split() if x.isdigit()]
        if wrapped is not argv and lines:
            peak = int(lines[-1])  # after time's "Command exited with non-zero status N" line, if any
    return Measured(seconds, usage.ru_utime + usage.ru_stime, peak / 1024, done)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def patient_state(lab_state: Path, where: Path, connect_timeout: float) -> Path:
    """A copy of a lab's desired state with ``access.connect_timeout`` raised: at 2,000
    hosts on 2 cores shared with other work, sshd answers a handshake after more than the
    lab's 5 s, and csync rightly calls such a host unreachable. The floor and csync read
    the same copy."""
    text = lab_state.read_text()
    if "  connect_timeout: 5\n" not in text:
        raise SystemExit(f"no 'connect_timeout: 5' line in {lab_state}")
    path = where / "desired-state.yaml"
    path.write_text(text.replace("  connect_timeout: 5\n", f"  connect_timeout: {connect_timeout:g}\n"))
    return path


def apply_auto(state, pool, journal, *, lock_timeout: float, lease: int | None = None, events=None):
    """`csync apply --auto-approve` in this process (no saved plan, every prompt answered yes),
    over ``pool``, journaled in ``journal``: the benchmarks' and the lab tests' apply. Returns
    the ApplyReport."""
    from reconciler.apply.events import Events, StopFlag
    from reconciler.apply.run import ApplyOptions, run_apply

    return run_apply(
        state,
        pool,
        saved_plan=None,
        options=ApplyOptions(lock_timeout=lock_timeout, lease=lease),
        confirm=lambda plan: True,
        events=events if events is not None else Events(),
        journal=journal,
        stop=StopFlag(),
    )
