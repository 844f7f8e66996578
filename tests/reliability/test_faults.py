"""Faults during `csync apply`, against the lab: a member dying with the package, a command
that hangs, a key store that is read-only or full, csync itself killed mid-script.

Each case checks the same four things: nothing is lost (files csync did not mean to change
are intact), nothing half-written stays on a host (no draft files, no mutex), the error
says what happened, and the next plan tells the truth (the remaining work, the unreachable
host). Faults land mid-apply through `Events.wave_started` (the `Hook` of the apply tests):
the test's own code runs at the start of wave N, in the apply's process, without mocking
anything between csync and the hosts.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from reconciler.apply.journal import read
from tests.reliability.support import (
    DISPATCHER,
    PKG,
    PPKEYS,
    Hook,
    apply_in_process,
    csync,
    csync_plan,
    desired,
    drop_keys,
    fresh_plan,
    full_key_store,
    hang_program,
    journals,
    key_store,
    lock_text,
    processes,
    read_only_key_store,
    spawn,
    temp_files,
    wait_for,
)

pytestmark = pytest.mark.lab


def outcomes(report) -> list[tuple[str, str, str]]:
    return sorted((r.action.kind, r.action.host, r.outcome) for r in report.results)


def test_the_package_owner_dies_mid_apply_and_the_dispatch_never_runs_on_the_old_owner(lab_factory, tmp_path):
    # seed: wave 1 starts the package on node1, wave 2 dispatches node3 there, wave 3 copies keys
    lab = lab_factory("seed", members=3, clients=2)
    path = desired(lab, tmp_path, command_timeout=10, connect_timeout=2)
    planned = fresh_plan(path)
    [dispatch] = [a for a in planned.actions if a.kind == "dispatch-member"]
    assert (dispatch.host, dispatch.wave) == ("node1", 2)

    def fail_over(number):
        if number == 2:
            lab.node_down("node1")  # the package fails over to node2 with its filesystem

    report = apply_in_process(path, tmp_path, Hook(fail_over))
    by_kind = {(r.action.kind, r.action.host): r for r in report.results}
    assert by_kind[("start-package", "node1")].outcome == "done"
    lost = by_kind[("dispatch-member", "node1")]
    assert lost.outcome == "failed" and lost.detail.startswith("not run on node1: not sent:"), lost.detail
    assert {r.outcome for r in report.results if r.action.kind == "copy-key"} == {"done"}
    assert report.exit_code == 1 and not report.converged
    # the next plan (from the apply's final facts, and from scratch): node2 now runs the
    # package, so the dispatch is there; node1 is reported unreachable, not converged
    for final in (report.final_plan, fresh_plan(path)):
        assert [(a.kind, a.host) for a in final.actions] == [("dispatch-member", "node2")]
        assert [f.address for f in final.unknown] == ["member.node1"]
    status = {p["name"]: p for p in json.loads(lab.exec("node2", "cat /run/csync-lab/cluster.json").stdout)["packages"]}
    assert status["csync"]["owner"] == "node2"
    assert temp_files(lab) == []
    # the lock lived on node1 (the package was down when it was taken): csync says it could
    # not release it rather than pretending it did
    notices = [r["message"] for r in read(journals(tmp_path)[0]) if r["type"] == "notice"]
    assert any("could not release the site lock" in n and "csync unlock" in n for n in notices), notices
    lab.node_up("node1")
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--allow-cluster-ops")
    assert r.returncode == 0, r.stdout + r.stderr
    assert fresh_plan(path).clean


def test_a_hung_command_is_abandoned_at_the_command_timeout_and_reported(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=3, clients=2)
    lab.exec("node3", "rm -f /etc/cmcluster/csync/*", check=True)  # unconfigured (no package files): node3 needs a dispatch
    drop_keys(lab, "client1", PKG)
    hang_program(lab, "node1", DISPATCHER, seconds=587)
    path = desired(lab, tmp_path, command_timeout=3)
    report = apply_in_process(path, tmp_path, Hook(lambda n: None))
    by_kind = {(r.action.kind, r.action.host): r for r in report.results}
    hung = by_kind[("dispatch-member", "node1")]
    assert hung.outcome == "failed" and "did not complete on node1: timed out after 3 s" in hung.detail and "stopped on the host" in hung.detail, hung.detail
    assert hung.seconds < 587  # abandoned at the timeout, not when the program ended
    assert by_kind[("copy-key", "client1")].outcome == "done"  # other hosts' work goes on
    assert report.exit_code == 1 and lock_text(lab) is None
    assert [(a.kind, a.host) for a in report.final_plan.actions] == [("dispatch-member", "node1")]
    assert [(a.kind, a.host) for a in fresh_plan(path).actions] == [("dispatch-member", "node1")]
    assert temp_files(lab) == []
    # the abandoned program does not outlive the run on the host
    wait_for(lambda: not processes(lab, "node1", "sleep 587"), 10, "the hung program to be stopped on node1")


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_key_store_that_cannot_be_written_fails_its_actions_cleanly_and_loses_nothing(lab_factory, tmp_path, fault):
    lab = lab_factory("fresh", members=2, clients=2)
    drop_keys(lab, "client1", PKG, "127.0.10.2")
    drop_keys(lab, "client2", PKG)
    path = desired(lab, tmp_path)
    before = key_store(lab, "client1")
    broken = read_only_key_store if fault == "read-only" else full_key_store
    with broken(lab, "client1"):
        during = key_store(lab, "client1")
        report = apply_in_process(path, tmp_path, Hook(lambda n: None))
        mine = [r for r in report.results if r.action.host == "client1"]
        assert len(mine) == 2 and {r.outcome for r in mine} == {"failed"}
        why = "Read-only file system" if fault == "read-only" else "No space left on device"
        assert all(r.detail.startswith("exit 1: ") and why in r.detail for r in mine), [r.detail for r in mine]
        assert {r.outcome for r in report.results if r.action.host == "client2"} == {"done"}
        assert key_store(lab, "client1") == during  # nothing half-written, nothing lost
        assert temp_files(lab) == []
        assert sorted(a.address for a in report.final_plan.actions) == sorted(r.action.address for r in mine)
        assert report.exit_code == 1 and lock_text(lab) is None
    assert key_store(lab, "client1") == before
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--allow-cluster-ops")
    assert r.returncode == 0, r.stdout + r.stderr


def test_csync_killed_while_a_host_script_runs_leaves_no_drafts_and_the_next_apply_recovers(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=3, clients=2)
    lab.exec("node3", "rm -f /etc/cmcluster/csync/*", check=True)  # unconfigured: no package files
    drop_keys(lab, "client2", PKG)
    hang_program(lab, "node1", DISPATCHER, seconds=3, then="/opt/dsau/lib/csync_dispatcher")
    path = desired(lab, tmp_path)
    assert csync_plan(tmp_path, "-f", str(path), "--out", "plan.json").returncode == 0
    env = {"CSYNC_LOCK_LEASE_SECONDS": "6"}
    proc = spawn(tmp_path, "apply", "plan.json", "-f", str(path), env=env)

    def dispatching() -> bool:
        return bool(journals(tmp_path)) and any(r["type"] == "action-start" and r["kind"] == "dispatch-member" for r in read(journals(tmp_path)[0]))

    wait_for(dispatching, 60, "the dispatch to be sent")
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed = json.loads(lock_text(lab))
    records = read(journals(tmp_path)[0])
    assert records[-1]["type"] != "run-end"  # a killed run leaves what it did, flushed
    # the host script runs on without its client; whatever it reached, no drafts stay
    wait_for(lambda: not processes(lab, "node1", "csync-test-hang") and not processes(lab, "node1", "sleep 3"), 20, "the host script to end")
    assert temp_files(lab) == []
    # the next plan tells the truth about what is left; the next apply waits out the lease
    left = fresh_plan(path)
    assert {a.kind for a in left.actions} <= {"dispatch-member", "copy-key"} and not left.unknown
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--allow-cluster-ops", "--lock-timeout", "30", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Took over an expired lock" in r.stdout and killed["id"] in r.stdout
    assert fresh_plan(path).clean and lock_text(lab) is None and temp_files(lab) == []


def test_the_lock_node_hung_mid_apply_costs_a_connect_timeout_not_the_lock_commands_and_unlock_frees_it(lab_factory, tmp_path):
    # node1 runs the package and holds the lock; it freezes after wave 1 starts. Its work
    # fails, the clients' work is done, and releasing the lock gives up after the connect
    # timeout (not the lock script's 90 s), saying how to free the lock.
    lab = lab_factory("fresh", members=2, clients=2)
    lab.exec("node2", "rm -f /etc/cmcluster/csync/*", check=True)  # unconfigured (no package files): wave 1: dispatch on node1
    drop_keys(lab, "client1", PKG)  # wave 2: copy on client1
    path = desired(lab, tmp_path, command_timeout=3, connect_timeout=2)
    try:
        report = apply_in_process(path, tmp_path, Hook(lambda n: lab.isolate("node1") if n == 1 else None))
        by_kind = {(r.action.kind, r.action.host): r for r in report.results}
        hung = by_kind[("dispatch-member", "node1")]
        assert hung.outcome == "failed" and "timed out after 2s without an answer" in hung.detail, hung.detail
        assert by_kind[("copy-key", "client1")].outcome == "done"
        # node1 is unknown, and node2 (still not configured) waits for it: it runs the package
        assert [f.address for f in report.final_plan.unknown] == ["member.node1", "member.node2"]
        records = read(journals(tmp_path)[0])
        [notice] = [r["message"] for r in records if r["type"] == "notice" and "could not release" in r["message"]]
        assert "timed out after 2s" in notice and f"csync unlock {report_run_id(records)}" in notice
    finally:
        lab.restore("node1")
    held = json.loads(lock_text(lab))
    assert held["id"] == report_run_id(records)
    r = csync(tmp_path, "unlock", held["id"], "-f", str(path), "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--allow-cluster-ops", "--lock-timeout", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert temp_files(lab) == [] and lock_text(lab) is None


def report_run_id(records: list[dict]) -> str:
    return records[0]["run_id"]


def test_sigterm_while_a_host_script_runs_lets_it_finish_then_releases_and_reports(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=3, clients=2)
    lab.exec("node3", "rm -f /etc/cmcluster/csync/*", check=True)  # unconfigured (no package files): wave 1: dispatch (slow)
    drop_keys(lab, "client2", PKG)
    cluster_key = lab.exec("client1", f"cat {PPKEYS}/root-{PKG}.pub", check=True).stdout
    lab.exec("client1", ["/bin/sh", "-c", f"cat > {PPKEYS}/root-127.0.10.99.pub"], input=cluster_key, check=True)  # a later wave: removed
    lab.exec("node1", "mkdir -p /csync/dsau/csync && echo 'client1 root-127.0.10.99.pub' > /csync/dsau/csync/inventory", check=True)  # csync's
    hang_program(lab, "node1", DISPATCHER, seconds=3, then="/opt/dsau/lib/csync_dispatcher")
    path = desired(lab, tmp_path)
    assert csync_plan(tmp_path, "-f", str(path), "--out", "plan.json").returncode == 0
    proc = spawn(tmp_path, "apply", "plan.json", "-f", str(path))

    def dispatching() -> bool:
        return bool(journals(tmp_path)) and any(r["type"] == "action-start" and r["kind"] == "dispatch-member" for r in read(journals(tmp_path)[0]))

    wait_for(dispatching, 60, "the dispatch to be sent")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    records = read(journals(tmp_path)[0])
    ends = {r["kind"]: r for r in records if r["type"] == "action-end"}
    assert ends["dispatch-member"]["outcome"] == "done"  # the script already sent ran to its end, and was verified
    assert ends["remove-key"]["outcome"] == "skipped" and "interrupted by SIGTERM" in ends["remove-key"]["error"]
    assert records[-1]["type"] == "run-end" and records[-1]["outcome"] == "interrupted"
    assert lab.exec("client1", f"test -f {PPKEYS}/root-127.0.10.99.pub").returncode == 0
    assert lock_text(lab) is None and temp_files(lab) == []
    left = fresh_plan(path)
    assert sorted(a.kind for a in left.actions) == sorted(r["kind"] for r in ends.values() if r["outcome"] != "done")


def test_the_package_moved_by_hand_mid_apply_the_dispatch_does_not_run_on_the_old_owner(lab_factory, tmp_path):
    # node1 stays up but the package moves to node2 between the waves: the dispatch planned
    # on node1 must not run the dispatcher there (whatever the dispatcher itself would do)
    lab = lab_factory("seed", members=3, clients=2)
    hang_program(lab, "node1", DISPATCHER, seconds=0, then="/opt/dsau/lib/csync_dispatcher")  # leaves a trace on stderr when run
    path = desired(lab, tmp_path)

    def move(number):
        if number == 2:
            lab.exec("node1", "PATH=/usr/local/sbin:$PATH; cmhaltpkg csync && cmrunpkg -n node2 csync && cmmodpkg -e csync", check=True)

    report = apply_in_process(path, tmp_path, Hook(move))
    [dispatch] = [r for r in report.results if r.action.kind == "dispatch-member"]
    assert dispatch.action.host == "node1" and dispatch.outcome == "failed"
    assert "does not run on this node any more" in dispatch.detail and "csync-test-hang" not in dispatch.detail, dispatch.detail
    assert [(a.kind, a.host) for a in report.final_plan.actions] == [("dispatch-member", "node2")]
    assert not report.final_plan.unknown and temp_files(lab) == []
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--allow-cluster-ops")
    assert r.returncode == 0, r.stdout + r.stderr
