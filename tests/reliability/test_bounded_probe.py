"""Issue #19: a probe that times out leaves nothing running on its host.

A member's cmviewcl is made to hang (a shell that sleeps). csync's probe of that member meets
its command timeout and reports the host; csync then closes the session, the probe's watcher
(probe.sh, BOUNDED=stdin) sees its standard input close and kills the probe's process group,
and the host's process list, read from the host's own namespace, is back to sshd's listener
alone: no shell, no awk, no cmviewcl, no sleep. Both ways the probe runs (root's identity, the
script on stdin; the plan identity's forced command, the probe program), and csync killed in
the middle of a probe. The control: the same hang with the watcher switched off leaves the
probe's programs running, which is what the check would see if the bound broke.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench.proc import csync_argv, csync_env
from reconciler.desired.loader import load_desired_state
from reconciler.driver import commands
from reconciler.driver.transport import Pool, TransportError
from reconciler.lab.keys import ssh_ed25519
from tests.reliability.support import desired
from tests.shell import BOUNDED

pytestmark = pytest.mark.lab
USERLANDS = ("default", "hpux")  # posh and the one-true-awk run the watcher too

HUNG = "node2"
STARTED = "/tmp/csync-test-cmviewcl-started"


def hang_cmviewcl(lab) -> None:
    """node2's cmviewcl: notes that it started, then hangs in a child program (sleep)."""
    body = f"#!/bin/sh\n: > {STARTED}\nsleep 300\necho never\n"
    lab.exec(
        HUNG,
        ["/bin/sh", "-c", "rm -f /usr/local/sbin/cmviewcl && cat > /usr/local/sbin/cmviewcl && chmod 755 /usr/local/sbin/cmviewcl"],
        input=body,
        check=True,
    )


def started(lab) -> bool:
    return lab.exec(HUNG, ["test", "-e", STARTED]).returncode == 0


def leftovers(lab, *, settle: float = 10.0) -> dict[int, str]:
    """The processes of the hung host other than sshd's listener, once they are gone (or
    ``settle`` seconds have passed: then what is still there)."""
    deadline = time.monotonic() + settle
    while True:
        left = {pid: args for pid, args in lab.processes(HUNG).items() if "[listener]" not in args}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(csync_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=120, env=csync_env())


def with_plan_key(lab, path: Path, tmp_path: Path) -> Path:
    private, public = ssh_ed25519("csync-plan")
    key = tmp_path / "plan_ed25519"
    key.write_bytes(private)
    key.chmod(0o600)
    (tmp_path / "plan_ed25519.pub").write_bytes(public)
    planned = tmp_path / "plan-identity.yaml"
    planned.write_text(path.read_text().replace("access:\n", f"access:\n  plan_identity_file: {key}\n", 1))
    return planned


def timed_out_on_the_hung_host(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith(f"{HUNG} ")]
    assert "UNREACHABLE" in line and "timed out" in line, line


def test_a_probe_that_times_out_leaves_nothing_running_on_its_host(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=1)
    path = desired(lab, tmp_path, command_timeout=3)
    # the plan identity: its key authorized with the forced command, the probe program installed
    # (before the hang: bootstrap proves the key by probing every host)
    planned = with_plan_key(lab, path, tmp_path)
    boot = cli(tmp_path, "bootstrap", "-f", str(planned), "--authorize")
    assert boot.returncode == 0, boot.stdout + boot.stderr
    hang_cmviewcl(lab)
    assert leftovers(lab, settle=0) == {}

    # root's identity: the probe script on stdin
    root = cli(tmp_path, "facts", "-f", str(path))
    timed_out_on_the_hung_host(root)
    assert started(lab)  # the probe did reach the hung program
    assert leftovers(lab) == {}

    # the plan identity: the probe program, sshd's forced command
    lab.exec(HUNG, ["rm", "-f", STARTED], check=True)
    plan = cli(tmp_path, "facts", "-f", str(planned), "--identity", "plan")
    timed_out_on_the_hung_host(plan)
    assert started(lab)
    assert leftovers(lab) == {}

    # csync killed while the probe hangs: its connection drops, and the probe ends with it
    lab.exec(HUNG, ["rm", "-f", STARTED], check=True)
    proc = subprocess.Popen(
        csync_argv("plan", "-f", str(planned)), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=csync_env(), start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while not started(lab):
            assert time.monotonic() < deadline and proc.poll() is None, "the probe never reached the hung cmviewcl"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert leftovers(lab) == {}
    # and the other hosts were probed as usual meanwhile: the plan is only short of node2
    after = cli(tmp_path, "plan", "-f", str(path))
    assert after.returncode == 1 and HUNG in after.stdout and "Traceback" not in after.stderr


def test_without_the_watcher_the_hung_probe_would_run_on(lab_factory, tmp_path):
    """The control: BOUNDED switched off in the script, the same timeout leaves the probe's
    shell, its awk and the hung cmviewcl with its sleep on the host (the state before the
    bound; the check above would see it)."""
    lab = lab_factory("fresh", members=2, clients=1)
    state = load_desired_state([desired(lab, tmp_path)])
    hang_cmviewcl(lab)
    script = commands.probe(state, "member")
    assert BOUNDED in script.script
    unbounded = commands.RemoteCommand(script.script.replace(BOUNDED, "\nBOUNDED=\n"), script.display)
    with Pool(state.access) as pool:
        session = pool.connect(next(h for h in state.all_hosts if h.name == HUNG))
        with pytest.raises(TransportError, match="timed out"):
            session.run_script(unbounded, timeout=2, hold_stdin=True)
    left = leftovers(lab, settle=1.0)
    # (an empty command line is a process on its way out)
    assert any("sleep 300" in a for a in left.values()) and any("awk" in a.split()[0] for a in left.values() if a.strip()), left
    for pid in left:  # end them here; the lab's down would too
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
