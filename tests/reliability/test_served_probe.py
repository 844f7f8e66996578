"""Issue #18: the probe server of `csync watch` (probe.sh with SERVE=1; Session.serve_script
and Session.serve_request in driver/transport.py).

A warm cycle sends one request line over a channel the session keeps open, instead of opening
a channel, starting a shell and sending the script for every probe. What that must not change:
the answer is the one-shot probe's, byte for byte; the server is bounded like the one-shot
probe (closing the session, or a probe that times out, leaves nothing running on the host);
the plan identity's forced command serves too, and a probe program of another version or
platform still answers its version line; a changed script (a reload) gets a server of its
own. Both userlands (posh and the one-true-awk run the server too).
"""

from __future__ import annotations

import time

import pytest

from reconciler.desired.loader import load_desired_state
from reconciler.desired.model import Platform
from reconciler.driver import commands, probeprogram
from reconciler.driver.transport import Pool, TransportError
from reconciler.observe.probe import program_refusal, roles
from tests.reliability.support import desired
from tests.reliability.test_bounded_probe import HUNG, cli, hang_cmviewcl, started, with_plan_key

pytestmark = pytest.mark.lab
USERLANDS = ("default", "hpux")


def sessions_only(lab, name: str, *, settle: float = 10.0) -> dict[int, str]:
    """The processes of host ``name`` other than sshd's listener and its per-connection
    processes, once they are gone (or ``settle`` seconds have passed: then what is left)."""
    deadline = time.monotonic() + settle
    while True:
        left = {pid: a for pid, a in lab.processes(name).items() if not a.startswith("sshd")}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def shell(args: str) -> bool:
    """A shell's command line (an empty one is a process on its way out: not settled yet)."""
    words = args.split()
    return bool(words) and words[0].rsplit("/", 1)[-1] in ("sh", "posh", "dash", "bash")


def test_a_served_probe_answers_what_a_probe_answers_over_one_channel(lab_factory, tmp_path):
    lab = lab_factory("seed", members=2, clients=2)
    state = load_desired_state([desired(lab, tmp_path)])
    with Pool(state.access) as pool:
        for host, role in roles(state):
            session = pool.connect(host)
            once = session.run_script(commands.probe(state, role), timeout=30, hold_stdin=True)
            assert once.exit_code == 0 and once.stdout.startswith(b'{"format":1'), (host.name, once)
            served = [session.serve_script(commands.probe(state, role, serve=True), timeout=30) for _ in range(3)]
            for answer in served:
                assert (answer.exit_code, answer.stdout, answer.stderr) == (once.exit_code, once.stdout, once.stderr), host.name
            server = session._server
            assert server is not None and server.requests == 3  # three requests, one server, one channel
            # between requests the host runs the server's shells and no probe program (once the
            # one-shot probe's last process, its watcher's kill under posh, has ended)
            deadline = time.monotonic() + 10
            left = sessions_only(lab, host.name, settle=0)
            while not all(shell(a) for a in left.values()):
                assert time.monotonic() < deadline, left
                time.sleep(0.1)
                left = sessions_only(lab, host.name, settle=0)
    # the sessions closed: every server ended with its input
    for host in state.all_hosts:
        assert sessions_only(lab, host.name) == {}, host.name


def test_a_served_probe_that_hangs_times_out_and_leaves_nothing_running(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=1)
    state = load_desired_state([desired(lab, tmp_path, command_timeout=3)])
    node = next(h for h in state.all_hosts if h.name == HUNG)
    with Pool(state.access) as pool:
        session = pool.connect(node)
        script = commands.probe(state, "member", serve=True)
        assert session.serve_script(script, timeout=30).exit_code == 0
        hang_cmviewcl(lab)
        t0 = time.monotonic()
        with pytest.raises(TransportError, match="timed out") as raised:
            session.serve_script(script, timeout=3)
        assert raised.value.kind == "timeout" and time.monotonic() - t0 < 10
        assert started(lab) and session._server is None  # it reached the hung program; the server is closed
        assert sessions_only(lab, HUNG) == {}
        # the next request starts a new server on the same connection (which is still up)
        lab.exec(HUNG, ["rm", "-f", "/usr/local/sbin/cmviewcl"], check=True)
        again = session.serve_script(script, timeout=30)
        assert again.exit_code == 0 and b'"cmviewcl"' in again.stdout


def test_a_changed_script_gets_a_server_of_its_own(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=1)
    state = load_desired_state([desired(lab, tmp_path)])
    other = state.model_copy(update={"platform": Platform(cmviewcl_format="table")})
    node = next(h for h in state.all_hosts if h.name == "node1")
    with Pool(state.access) as pool:
        session = pool.connect(node)
        line = session.serve_script(commands.probe(state, "member", serve=True), timeout=30)
        first = session._server
        table = session.serve_script(commands.probe(other, "member", serve=True), timeout=30)
        assert session._server is not first and session._server is not None and session._server.requests == 1
        assert b'"format":"line"' in line.stdout and b'"format":"table"' in table.stdout
        # the first server ended with its input: one server's shells are left (three, and under
        # posh the login shell that runs /bin/sh: sshd's `sh -c /bin/sh`)
        deadline = time.monotonic() + 10
        while len(sessions_only(lab, "node1", settle=0)) > 4:
            assert time.monotonic() < deadline, sessions_only(lab, "node1", settle=0)
            time.sleep(0.1)


def test_the_probe_program_serves_and_answers_its_version_to_another_digest(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=1)
    path = desired(lab, tmp_path)
    planned = with_plan_key(lab, path, tmp_path)
    boot = cli(tmp_path, "bootstrap", "-f", str(planned), "--authorize")
    assert boot.returncode == 0, boot.stdout + boot.stderr
    state = load_desired_state([planned])
    with Pool(state.access, identity="plan") as pool:
        for host, role in roles(state):
            session = pool.connect(host)
            once = session.run_request(probeprogram.probe_request(state, role), timeout=30)
            served = [session.serve_request(probeprogram.probe_request(state, role, serve=True), timeout=30) for _ in range(2)]
            assert once.exit_code == 0 and all((s.exit_code, s.stdout) == (0, once.stdout) for s in served), host.name
            # a site whose platform differs expects another program: the installed one answers its version line
            other = state.model_copy(update={"platform": Platform(cmviewcl_format="table")})
            answer = session.serve_request(probeprogram.probe_request(other, role, serve=True), timeout=30)
            assert answer.exit_code == probeprogram.EXIT_OTHER_PROGRAM and session._server is None
            refused = program_refusal(host, role, answer, other.platform)
            assert refused is not None and refused.reason_kind == "probe-program" and "not this csync's" in (refused.reason or "")
            # a request the program does not take is refused before anything runs, served or not
            bad = probeprogram.ProbeRequest(line=probeprogram.probe_request(state, role).line + " mode=forever", display="bad")
            assert session.serve_request(bad, timeout=30).exit_code == probeprogram.EXIT_REFUSED and session._server is None
    for host in state.all_hosts:
        assert sessions_only(lab, host.name) == {}, host.name
