"""Issue 16 against the lab (real sshd hosts, real key files, the lab's cfengine 2 emulation):
prune only what csync owns, several addresses per host, key files named by host name, and a
key rotation on purpose. Each test proves its point with the lab's own cfrun/cfagent, not
with csync's view of the site.

Two labs for the module: a cluster with extra addresses (3 members, 4 clients; each test
starts from its fresh scenario) and a standalone master.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.driver.transport import Pool
from reconciler.lab import Lab
from reconciler.lab.runtime import LAB_MOUNT
from reconciler.trust.live import assess, without_cfrun_banners
from tests.conftest import require_lab_machine
from tests.lab.support import STANDALONE_SOURCE, cfagent_copy

pytestmark = pytest.mark.lab

PP = f"{dsau.CFENGINE_DIR}/{dsau.PPKEYS_SUBDIR}"
PKG, PKG_LAN2 = "127.0.10.10", "127.0.20.10"
MEMBERS = {"node1": "127.0.10.1", "node2": "127.0.10.2", "node3": "127.0.10.3"}
LAN2 = {"node1": "127.0.20.1", "node2": "127.0.20.2", "node3": "127.0.20.3"}
CLIENTS = {f"client{i}": f"127.0.10.{20 + i}" for i in range(1, 5)}
INVENTORY = f"{LAB_MOUNT}/{dsau.PACKAGE_CSYNC_STATE}/inventory"
KEYS = "keys: {distribution: copy, cfrun: all-members, prune: true}"


@pytest.fixture(scope="module")
def cluster_lab(tmp_path_factory):
    require_lab_machine()
    lab = Lab(tmp_path_factory.mktemp("lab-keys"))
    lab.up(members=3, clients=4, scenario="fresh", extra_addresses=True)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def lab(cluster_lab):
    cluster_lab.reseed("fresh")
    return cluster_lab


@pytest.fixture(scope="module")
def standalone_lab(tmp_path_factory):
    require_lab_machine()
    lab = Lab(tmp_path_factory.mktemp("lab-keys-standalone"))
    lab.up(members=1, clients=3, scenario="standalone")
    try:
        yield lab
    finally:
        lab.down()


# --- helpers ---------------------------------------------------------------------------------


def desired(lab: Lab, where: Path, *, keys: str = KEYS, without: tuple[str, ...] = ()) -> Path:
    """The lab's desired state with another `keys:` line and without some clients; short timeouts."""
    text = lab.desired_state_path.read_text().replace(KEYS, keys).replace("  connect_timeout: 5\n", "  connect_timeout: 3\n")
    assert keys in text
    for name in without:
        text = text.replace(f"  - {{name: {name}, address: {CLIENTS[name]}}}\n", "")
    path = where / "desired-state.yaml"
    path.write_text(text)
    return path


def csync(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"}
    )


def apply(cwd: Path, path: Path) -> subprocess.CompletedProcess:
    done = csync(cwd, "apply", "-f", str(path), "--auto-approve")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Converged" in done.stdout or "No changes." in done.stdout, done.stdout
    return done


def plan_json(cwd: Path, path: Path) -> dict:
    import json

    done = csync(cwd, "plan", "-f", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sh(lab: Lab, host: str, line: str) -> str:
    done = lab.exec(host, line, timeout=120)
    assert done.returncode == 0, f"{host}$ {line}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def read(lab: Lab, host: str, file: str) -> bytes:
    return lab.host_path(host, f"{PP}/{file}").read_bytes()


def all_keys(lab: Lab) -> dict[str, bytes]:
    """Every key file of every host and of the package filesystem, by place."""
    out = {}
    for h in lab.hosts:
        for p in sorted(lab.host_path(h.name, PP).iterdir()):
            out[f"{h.name}:{p.name}"] = p.read_bytes()
    pkgfs = lab.state_dir / "pkgfs" / dsau.PACKAGE_CLUSTER_KEY_DIR
    for p in sorted(pkgfs.iterdir()):
        out[f"pkgfs:{p.name}"] = p.read_bytes()
    return out


def cfrun(lab: Lab, member: str, client: str, source: str | None = None) -> str:
    """The lab's cfrun from ``member`` to ``client`` (leaving from ``source`` when given)."""
    env = f"CSYNC_LAB_SOURCE_ADDRESS={source} " if source else ""
    return without_cfrun_banners(sh(lab, member, f"{env}cfrun {client}"))


def cfrun_everywhere(lab: Lab) -> list[str]:
    """cfrun from every member address to every client, cfagent on every client against every
    package address: the failures (the lab's cfengine, independent of csync)."""
    failures = []
    for m in MEMBERS:
        for source in (MEMBERS[m], LAN2[m]):
            out = cfrun(lab, m, " ".join(CLIENTS), source)
            failures += [f"{m}@{source}: {line}" for line in out.splitlines() if not line.endswith(": ok")]
    for c in CLIENTS:
        for address in (PKG, PKG_LAN2):
            said, arrived = cfagent_copy(lab, c, address)
            if not arrived:
                failures.append(f"cfagent {c} -> {address}: {said.strip()}")
    return failures


def inventory(lab: Lab, node: str = "node1") -> list[str]:
    return sh(lab, node, f"cat {INVENTORY}").splitlines()


# --- ownership ---------------------------------------------------------------------------------


def test_a_standalone_site_converges_from_its_first_plan(standalone_lab, tmp_path):
    lab = standalone_lab
    lab.reseed("standalone")
    path = lab.desired_state_path
    done = csync(tmp_path, "plan", "-f", str(path), "--detailed-exitcode")
    assert done.returncode == 0, done.stdout + done.stderr  # no remove-key root-127.0.10.1.pub on the master
    assert csync(tmp_path, "apply", "-f", str(path), "--auto-approve").returncode == 0
    # the master's own address key is declared for it, so it is csync's: recorded, never pruned
    recorded = sh(lab, "master", "cat /var/opt/dsau/csync/inventory").splitlines()
    assert "master root-127.0.10.1.pub" in recorded and "client1 root-127.0.10.1.pub" in recorded
    assert csync(tmp_path, "plan", "-f", str(path), "--detailed-exitcode").returncode == 0
    assert without_cfrun_banners(sh(lab, "master", "cfrun client1 client2 client3")).splitlines() == [f"cfrun client{i}: ok" for i in (1, 2, 3)]
    assert cfagent_copy(lab, "master", "127.0.10.1", STANDALONE_SOURCE) == ("cfagent 127.0.10.1: ok\n", True)  # its own cfagent


def test_a_hand_placed_key_holding_the_cluster_key_survives_a_pruning_apply(lab, tmp_path):
    path = desired(lab, tmp_path)
    apply(tmp_path, path)  # converges (the extra addresses) and records what csync owns
    # a second package address on another subnet, placed by hand on a client and a member
    for host in ("client1", "node2"):
        sh(lab, host, f"cp {PP}/root-{PKG}.pub {PP}/root-127.0.30.10.pub")
    plan = plan_json(tmp_path, path)
    assert plan["actions"] == []
    notes = {n["address"]: n["message"] for n in plan["notices"]}
    assert "not csync's" in notes["client.client1.key[root-127.0.30.10.pub]"]
    assert "not csync's" in notes["member.node2.key[root-127.0.30.10.pub]"]
    done = apply(tmp_path, path)
    assert "remove" not in done.stdout.lower().split("plan:")[-1].split("\n")[0] or "0 to remove" in done.stdout
    for host in ("client1", "node2"):
        assert read(lab, host, "root-127.0.30.10.pub") == read(lab, host, f"root-{PKG}.pub")
    assert not any("127.0.30.10" in line for line in inventory(lab))


def test_a_removed_clients_keys_written_by_csync_are_pruned_from_every_member(lab, tmp_path):
    for m in MEMBERS:
        sh(lab, m, f"rm {PP}/root-{CLIENTS['client4']}.pub")
    path = desired(lab, tmp_path)
    done = apply(tmp_path, path)
    assert done.stdout.count(f"root-{CLIENTS['client4']}.pub") >= 3  # csync wrote them (install-key)
    recorded = inventory(lab)
    assert all(f"{m} root-{CLIENTS['client4']}.pub" in recorded for m in MEMBERS)
    # client4 leaves the site
    smaller = desired(lab, tmp_path, without=("client4",))
    plan = plan_json(tmp_path, smaller)
    assert sorted((a["kind"], a["host"], a["params"]["file"]) for a in plan["actions"]) == [
        ("remove-key", m, f"root-{CLIENTS['client4']}.pub") for m in MEMBERS
    ]
    apply(tmp_path, smaller)
    for m in MEMBERS:
        assert not lab.host_path(m, f"{PP}/root-{CLIENTS['client4']}.pub").exists()
    assert not any(CLIENTS["client4"] in line for line in inventory(lab))
    assert csync(tmp_path, "plan", "-f", str(smaller), "--detailed-exitcode").returncode == 0
    # the client's own files are csync's no longer: it is not probed, nothing there is touched
    assert read(lab, "client4", f"root-{PKG}.pub") == read(lab, "client1", f"root-{PKG}.pub")


# --- several addresses -------------------------------------------------------------------------


def test_cfrun_from_a_members_second_address_works_after_apply(lab, tmp_path):
    refused = cfrun(lab, "node2", "client1", LAN2["node2"])
    assert refused == f"cfrun client1: BAD: key could not be accepted on trust [remote {PP}/root-{LAN2['node2']}.pub missing]\n"
    path = desired(lab, tmp_path)
    plan = plan_json(tmp_path, path)
    added = {(a["host"], a["params"]["file"]) for a in plan["actions"]}
    assert {(c, f"root-{a}.pub") for c in CLIENTS for a in [*LAN2.values(), PKG_LAN2]} <= added
    assert plan["failover_ready_after"] is True
    state = load_desired_state([path])
    with Pool(state.access) as pool:
        before = assess(state, pool, live=True)
    assert before.disagreements == () and before.live.errors == ()  # the prediction sees the second LAN as cfrun does
    assert before.report.cfrun["node2@127.0.20.2"]["client1"].ok is False
    apply(tmp_path, path)
    assert cfrun(lab, "node2", "client1", LAN2["node2"]) == "cfrun client1: ok\n"
    assert cfrun_everywhere(lab) == []
    with Pool(state.access) as pool:
        after = assess(state, pool, live=True)
    assert after.failover_ready and after.disagreements == ()
    assert all(x.ok for row in after.live.cfrun.values() for x in row.values())
    assert len(after.live.cfrun) == 6 and set(after.live.cfagent_extra) == {PKG_LAN2}


# --- key files named by host name ----------------------------------------------------------------


def test_a_stale_hostname_key_on_a_client_is_replaced_then_cfrun_works(lab, tmp_path):
    path = desired(lab, tmp_path)
    apply(tmp_path, path)
    stale = read(lab, "client3", "localhost.pub")
    # client1's cfservd authenticates callers by name; client2's by address (cfengine's default)
    conf = lab.host_path("client1", f"{dsau.CFENGINE_DIR}/inputs/cfservd.conf")
    conf.write_text(conf.read_text().replace("control:\n", "control:\n   HostnameKeys = ( on )\n", 1))
    for c in ("client1", "client2"):
        lab.host_path(c, f"{PP}/root-node2.pub").write_bytes(stale)
    assert cfrun(lab, "node2", "client1") == f"cfrun client1: BAD: keys did not match [remote {PP}/root-node2.pub mismatch]\n"
    assert cfrun(lab, "node2", "client2") == "cfrun client2: ok\n"  # a wrong name key is harmless there, but wrong
    state = load_desired_state([path])
    with Pool(state.access) as pool:
        view = assess(state, pool, live=True)
    assert view.report.cfrun["node2"]["client1"].ok is False and view.disagreements == ()
    plan = plan_json(tmp_path, path)
    fixed = {(a["host"], a["params"]["file"]): a["kind"] for a in plan["actions"]}
    assert fixed[("client1", "root-node2.pub")] == fixed[("client2", "root-node2.pub")] == "copy-key"
    # client1 also needs the other members' keys under their names
    assert ("client1", "root-node1.pub") in fixed and ("client1", "root-node3.pub") in fixed
    assert ("client2", "root-node1.pub") not in fixed
    apply(tmp_path, path)
    cluster = read(lab, "node1", "localhost.pub")
    for c in ("client1", "client2"):
        assert read(lab, c, "root-node2.pub") == cluster
    for m in MEMBERS:
        assert cfrun(lab, m, "client1") == "cfrun client1: ok\n"
    assert csync(tmp_path, "plan", "-f", str(path), "--detailed-exitcode").returncode == 0
    assert "client1 root-node2.pub" in inventory(lab)  # named after a declared host, so csync's now


# --- rotation on purpose -----------------------------------------------------------------------


def test_a_rotation_runs_once_the_generation_is_raised_and_an_isolated_client_blocks_it(lab, tmp_path):
    rotate = desired(lab, tmp_path, keys="keys: {distribution: regenerate, cfrun: all-members, prune: true, generation: 1}")
    apply(tmp_path, desired(lab, tmp_path))  # converged, generation 0 recorded
    rotate = desired(lab, tmp_path, keys="keys: {distribution: regenerate, cfrun: all-members, prune: true, generation: 1}")
    before = all_keys(lab)
    lab.isolate("client3")
    try:
        done = csync(tmp_path, "apply", "-f", str(rotate), "--auto-approve")
        assert done.returncode != 0
        assert "key rotation (generation 0 -> 1)" in done.stdout + done.stderr and "unreachable: client3" in done.stdout + done.stderr
        assert all_keys(lab) == before  # nothing changed anywhere
    finally:
        lab.restore("client3")
    done = apply(tmp_path, rotate)
    assert "regenerate-keys" in done.stdout
    after = all_keys(lab)
    new = after["pkgfs:localhost.pub"]
    assert new != before["pkgfs:localhost.pub"]
    for m in MEMBERS:
        assert after[f"{m}:localhost.pub"] == new
        for c in CLIENTS:
            assert after[f"{m}:root-{CLIENTS[c]}.pub"] == after[f"{c}:localhost.pub"] != before[f"{c}:localhost.pub"]
    for c in CLIENTS:
        for a in [PKG, PKG_LAN2, *MEMBERS.values(), *LAN2.values()]:
            assert after[f"{c}:root-{a}.pub"] == new, (c, a)
    assert "generation 1" in inventory(lab)
    assert csync(tmp_path, "plan", "-f", str(rotate), "--detailed-exitcode").returncode == 0  # once, not on every plan
    assert cfrun_everywhere(lab) == []


# --- import ------------------------------------------------------------------------------------


def test_import_finds_the_extra_addresses_and_adopts_key_files_only_on_request(lab, tmp_path):
    apply(tmp_path, desired(lab, tmp_path))  # the extra addresses' keys are in the key store now
    sh(lab, "client2", f"cp {PP}/root-{PKG}.pub {PP}/root-127.0.30.10.pub")
    out = tmp_path / "site.yaml"
    done = csync(tmp_path, "import", "--from", MEMBERS["node2"], "--access", str(lab.desired_state_path), "-o", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    imported, ours = load_desired_state([out]), load_desired_state([lab.desired_state_path])
    assert imported.master.model_dump() == ours.master.model_dump()  # members' second LAN, the package's second address
    assert [c.address for c in imported.clients] == list(CLIENTS.values())
    assert not any("127.0.30.10" in line for line in inventory(lab))  # import alone owns nothing
    out.write_text(out.read_text().replace("prune: false", "prune: true"))
    assert plan_json(tmp_path, out)["actions"] == []  # not csync's: left alone
    done = csync(tmp_path, "import", "--from", MEMBERS["node2"], "-o", str(out), "--adopt-keys")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Adopted 1 key file(s) on 1 host(s)" in done.stdout
    assert "client2 root-127.0.30.10.pub" in inventory(lab)
    plan = plan_json(tmp_path, out)
    assert [(a["kind"], a["host"], a["params"]["file"]) for a in plan["actions"]] == [("remove-key", "client2", "root-127.0.30.10.pub")]
    apply(tmp_path, out)
    assert not lab.host_path("client2", f"{PP}/root-127.0.30.10.pub").exists()
