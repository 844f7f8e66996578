"""Shared fixtures, among them the lab's (real sshd hosts on 127.0.0.0/8, see docs/LAB.md).

Lab fixtures need root, openssh-server and the system python's cryptography; without them the
whole run stops at once with what to install (exit code 3). Lab tests never skip: in CI they
must run.

- ``lab_session``: one lab for the whole session (3 members, 4 clients; scenario fresh),
  stopped at the end of the session.
- ``reseed``: ``reseed("seed")`` resets the session lab's files and cluster to a scenario
  (fresh, seed) without restarting its sshds (a tenth of a second) and returns the lab.
- ``lab``: the session lab, reseeded to ``fresh`` for the test.
- ``lab_factory``: ``lab_factory(scenario, members=3, clients=4)`` starts a lab of its own
  (another size, a standalone master, or a test that stops hosts for good); every lab it
  started is stopped after the test.
- ``userland``: the hosts' userland of those labs (reconciler/lab/userland.py). A test module
  that sets ``USERLANDS = ("default", "hpux")`` runs each of its lab tests under both (the
  probe, plan, apply, import and trust tests do, issue 17); others run under the default.
"""

from __future__ import annotations

import pytest

SESSION_MEMBERS = 3
SESSION_CLIENTS = 4


def require_lab_machine() -> None:
    """Stop the run (never skip) if this machine cannot run the lab."""
    from reconciler.lab.runtime import LabError, check_machine

    try:
        check_machine()
    except LabError as e:
        pytest.exit(f"the lab tests cannot run here: {e} (or run: bash scripts/setup-system.sh)", returncode=3)


def pytest_generate_tests(metafunc):
    if "userland" in metafunc.fixturenames:
        metafunc.parametrize("userland", getattr(metafunc.module, "USERLANDS", ("default",)), scope="session")


@pytest.fixture(scope="session")
def lab_session(tmp_path_factory, userland):
    """The session's running lab: 3 members, 4 clients, started fresh (one per userland)."""
    require_lab_machine()
    from reconciler.lab import Lab

    lab = Lab(tmp_path_factory.mktemp(f"lab-session-{userland}"))
    lab.up(members=SESSION_MEMBERS, clients=SESSION_CLIENTS, scenario="fresh", userland=userland)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def reseed(lab_session):
    """``reseed(scenario="fresh") -> Lab``: the session lab reset to ``scenario``."""

    def _reseed(scenario: str = "fresh"):
        lab_session.reseed(scenario)
        return lab_session

    return _reseed


@pytest.fixture
def lab(reseed):
    """The session lab, reset to the converged (fresh) scenario."""
    return reseed("fresh")


@pytest.fixture
def lab_factory(tmp_path_factory, userland):
    """Start labs of one's own: ``lab_factory(scenario="fresh", members=3, clients=4)``; every
    one is stopped after the test."""
    require_lab_machine()
    from reconciler.lab import Lab

    started = []

    def start(scenario: str = "fresh", members: int = 3, clients: int = 4, **options) -> Lab:
        lab = Lab(tmp_path_factory.mktemp("lab"))
        started.append(lab)
        lab.up(members=members, clients=clients, scenario=scenario, **{"userland": userland, **options})
        return lab

    yield start
    for lab in started:
        lab.down()


def _left_running(base: str) -> dict[int, str]:
    """Processes of a lab host of this session still running: their mounts name a directory
    of the session's temporary tree (a host's overlay and bind mounts live there)."""
    import os

    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/mountinfo") as f:
                mounts = f.read()
            if f" {base}/" not in mounts and f"={base}/" not in mounts:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue  # gone meanwhile
    return found


def pytest_sessionfinish(session, exitstatus):
    """Every lab a test starts, the test stops: once the whole run is over (the controller,
    after every worker), a lab process still running is reported, then ended (this run
    started it). It does not fail the run; the report names what to look for."""
    import os
    import signal

    if hasattr(session.config, "workerinput") or os.geteuid() != 0:
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    base = str(factory.getbasetemp())
    left = _left_running(base)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
    for pid, args in sorted(left.items()):
        if reporter is not None:
            reporter.write_line(f"WARNING: a lab process of this run was left running, ended now: {pid} {args}", yellow=True)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
