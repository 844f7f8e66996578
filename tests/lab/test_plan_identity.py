"""The plan identity against the lab (docs/SECURITY.md): a second key, authorized on every
host with a forced command, that can run csync's probe program and nothing else, and plans
exactly as root's key does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.desired.model import Platform
from reconciler.domain import dsau
from reconciler.driver import probeprogram
from reconciler.lab.keys import ssh_ed25519

pytestmark = pytest.mark.lab
# also under the lab's HP-UX-like userland: posh as /bin/sh and root's shell (the forced command
# runs under it), the one-true-awk, tools that refuse what HP-UX 11i lacks
USERLANDS = ("default", "hpux")


def csync(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CSYNC_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
        cwd=cwd,
    )


def plan_key(lab, tmp_path: Path) -> tuple[Path, Path]:
    """A fresh plan key and a desired state that names it (the lab's own, plus the key)."""
    private, public = ssh_ed25519("csync-plan")
    key = tmp_path / "plan_ed25519"
    key.write_bytes(private)
    key.chmod(0o600)
    (tmp_path / "plan_ed25519.pub").write_bytes(public)
    text = lab.desired_state_path.read_text().replace("access:\n", f"access:\n  plan_identity_file: {key}\n", 1)
    state = tmp_path / "site.yaml"
    state.write_text(text)
    return key, state


def authorize_by_hand(lab, key: Path) -> str:
    """What an administrator (or their configuration management) does: the forced-command
    line for the plan key in root's authorized_keys on every host, written by this test, not
    by csync."""
    blob = (key.parent / (key.name + ".pub")).read_text().split()[1]
    line = f'restrict,command="{dsau.PROBE_PROGRAM}" ssh-ed25519 {blob} csync-plan\n'
    for host in lab.hosts:
        path = lab.host_path(host.name, "/root/.ssh/authorized_keys")
        path.write_text(path.read_text() + line)
    return line


def ssh(lab, key: Path, host: str, *command: str) -> subprocess.CompletedProcess:
    address = lab.hosts[host].address
    argv = [
        "ssh",
        "-i",
        str(key),
        "-p",
        str(lab.port),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-T",
        f"root@{address}",
        *command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def without_timing(facts: dict) -> list[dict]:
    return [{k: v for k, v in f.items() if k != "probe_seconds"} for f in facts["hosts"]]


def test_the_plan_key_plans_like_root_and_can_do_nothing_else(reseed, tmp_path):
    lab = reseed("seed")
    key, state = plan_key(lab, tmp_path)
    authorize_by_hand(lab, key)

    # before the program is installed: every host unknown, and its install planned
    before = csync("plan", "-f", str(state), "--format", "json")
    assert before.returncode == 1, before.stderr
    plan = json.loads(before.stdout)
    assert {a["host"] for a in plan["actions"] if a["kind"] == "install-probe"} == set(lab.hosts.names())
    assert {a["kind"] for a in plan["actions"]} == {"install-probe"}  # nothing else is known
    hosts = {f["host"]: f["message"] for f in plan["unknown"] if f["host"] and f["address"] == f"{lab.hosts[f['host']].role}.{f['host']}"}
    assert set(hosts) == set(lab.hosts.names()) and all("is not installed" in m for m in hosts.values()), hosts

    # csync bootstrap (root identity) installs it, then proves the plan identity answers
    boot = csync("bootstrap", "-f", str(state))
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert f'restrict,command="{dsau.PROBE_PROGRAM}" ssh-ed25519 ' in boot.stdout
    assert f'no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,command="{dsau.PROBE_PROGRAM}" ssh-ed25519 ' in boot.stdout
    assert "FAILED" not in boot.stdout

    # the same plan (byte for byte) and the same facts, with the plan key and with root's
    with_plan = csync("plan", "-f", str(state), "--format", "json")
    with_root = csync("plan", "-f", str(state), "--format", "json", "--identity", "root")
    # the same plan; only root can also ask Serviceguard to preview its cluster operations
    # (cmrunpkg -t needs root: the plan identity runs nothing but the probe)
    planned, rooted = json.loads(with_plan.stdout), json.loads(with_root.stdout)
    assert planned["previews"] == [] and rooted["previews"] and all(p["agrees"] for p in rooted["previews"])
    assert {**planned, "previews": []} == {**rooted, "previews": []}
    assert with_plan.returncode == with_root.returncode == 0, with_plan.stdout + with_plan.stderr + with_root.stderr
    kinds = [a["kind"] for a in json.loads(with_plan.stdout)["actions"]]
    assert kinds[:2] == ["start-package", "dispatch-member"] and "copy-key" in kinds and "install-probe" not in kinds
    facts_plan = csync("facts", "-f", str(state), "--format", "json")
    facts_root = csync("facts", "-f", str(state), "--format", "json", "--identity", "root")
    assert facts_plan.returncode == facts_root.returncode == 0
    assert without_timing(json.loads(facts_plan.stdout)) == without_timing(json.loads(facts_root.stdout))

    # anything but a probe request is refused, on every kind of host
    for host in ("node1", "client1"):
        for command in (("id",), ("sh", "-c", "id"), ()):
            r = ssh(lab, key, host, *command)
            assert r.returncode == probeprogram.EXIT_REFUSED, (command, r.stdout, r.stderr)
            assert "csync-probe: refused" in r.stderr and "uid=" not in r.stdout
    digest = probeprogram.program_digest(Platform())
    for bad in (
        f"csync-probe {digest} role=client cf=/etc/..",
        f"csync-probe {digest} role=client cf=/x;id",
        f"csync-probe {digest} role=master cf=/x minputs=/root",
        f"csync-probe {digest} role=client cf=/x cf=/y",
    ):
        r = ssh(lab, key, "client1", bad)
        assert r.returncode == probeprogram.EXIT_REFUSED and r.stdout == "", (bad, r.stderr)
    scp = subprocess.run(
        [
            "scp",
            "-i",
            str(key),
            "-P",
            str(lab.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={lab.known_hosts}",
            f"root@{lab.hosts['client1'].address}:/etc/hostname",
            str(tmp_path / "stolen"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert scp.returncode != 0 and not (tmp_path / "stolen").exists()
    # and the root key still runs anything (the lab's admin key)
    assert ssh(lab, lab.admin_key, "client1", "id", "-u").stdout.strip() == "0"

    # the plan made with the plan key is what root applies; the plan key then sees no changes
    saved = tmp_path / "plan.json"
    made = csync("plan", "-f", str(state), "--out", str(saved), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    applied = csync("apply", "-f", str(state), str(saved), cwd=tmp_path)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    after = csync("plan", "-f", str(state), "--detailed-exitcode")
    assert after.returncode == 0 and "No changes." in after.stdout, after.stdout + after.stderr


def test_a_stale_probe_program_is_reported_and_upgraded_by_apply(reseed, tmp_path):
    lab = reseed("fresh")
    key, state = plan_key(lab, tmp_path)
    boot = csync("bootstrap", "-f", str(state), "--authorize")
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert csync("plan", "-f", str(state), "--detailed-exitcode").returncode == 0

    # client1 keeps an older program (an earlier csync's), client2 a newer one
    current = probeprogram.program_text(Platform())
    older = current.replace(probeprogram.version_line(Platform()), "CSYNC_PROBE_PROGRAM=v0:sha256:" + "0" * 64, 1)
    newer = current.replace(probeprogram.version_line(Platform()), f"CSYNC_PROBE_PROGRAM=v{probeprogram.PROGRAM_VERSION + 1}:sha256:" + "f" * 64, 1)
    lab.host_path("client1", dsau.PROBE_PROGRAM).write_text(older)
    lab.host_path("client2", dsau.PROBE_PROGRAM).write_text(newer)

    planned = csync("plan", "-f", str(state), "--out", str(tmp_path / "plan.json"), cwd=tmp_path)
    assert planned.returncode == 1, planned.stdout + planned.stderr  # their other facts are unknown
    plan = json.loads((tmp_path / "plan.json").read_text())
    [upgrade] = plan["actions"]
    assert (upgrade["kind"], upgrade["host"], upgrade["address"]) == ("install-probe", "client1", "client.client1.probe")
    assert "version 0" in upgrade["reason"] and upgrade["precondition"]["program"]["version"] == 0
    unknown = {f["host"]: f["message"] for f in plan["unknown"]}
    assert "its probe program is version 0" in unknown["client1"] and "upgraded" in unknown["client1"]
    assert "newer than this csync's" in unknown["client2"]
    assert any(f["host"] == "client2" and "newer" in f["message"] for f in plan["notices"])
    assert "install-probe" in planned.stdout and "client.client1.probe" in planned.stdout

    # root's identity sees the same program, and applies the reviewed plan: client1 upgraded
    applied = csync("apply", "-f", str(state), str(tmp_path / "plan.json"), cwd=tmp_path)
    assert "install-probe" in applied.stdout and "Converged" in applied.stdout
    assert applied.returncode == 1, applied.stdout + applied.stderr  # the plan had unknown items
    assert lab.host_path("client1", dsau.PROBE_PROGRAM).read_text() == current
    assert lab.host_path("client2", dsau.PROBE_PROGRAM).read_text() == newer  # never downgraded
    mode = lab.host_path("client1", dsau.PROBE_PROGRAM).stat().st_mode & 0o777
    assert mode == 0o755
    journal = next((tmp_path / ".csync" / "runs").glob("*.jsonl")).read_text().splitlines()
    ends = [json.loads(line) for line in journal if '"action-end"' in line]
    assert [(e["kind"], e["host"], e["outcome"]) for e in ends] == [("install-probe", "client1", "done")]

    # client1 answers the plan identity again; client2 until its program is csync's
    lab.host_path("client2", dsau.PROBE_PROGRAM).write_text(current)
    again = csync("plan", "-f", str(state), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout, again.stdout + again.stderr
