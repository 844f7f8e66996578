"""`csync apply` against the lab: real sshd hosts, real files, real keys, the real CLI.

Every lab a test starts is stopped by the `lab_factory` fixture. Runs write their journal
under the test's own directory (apply journals to ./.csync/runs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.proc import apply_auto
from reconciler.apply.events import Events
from reconciler.apply.journal import Journal, read
from reconciler.apply.lock import SiteLock, session_runner
from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.driver.transport import Pool
from reconciler.lab.runtime import LAB_MOUNT, Lab, key_dir, rsa_pair
from reconciler.pipeline import refresh_and_plan
from reconciler.trust.live import without_cfrun_banners

pytestmark = pytest.mark.lab
USERLANDS = ("default", "hpux")  # issue 17: these run under both userlands of the lab

PKG = "127.0.10.10"
PPKEYS = f"{dsau.CFENGINE_DIR}/{dsau.PPKEYS_SUBDIR}"
LOCK_FILE = f"{LAB_MOUNT}/{dsau.PACKAGE_CSYNC_STATE}/lock.json"


# --- helpers ---------------------------------------------------------------------------------


def desired(lab: Lab, where: Path, *, command_timeout: float | None = None, connect_timeout: float = 3) -> Path:
    """The lab's desired state, with the timeouts a test that freezes a host needs."""
    text = lab.desired_state_path.read_text()
    text = text.replace("  connect_timeout: 5\n", f"  connect_timeout: {connect_timeout}\n")
    if command_timeout is not None:
        text = text.replace("  parallelism: 64\n", f"  parallelism: 64\n  command_timeout: {command_timeout}\n")
    path = where / "desired-state.yaml"
    path.write_text(text)
    return path


def csync(cwd: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.apply", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def csync_plan(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", "plan", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def spawn(cwd: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli.apply", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def fresh_plan(path: Path):
    state = load_desired_state([path])
    with Pool(state.access) as pool:
        return refresh_and_plan(state, pool)[0]


def journals(cwd: Path) -> list[Path]:
    return sorted((cwd / ".csync" / "runs").glob("*.jsonl"))


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def put_key(lab: Lab, host: str, file: str, pem: bytes) -> None:
    path = key_dir(lab, host) / file
    path.write_bytes(pem)
    path.chmod(0o644)


def drop_keys(lab: Lab, host: str, *addresses: str) -> None:
    for a in addresses:
        (key_dir(lab, host) / dsau.peer_key_name(a)).unlink()


def temp_files(lab: Lab) -> list[str]:
    """Temp files csync could leave: key copies being written, lock and inventory drafts."""
    found = []
    for h in lab.hosts:
        out = lab.exec(
            h.name, f"find {PPKEYS} /var/opt/dsau/csync {LAB_MOUNT}/dsau/csync -name '*.tmp' 2>/dev/null; find /root/.ssh -name '*.csync.tmp' 2>/dev/null; true"
        ).stdout.split()
        found += [f"{h.name}:{f}" for f in out]
    return found


def lock_text(lab: Lab, node: str = "node1") -> str | None:
    r = lab.exec(node, f"cat {LOCK_FILE} 2>/dev/null || cat /var/opt/dsau/csync/lock.json 2>/dev/null")
    return r.stdout or None


class Hook(Events):
    """Calls ``fn(number)`` when a wave starts (the test's way into the middle of an apply)."""

    def __init__(self, fn):
        self.fn = fn

    def wave_started(self, number, total, actions):
        self.fn(number)


def apply_in_process(path: Path, workdir: Path, events: Events, *, lock_timeout: float = 0, lease: int | None = None):
    state = load_desired_state([path])
    journal = Journal("00000000-0000-4000-8000-" + os.urandom(6).hex(), workdir / ".csync" / "runs")
    try:
        with Pool(state.access) as pool:
            return apply_auto(state, pool, journal, lock_timeout=lock_timeout, lease=lease, events=events)
    finally:
        journal.close()


# --- convergence -----------------------------------------------------------------------------


def cfengine_works(lab: Lab) -> list[str]:
    """Independent of csync: the lab's emulated cfrun from every member to every client and
    cfagent on every client; returns the failures."""
    hosts = lab.hosts
    members = [h for h in hosts if h.role == "member"]
    clients = [h for h in hosts if h.role == "client"]
    failures = []
    for c in clients:
        r = lab.exec(c.name, "cfagent")  # exits 0 whatever happened (cfengine 2): its line says
        if r.returncode != 0 or not r.stdout.endswith(": ok\n"):
            failures.append(f"cfagent on {c.name}: {r.stdout}{r.stderr}".strip())
    for m in members:
        # cfrun.hosts names the clients; cfrun restricts it to the hosts named as written there
        # and exits 0 whatever happened: each client's answer line says
        r = lab.exec(m.name, "cfrun " + " ".join(c.name for c in clients) + " </dev/null")
        answers = without_cfrun_banners(r.stdout).splitlines()
        for c in clients:
            if f"cfrun {c.name}: ok" not in answers:
                failures.append(f"cfrun on {m.name} to {c.name}: {r.stdout}{r.stderr}".strip())
    return failures


def test_the_seed_scenario_applies_and_converges(lab_factory, tmp_path):
    lab = lab_factory("seed", members=3, clients=6)
    path = desired(lab, tmp_path)
    broken = cfengine_works(lab)  # the manual's seed: the check can fail, and does here
    assert any(f.startswith("cfrun on node") for f in broken) and any(f.startswith("cfagent on client") for f in broken), broken
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--allow-cluster-ops")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Converged" in r.stdout and "0 failed" in r.stdout
    assert cfengine_works(lab) == []
    again = fresh_plan(path)
    assert again.clean and not again.actions


def test_a_converged_site_applies_nothing(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    path = desired(lab, tmp_path)
    assert csync(tmp_path, "apply", "-f", str(path), "--auto-approve").returncode == 0
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve")
    assert r.returncode == 0 and "No changes." in r.stdout and "Wave" not in r.stdout


def test_the_standalone_master_applies_and_keeps_its_inventory(lab_factory, tmp_path):
    lab = lab_factory("standalone", members=1, clients=3)
    drop_keys(lab, "client2", "127.0.10.1")
    path = desired(lab, tmp_path)
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    inventory = lab.exec("master", "cat /var/opt/dsau/csync/inventory").stdout.splitlines()
    # the key files csync owns (declared for their host, and there), one "HOST FILE" a line, sorted
    assert inventory[1:] == ["generation 0"] + [f"client{i} root-127.0.10.1.pub" for i in (1, 2, 3)] + ["master root-127.0.10.1.pub"] + [
        f"master root-127.0.10.2{i}.pub" for i in (1, 2, 3)
    ]
    assert lab.exec("master", "test -e /var/opt/dsau/csync/lock.json").returncode == 1


def test_the_inventory_keeps_what_it_listed_adds_what_csync_owns_and_drops_what_is_gone(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    put_key(lab, "client2", "root-127.0.10.99.pub", (key_dir(lab, "client2") / dsau.peer_key_name(PKG)).read_bytes())
    lab.exec(
        "node1",
        f"mkdir -p {LAB_MOUNT}/dsau/csync && printf 'generation 3\\nclient2 root-127.0.10.99.pub\\n"
        f"gone root-127.0.10.200.pub\\nclient1 root-127.0.10.77.pub\\n127.0.10.5\\n' > {LAB_MOUNT}/dsau/csync/inventory",
    )
    drop_keys(lab, "client1", "127.0.10.2")
    path = desired(lab, tmp_path).read_text().replace("prune: true", "prune: false")
    (tmp_path / "keep.yaml").write_text(path)
    assert csync(tmp_path, "apply", "-f", str(tmp_path / "keep.yaml"), "--auto-approve").returncode == 0
    inventory = lab.exec("node1", f"cat {LAB_MOUNT}/dsau/csync/inventory").stdout.splitlines()
    assert inventory[0].startswith("# csync inventory, format 2")
    # kept: its generation, an entry it listed whose file is there, an entry of an undeclared host;
    # dropped: a file gone from a host that answered, the first format's address line
    assert inventory[1:] == [
        "generation 3",
        "client1 root-127.0.10.1.pub",
        "client1 root-127.0.10.10.pub",
        "client1 root-127.0.10.2.pub",
        "client2 root-127.0.10.1.pub",
        "client2 root-127.0.10.10.pub",
        "client2 root-127.0.10.2.pub",
        "client2 root-127.0.10.99.pub",
        "gone root-127.0.10.200.pub",
        "node1 root-127.0.10.1.pub",
        "node1 root-127.0.10.10.pub",
        "node1 root-127.0.10.2.pub",
        "node1 root-127.0.10.21.pub",
        "node1 root-127.0.10.22.pub",
        "node2 root-127.0.10.1.pub",
        "node2 root-127.0.10.10.pub",
        "node2 root-127.0.10.2.pub",
        "node2 root-127.0.10.21.pub",
        "node2 root-127.0.10.22.pub",
    ]


# --- exactly the plan --------------------------------------------------------------------------


def test_a_saved_plan_skips_as_stale_an_action_whose_key_was_changed_by_hand(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=3, clients=3)
    drop_keys(lab, "client1", "127.0.10.3")
    drop_keys(lab, "client2", PKG)
    path = desired(lab, tmp_path)
    planned = csync_plan(tmp_path, "-f", str(path), "--out", "plan.json")
    assert planned.returncode == 0, planned.stderr
    put_key(lab, "client2", dsau.peer_key_name(PKG), rsa_pair()[1])  # by hand, after the plan
    r = csync(tmp_path, "apply", "plan.json", "-f", str(path))
    assert r.returncode == 1, r.stdout + r.stderr
    stale = f"client.client2.key[root-{PKG}.pub]"
    assert f"STALE   {stale}" in r.stdout and "current.present: planned False, now True" in r.stdout
    assert "ok      client.client1.key[root-127.0.10.3.pub]" in r.stdout
    remaining = fresh_plan(path)
    assert [a.address for a in remaining.actions] == [stale] and remaining.actions[0].replaces


def test_a_plan_from_another_desired_state_is_refused_before_anything_runs(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    drop_keys(lab, "client1", PKG)
    path = desired(lab, tmp_path)
    assert csync_plan(tmp_path, "-f", str(path), "--out", "plan.json").returncode == 0
    path.write_text(path.read_text().replace("prune: true", "prune: false"))
    r = csync(tmp_path, "apply", "plan.json", "-f", str(path))
    assert r.returncode == 4 and "another desired state" in r.stderr and "csync plan" in r.stderr
    assert not (key_dir(lab, "client1") / dsau.peer_key_name(PKG)).exists()
    assert lock_text(lab) is None


def test_without_a_terminal_apply_needs_auto_approve(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=1, clients=1)
    r = csync(tmp_path, "apply", "-f", str(desired(lab, tmp_path)))
    assert r.returncode == 64 and "--auto-approve" in r.stderr


# --- a host lost in the middle ----------------------------------------------------------------


def test_a_host_isolated_mid_apply_fails_alone_and_the_next_plan_is_the_remaining_work(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=3)
    cluster_key = (key_dir(lab, "client1") / dsau.peer_key_name(PKG)).read_bytes()
    drop_keys(lab, "client1", "127.0.10.2")
    drop_keys(lab, "client2", "127.0.10.2")
    for c in ("client2", "client3"):  # csync's copies of the cluster key for an undeclared address: removed in wave 2
        put_key(lab, c, "root-127.0.10.99.pub", cluster_key)
    lab.exec(
        "node1",
        f"mkdir -p {LAB_MOUNT}/dsau/csync && printf 'client2 root-127.0.10.99.pub\\nclient3 root-127.0.10.99.pub\\n' > {LAB_MOUNT}/dsau/csync/inventory",
    )
    path = desired(lab, tmp_path, command_timeout=3)
    report = apply_in_process(path, tmp_path, Hook(lambda n: lab.isolate("client2") if n == 2 else None))
    try:
        by_host = {}
        for r in report.results:
            by_host.setdefault(r.action.host, []).append(r)
        assert [(r.action.kind, r.outcome) for r in by_host["client1"]] == [("copy-key", "done")]
        assert [(r.action.kind, r.outcome) for r in by_host["client3"]] == [("remove-key", "done")]
        assert [(r.action.wave, r.outcome) for r in by_host["client2"]] == [(1, "done"), (2, "failed")]
        assert "Timeout opening channel" in by_host["client2"][1].detail or "timed out" in by_host["client2"][1].detail
        assert report.exit_code == 1 and not report.converged
    finally:
        lab.restore("client2")
    time.sleep(1.0)  # a script the frozen sshd received may still run once it thaws
    assert temp_files(lab) == []
    remaining = fresh_plan(path)
    late = not (key_dir(lab, "client2") / "root-127.0.10.99.pub").exists()
    assert [a.address for a in remaining.actions] == ([] if late else ["client.client2.key[root-127.0.10.99.pub]"])
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    assert fresh_plan(path).clean


# --- the lock ----------------------------------------------------------------------------------


def test_two_applies_at_once_one_runs_and_the_other_names_the_holder(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    drop_keys(lab, "client1", PKG)
    path = desired(lab, tmp_path)
    inside, go = threading.Event(), threading.Event()

    def pause(number):
        inside.set()
        go.wait(60)

    result = {}
    first = threading.Thread(target=lambda: result.setdefault("report", apply_in_process(path, tmp_path, Hook(pause))))
    first.start()
    try:
        assert inside.wait(60)
        holder = json.loads(lock_text(lab))
        r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--lock-timeout", "0")
        assert r.returncode == 5, r.stdout + r.stderr
        assert holder["id"] in r.stderr and f"{holder['user']}@{holder['host']} (pid {holder['pid']}" in r.stderr and "since" in r.stderr
    finally:
        go.set()
        first.join(120)
    assert result["report"].exit_code == 0
    assert lock_text(lab) is None


def test_a_second_apply_waits_for_the_lock_within_its_timeout(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    path = desired(lab, tmp_path)
    state = load_desired_state([path])
    with Pool(state.access) as pool:
        holder = SiteLock(state, state.host("node1"), session_runner(pool, state.host("node1")), lease=30)
        holder.acquire(0)
        waiter = spawn(tmp_path, "apply", "-f", str(path), "--auto-approve", "--lock-timeout", "30")
        # release only once the second apply says it waits: a timer races a slow start
        first_line = waiter.stdout.readline()
        holder.release()
        out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, first_line + out + err
    assert f"Waiting up to 30 s for the site lock: lock {holder.id}" in first_line


def started(cwd: Path) -> bool:
    """The apply holds the lock and has begun its waves (its journal has a run-start)."""
    return bool(journals(cwd)) and any(r["type"] == "run-start" for r in read(journals(cwd)[0]))


def test_an_apply_killed_with_sigkill_leaves_a_lock_that_expires_and_the_next_apply_recovers(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    drop_keys(lab, "client1", PKG)
    drop_keys(lab, "client2", PKG)
    path = desired(lab, tmp_path, connect_timeout=60)
    assert csync_plan(tmp_path, "-f", str(path), "--out", "plan.json").returncode == 0
    lab.isolate("client2")  # wave 1's re-check of client2 hangs: the apply is mid-run when killed
    env = {"CSYNC_LOCK_LEASE_SECONDS": "6"}
    proc = spawn(tmp_path, "apply", "plan.json", "-f", str(path), env=env)
    try:
        wait_for(lambda: started(tmp_path), 60, "the apply to start its waves")
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        lab.restore("client2")
    killed = json.loads(lock_text(lab))
    path = desired(lab, tmp_path)
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--lock-timeout", "0", env=env)
    assert r.returncode == 5 and killed["id"] in r.stderr
    time.sleep(max(0.0, killed["expires_epoch"] - time.time()) + 1.5)
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--lock-timeout", "0", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Took over an expired lock" in r.stdout and killed["id"] in r.stdout
    assert lock_text(lab) is None and temp_files(lab) == []
    assert fresh_plan(path).clean


def test_sigterm_stops_new_actions_releases_the_lock_and_exits_143(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=3)
    cluster_key = (key_dir(lab, "client1") / dsau.peer_key_name(PKG)).read_bytes()
    drop_keys(lab, "client1", PKG)
    drop_keys(lab, "client2", PKG)
    put_key(lab, "client3", "root-127.0.10.99.pub", cluster_key)  # csync's (the inventory says): removed in wave 2, never started
    lab.exec("node1", f"mkdir -p {LAB_MOUNT}/dsau/csync && echo 'client3 root-127.0.10.99.pub' > {LAB_MOUNT}/dsau/csync/inventory")
    path = desired(lab, tmp_path, connect_timeout=5)
    assert csync_plan(tmp_path, "-f", str(path), "--out", "plan.json").returncode == 0
    lab.isolate("client2")  # wave 1's re-check waits for client2
    proc = spawn(tmp_path, "apply", "plan.json", "-f", str(path))
    try:
        wait_for(lambda: started(tmp_path), 60, "the apply to start its waves")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        lab.restore("client2")
    assert proc.returncode == 143, out + err
    assert "interrupted by SIGTERM" in out and "not started: interrupted by SIGTERM" in out
    assert (key_dir(lab, "client3") / "root-127.0.10.99.pub").exists()
    assert not (key_dir(lab, "client1") / dsau.peer_key_name(PKG)).exists()
    assert lock_text(lab) is None
    records = read(journals(tmp_path)[0])
    assert records[-1]["type"] == "run-end" and records[-1]["outcome"] == "interrupted" and records[-1]["exit_code"] == 143


def test_unlock_releases_a_dead_applys_lock_by_id_only_with_force_while_its_lease_is_live(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=1)
    path = desired(lab, tmp_path)
    state = load_desired_state([path])
    with Pool(state.access) as pool:
        dead = SiteLock(state, state.host("node1"), session_runner(pool, state.host("node1")), lease=120)
        dead.acquire(0)  # never renewed, never released: as if its process were killed
    r = csync(tmp_path, "unlock", dead.id, "-f", str(path))
    assert r.returncode == 5 and "--force" in r.stderr and lock_text(lab)
    r = csync(tmp_path, "unlock", "12345678-1234-4234-8234-123456789abc", "-f", str(path))
    assert r.returncode == 1 and dead.id in r.stderr
    r = csync(tmp_path, "unlock", dead.id, "-f", str(path), "--force")
    assert r.returncode == 0 and f"Released lock {dead.id}" in r.stdout
    assert lock_text(lab) is None


def test_with_the_package_down_the_lock_is_on_the_start_node_and_guards_the_package_lock(lab_factory, tmp_path):
    lab = lab_factory("seed", members=2, clients=1)
    path = desired(lab, tmp_path)
    state = load_desired_state([path])
    with Pool(state.access) as pool:
        early = SiteLock(state, state.host("node1"), session_runner(pool, state.host("node1")), lease=120)
        early.acquire(0)
        assert early.paths == ["/var/opt/dsau/csync/lock.json"]
        lab.exec("node1", "PATH=/usr/local/sbin:$PATH; cmrunpkg -n node1 csync && cmmodpkg -e csync")  # as if `early` had started it
        r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--lock-timeout", "0")
        assert r.returncode == 5 and early.id in r.stderr
        early.release()


# --- the journal ---------------------------------------------------------------------------------


def test_the_journal_records_the_run_and_never_key_material(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    drop_keys(lab, "client1", PKG, "127.0.10.1", "127.0.10.2")  # no copy left: the key is installed from its PEM
    path = desired(lab, tmp_path)
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", env={"GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "org/site", "GITHUB_JOB": "apply"})
    assert r.returncode == 0, r.stdout + r.stderr
    [journal] = journals(tmp_path)
    text = journal.read_text()
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    pem_body = (key_dir(lab, "client2") / dsau.peer_key_name(PKG)).read_text().splitlines()[1]
    assert pem_body not in text
    records = read(journal)
    assert records[0]["type"] == "run-start" and records[-1]["type"] == "run-end"
    start = records[0]
    assert start["site"] == "lab" and start["plan_digest"].startswith("sha256:") and start["desired_state_digest"].startswith("sha256:")
    assert start["ci"] == {"system": "github", "run_id": "42", "repository": "org/site", "job": "apply"} and start["user"]
    ends = [x for x in records if x["type"] == "action-end"]
    assert {x["kind"] for x in ends} == {"install-key"} and len(ends) == 3
    assert all(x["outcome"] == "done" and x["verified"]["fingerprint"].startswith("SHA256:") for x in ends)
    assert len([x for x in records if x["type"] == "action-start"]) == 3
    assert any(x["type"] == "inventory" for x in records) and any(x["type"] == "converge" and x["converged"] for x in records)
    assert records[-1]["counts"] == {"done": 3, "failed": 0, "skipped": 0, "stale": 0} and records[-1]["exit_code"] == 0
    assert journal.name.endswith(f"-{start['run_id']}.jsonl")
    # nothing of localhost.priv anywhere in what csync wrote or printed
    private = (key_dir(lab, "client1") / dsau.OWN_PRIVATE_KEY).read_text().splitlines()[1]
    assert private not in text and private not in r.stdout


# --- cost ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_applying_the_seed_to_200_clients_costs_three_round_trips_per_client(lab_factory, tmp_path):
    # Round trips are what this test counts; wall time is measured by bench/apply.py.
    lab = lab_factory("seed", members=3, clients=200)
    path = desired(lab, tmp_path)
    state = load_desired_state([path])
    report = apply_in_process(path, tmp_path, Events())
    assert report.exit_code == 0, [r.detail for r in report.results if r.outcome != "done"]
    assert max(report.round_trips[c.name] for c in state.clients) == 3
