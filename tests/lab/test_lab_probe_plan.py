"""Probe and plan against the lab: real sshd hosts, real files, real keys."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.driver.transport import Pool
from reconciler.lab.runtime import LAB_MOUNT, key_dir
from reconciler.observe.facts import public_key_fingerprint
from reconciler.observe.probe import probe_site
from reconciler.pipeline import refresh_and_plan

pytestmark = pytest.mark.lab
USERLANDS = ("default", "hpux")  # issue 17: these run under both userlands of the lab


def plan_of(lab):
    state = load_desired_state([lab.desired_state_path])
    with Pool(state.access) as pool:
        return refresh_and_plan(state, pool)


def csync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], capture_output=True, text=True, timeout=120)


def test_hosts_have_their_own_names_and_files(lab):
    assert lab.exec("node1", "hostname").stdout.strip() == "node1"
    assert lab.exec("client2", "hostname").stdout.strip() == "client2"
    lab.exec("client1", "echo planted > /var/opt/dsau/cfengine/inputs/only-here")
    assert lab.exec("client2", "test -e /var/opt/dsau/cfengine/inputs/only-here").returncode == 1
    assert not Path("/var/opt/dsau").exists()  # the real machine is untouched


def test_package_filesystem_is_visible_only_on_its_owner(lab):
    master = f"{dsau.PACKAGE_MASTER_INPUTS}"
    assert lab.exec("node1", f"test -d {LAB_MOUNT}/{master}").returncode == 0
    assert lab.exec("node2", f"test -d {LAB_MOUNT}/{master}").returncode == 1


def test_facts_match_what_the_lab_planted(reseed):
    lab = reseed("seed")
    state = load_desired_state([lab.desired_state_path])
    with Pool(state.access) as pool:
        site = probe_site(state, pool)
    assert all(f.reachable for f in site.hosts.values())
    stale = (key_dir(lab, "client1") / "root-127.0.10.2.pub").read_text()
    assert site["client1"].peer_key("127.0.10.2").fingerprint == public_key_fingerprint(stale)[0]
    assert site["client2"].peer_key("127.0.10.10") is None
    pkg = site["node1"].cluster.packages["csync"]
    assert (pkg.status, pkg.state, pkg.owner) == ("down", "halted", None)
    assert site["node3"].own_key.fingerprint != site["node1"].own_key.fingerprint


def test_one_command_per_host_whatever_the_facts(lab):
    state = load_desired_state([lab.desired_state_path])
    with Pool(state.access) as pool:
        site = probe_site(state, pool)
    assert site.commands_sent == {h.name: 1 for h in state.all_hosts}


def test_fresh_plans_no_changes_and_exits_0(lab):
    done = csync("plan", "-f", str(lab.desired_state_path), "--detailed-exitcode")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes." in done.stdout and "failover-ready: yes" in done.stdout


def test_seed_plans_exactly_the_manual_chores(reseed):
    lab = reseed("seed")
    plan, _ = plan_of(lab)
    assert [(a.kind, a.address, a.host) for a in plan.actions] == [
        ("start-package", "package.csync", "node1"),
        ("dispatch-member", "member.node3", "node1"),
        ("copy-key", "client.client1.key[root-127.0.10.2.pub]", "client1"),
        ("copy-key", "client.client1.key[root-127.0.10.3.pub]", "client1"),
        ("copy-key", "client.client2.key[root-127.0.10.10.pub]", "client2"),
        ("copy-key", "client.client2.key[root-127.0.10.3.pub]", "client2"),
        ("copy-key", "client.client3.key[root-127.0.10.3.pub]", "client3"),
        ("copy-key", "client.client4.key[root-127.0.10.3.pub]", "client4"),
    ]
    done = csync("plan", "-f", str(lab.desired_state_path), "--detailed-exitcode")
    assert done.returncode == 2


def test_dispatch_targets_the_node_running_the_package(reseed):
    lab = reseed("seed")
    assert lab.exec("node2", "cmrunpkg -n node2 csync").returncode == 0
    plan, _ = plan_of(lab)
    [dispatch] = [a for a in plan.actions if a.kind == "dispatch-member"]
    assert dispatch.host == "node2" and not any(a.kind == "start-package" for a in plan.actions)


def test_an_isolated_host_is_unknown_with_its_reason(lab):
    text = lab.desired_state_path.read_text().replace("connect_timeout: 5", "connect_timeout: 1")
    lab.desired_state_path.write_text(text)
    lab.isolate("client3")
    try:
        start = time.monotonic()
        plan, facts = plan_of(lab)
        assert time.monotonic() - start < 10
    finally:
        lab.restore("client3")
    assert not facts["client3"].reachable and facts["client3"].reason_kind == "timeout"
    assert any(f.address == "client.client3" for f in plan.unknown)
    assert csync("plan", "-f", str(lab.desired_state_path), "--detailed-exitcode").returncode in (0, 1, 2)


def test_a_stopped_host_is_unreachable_not_empty(lab):
    lab.node_down("client2")
    plan, facts = plan_of(lab)
    assert not facts["client2"].reachable and "refused" in facts["client2"].reason
    assert not plan.clean
    done = csync("facts", "-f", str(lab.desired_state_path))
    assert done.returncode == 1 and "UNREACHABLE" in done.stdout


def test_a_changed_host_key_is_refused(lab):
    lines = lab.known_hosts.read_text().splitlines()
    node1, node2 = lab.known_hosts_name("127.0.10.1") + " ", lab.known_hosts_name("127.0.10.2") + " "
    other = next(line for line in lines if line.startswith(node2)).split(" ", 1)[1]
    lab.known_hosts.write_text("\n".join(f"{node1}{other}" if line.startswith(node1) else line for line in lines) + "\n")
    _, facts = plan_of(lab)
    assert not facts["node1"].reachable and facts["node1"].reason_kind == "host-key" and "CHANGED" in facts["node1"].reason


def test_an_unknown_host_key_fails_unless_first_contact_is_allowed(lab):
    lab.known_hosts.write_text("")
    done = csync("facts", "-f", str(lab.desired_state_path), "--format", "json")
    assert done.returncode == 1 and "unknown host key" in done.stdout
    done = csync("facts", "-f", str(lab.desired_state_path), "--accept-new-host-keys")
    assert done.returncode == 0
    assert len(lab.known_hosts.read_text().splitlines()) == len(lab.hosts)


def test_a_probe_whose_program_failed_once_is_taken_again_and_a_second_failure_stands(reseed):
    # a file going while the probe reads it (cfagent or the dispatcher replacing an input) makes
    # a program fail: the host is probed once more; a program that keeps failing stays reported
    lab = reseed("fresh")
    counter = "/usr/local/sbin/.csync-test-uname-runs"
    # uname is the probe's first program; this one fails its first FAILS runs (the probe's
    # search path has /usr/local/sbin before /usr/bin)
    wrapper = (
        "#!/bin/sh\n"
        f"echo x >> {counter}\n"
        f'if [ "$(wc -l < {counter})" -le "$(cat /usr/local/sbin/.csync-test-fails)" ]; then echo "uname: gone" >&2; exit 1; fi\n'
        'exec /bin/uname "$@"\n'
    )
    lab.exec(
        "client1", "cat > /usr/local/sbin/uname && chmod 755 /usr/local/sbin/uname && echo 1 > /usr/local/sbin/.csync-test-fails", input=wrapper, check=True
    )
    try:
        _, facts = plan_of(lab)
        assert facts["client1"].reachable, facts["client1"].reason
        assert int(lab.exec("client1", f"wc -l < {counter}").stdout) >= 2  # it failed once, and the probe ran again
        lab.exec("client1", f"rm -f {counter} && echo 99 > /usr/local/sbin/.csync-test-fails", check=True)
        _, facts = plan_of(lab)
        assert not facts["client1"].reachable and "uname: gone" in facts["client1"].reason
    finally:
        lab.exec("client1", f"rm -f /usr/local/sbin/uname {counter} /usr/local/sbin/.csync-test-fails")
