"""`csync import` against the lab: the desired state written from what the hosts hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.lab.runtime import key_dir

pytestmark = pytest.mark.lab
USERLANDS = ("default", "hpux")  # issue 17: these run under both userlands of the lab


def csync(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def topology(state) -> dict:
    """What import declares about the site (not the policy choices, the intent nor the access)."""
    master = state.master.model_dump(mode="json")
    master.get("package", {}).pop("state", None)
    return {
        "master": master,
        "clients": [c.model_dump(mode="json") for c in state.clients],
        "cfrun": state.keys.cfrun,
    }


def plan_json(cwd: Path, path: Path) -> dict:
    import json

    r = csync(cwd, "plan", "-f", str(path), "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_import_of_the_fresh_lab_validates_and_plans_no_changes(lab, tmp_path):
    out = tmp_path / "site.yaml"
    r = csync(tmp_path, "import", "--from", "127.0.10.2", "--access", str(lab.desired_state_path), "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert csync(tmp_path, "validate", "-f", str(out)).returncode == 0
    imported, lab_state = load_desired_state([out]), load_desired_state([lab.desired_state_path])
    assert topology(imported) == topology(lab_state)
    assert imported.keys.prune is False and imported.keys.distribution == "copy"
    assert imported.access.port == lab_state.access.port
    # key paths are written relative to the output file, and resolve to the lab's keys
    assert not Path(out.read_text().split("identity_file: ")[1].split()[0]).is_absolute()
    assert Path(imported.access.identity_file).resolve() == Path(lab_state.access.identity_file).resolve()
    plan = csync(tmp_path, "plan", "-f", str(out), "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes" in plan.stdout


def test_import_of_the_seed_lab_describes_the_site_as_it_is(reseed, tmp_path):
    lab = reseed("seed")
    out = tmp_path / "site.yaml"
    # from node3: the member added while the package was down, with an empty key store
    r = csync(tmp_path, "import", "--from", "127.0.10.3", "--access", str(lab.desired_state_path), "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "written as state: halted" in r.stderr
    imported, lab_state = load_desired_state([out]), load_desired_state([lab.desired_state_path])
    # every member Serviceguard knows (node3 too), the package, and the clients of the key store
    assert topology(imported) == topology(lab_state)
    # The package was found halted: the import says so, and its first plan starts nothing,
    # dispatches nothing and spreads no key it cannot confirm ...
    assert imported.package.state == "halted"
    halted = plan_json(tmp_path, out)
    assert not {a["kind"] for a in halted["actions"]} & {"start-package", "dispatch-member", "copy-key"}
    assert any("waits for the package" in n["message"] for n in halted["notices"])
    # ... until the administrator says the package runs: then what plan shows is exactly what
    # the site lacks, the same as from the lab's own file ...
    out.write_text(out.read_text().replace("state: halted", "state: running"))
    ours, theirs = plan_json(tmp_path, out), plan_json(tmp_path, lab.desired_state_path)
    assert [a["address"] for a in ours["actions"]] == [a["address"] for a in theirs["actions"]]
    assert {a["kind"] for a in ours["actions"]} == {"start-package", "dispatch-member", "copy-key"}
    # ... and once applied, the imported file plans no changes
    r = csync(tmp_path, "apply", "-f", str(out), "--auto-approve", "--allow-cluster-ops")
    assert r.returncode == 0, r.stdout + r.stderr
    assert csync(tmp_path, "plan", "-f", str(out), "--detailed-exitcode").returncode == 0


def test_a_client_missing_from_the_key_store_is_not_declared(lab, tmp_path):
    """The clients are the key store's: a client whose key the members lack is not one."""
    for member in ("node1", "node2", "node3"):
        (key_dir(lab, member) / dsau.peer_key_name("127.0.10.24")).unlink()
    out = tmp_path / "site.yaml"
    r = csync(tmp_path, "import", "--from", "127.0.10.1", "--access", str(lab.desired_state_path), "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert [c.name for c in load_desired_state([out]).clients] == ["client1", "client2", "client3"]


def test_importing_into_an_existing_file_keeps_its_comments_order_and_choices(lab, tmp_path):
    text = lab.desired_state_path.read_text()
    # an admin's file: comments, its own site name and key policy, a client gone from the
    # site, client4 not yet declared, a wrong address
    text = text.replace("site: lab\n", "site: lab  # the lab site\n")
    text = text.replace("clients:\n", "# managed clients, by rack\nclients:\n")
    text = text.replace("  - {name: client4, address: 127.0.10.24}\n", "  - {name: ghost, address: 127.0.10.99}  # decommissioned\n")
    text = text.replace("{name: client2, address: 127.0.10.22}", "{name: client2, address: 127.0.10.92}  # rack 2")
    assert "client4" not in text
    out = tmp_path / "site.yaml"
    out.write_text(text)
    r = csync(tmp_path, "import", "--from", "127.0.10.1", "-o", str(out))  # its own access: section
    assert r.returncode == 0, r.stdout + r.stderr
    result = out.read_text()
    assert "site: lab  # the lab site\n" in result
    assert "# managed clients, by rack\nclients:\n" in result
    assert "{name: client2, address: 127.0.10.22}  # rack 2" in result
    assert "ghost" not in result
    assert result.index("client3") < result.index("client4")
    assert "keys: {distribution: copy, cfrun: all-members, prune: true}" in result  # the admin's choice kept
    doc = YAML().load(result)
    assert list(doc) == ["version", "site", "master", "clients", "keys", "access"]
    state = load_desired_state([out])
    assert [c.name for c in state.clients] == ["client1", "client2", "client3", "client4"]
    assert csync(tmp_path, "plan", "-f", str(out), "--detailed-exitcode").returncode == 0


def test_import_of_a_standalone_master(lab_factory, tmp_path):
    lab = lab_factory("standalone", clients=2)
    r = csync(tmp_path, "import", "--from", "127.0.10.1", "--access", str(lab.desired_state_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "site.yaml"
    out.write_text(r.stdout)
    state = load_desired_state([out])
    assert state.master.mode == "standalone" and state.master.host.name == "master" and state.site == "master"
    assert [(c.name, c.address) for c in state.clients] == [("client1", "127.0.10.21"), ("client2", "127.0.10.22")]
    assert csync(tmp_path, "plan", "-f", str(out), "--detailed-exitcode").returncode == 0


def test_import_errors_are_clear_and_never_a_traceback(lab, tmp_path):
    access = str(lab.desired_state_path)
    r = csync(tmp_path, "import", "--from", "127.0.10.21", "--access", access)
    assert r.returncode == 1 and "neither a member of a Serviceguard cluster" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    r = csync(tmp_path, "import", "--from", "127.0.10.250", "--access", access)
    assert r.returncode == 1 and "cannot probe 127.0.10.250" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("access:\n  port: '22'\n")
    r = csync(tmp_path, "import", "--from", "127.0.10.1", "--access", str(bad))
    assert r.returncode == 3 and "bad.yaml:2" in r.stderr and "Traceback" not in r.stderr
    r = csync(tmp_path, "import", "--from", "no-such-host.invalid", "--access", access)
    assert r.returncode == 1 and "cannot resolve" in r.stderr
    r = csync(tmp_path, "import", "--access", access)
    assert r.returncode == 64 and "--from" in r.stderr
