"""Issue #15 on the lab: csync follows the administrator's intent for the package and the
members, and Serviceguard's rules for where a package may run. Each test names a point of
the issue; each failed before the change (a traceback, a dispatch of a lagging member, a
start of a package halted for maintenance or on a node with switching disabled, an
unattended apply running cluster operations).

The session lab (3 members, 4 clients) is reseeded per test; csync runs as a subprocess,
as a user or a CI job runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.lab import Lab

pytestmark = pytest.mark.lab


def csync(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"}
    )


def desired(lab: Lab, tmp_path: Path, *, without=(), intent: str | None = None) -> Path:
    text = lab.desired_state_text(without=without)
    if intent is not None:
        text = text.replace("state: running}", f"state: {intent}}}", 1)
        assert f"state: {intent}" in text
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def plan(lab: Lab, tmp_path: Path, path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    r = csync(tmp_path, "plan", "-f", str(path), "--format", "json")
    assert "Traceback" not in r.stdout + r.stderr
    return r, json.loads(r.stdout) if r.stdout.strip() else {}


def kinds(p: dict) -> list[tuple[str, str]]:
    return [(a["kind"], a["host"]) for a in p["actions"]]


def sh(lab: Lab, host: str, command: str) -> str:
    done = lab.exec(host, command)
    assert done.returncode == 0, f"{host}$ {command}: {done.stdout}{done.stderr}"
    return done.stdout


def test_a_package_on_an_undeclared_node_is_reported_never_a_traceback(reseed, tmp_path):
    lab = reseed("fresh")
    sh(lab, "node1", "cmhaltpkg csync && cmrunpkg -n node3 csync && cmmodpkg -e csync")
    path = desired(lab, tmp_path, without=["node3"])
    r, p = plan(lab, tmp_path, path)
    assert r.returncode == 1, r.stderr  # unknown: never "converged"
    [unknown] = [f for f in p["unknown"] if f["address"] == "package.csync"]
    assert "node3, which the desired state does not declare" in unknown["message"]
    assert any(f["address"] == "node.node3" for f in p["notices"])
    assert p["failover_ready_after"] is None
    assert not {k for k, _ in kinds(p)} & {"start-package", "halt-package", "dispatch-member"}
    text = csync(tmp_path, "plan", "-f", str(path))
    assert text.returncode == 1 and "Traceback" not in text.stderr and "failover-ready: unknown" in text.stdout


def test_a_member_whose_inputs_lag_is_a_notice_not_a_dispatch(reseed, tmp_path):
    lab = reseed("fresh")
    lab.lag_inputs("node2")
    r, p = plan(lab, tmp_path, desired(lab, tmp_path))
    assert r.returncode == 0 and p["actions"] == []
    [notice] = [n for n in p["notices"] if n["address"] == "member.node2"]
    assert "cf.motd" in notice["message"] and "not an action" in notice["message"]


def test_an_unconfigured_member_is_dispatched_on_the_node_running_the_package(reseed, tmp_path):
    lab = reseed("fresh")
    sh(lab, "node3", "rm -f /etc/cmcluster/csync/*")
    r, p = plan(lab, tmp_path, desired(lab, tmp_path))
    assert ("dispatch-member", "node1") in kinds(p)
    assert "none of the package's files" in next(a["reason"] for a in p["actions"] if a["kind"] == "dispatch-member")


def test_halted_intent_halts_a_running_package_and_never_starts_one(reseed, tmp_path):
    lab = reseed("fresh")
    path = desired(lab, tmp_path, intent="halted")
    r, p = plan(lab, tmp_path, path)
    assert kinds(p) == [("halt-package", "node1")] and p["cluster_operations"] == 1
    r = csync(tmp_path, "plan", "-f", str(path), "--out", "plan.json")
    assert r.returncode == 0
    r = csync(tmp_path, "apply", "plan.json", "-f", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "csync" in sh(lab, "node2", "cmviewcl -f line -p csync") and "status=down" in sh(lab, "node2", "cmviewcl -f line -p csync")
    # halted: the next plan starts nothing, and it is clean
    r, p = plan(lab, tmp_path, path)
    assert r.returncode == 0 and p["actions"] == []


def test_unmanaged_leaves_switching_disabled_on_purpose_and_running_would_enable_it(reseed, tmp_path):
    lab = reseed("fresh")
    sh(lab, "node1", "cmmodpkg -d csync")
    r, p = plan(lab, tmp_path, desired(lab, tmp_path, intent="unmanaged"))
    assert r.returncode == 0 and p["actions"] == []
    assert any("leaves it so" in n["message"] for n in p["notices"])
    assert p["failover_ready_after"] is False and any("global switching" in n for n in p["failover_notes"])
    r, p = plan(lab, tmp_path, desired(lab, tmp_path))
    assert kinds(p) == [("enable-switching", "node1")]


def test_the_start_node_honours_per_node_switching(reseed, tmp_path):
    lab = reseed("seed")
    sh(lab, "node1", "cmmodpkg -d -n node1 csync")
    r, p = plan(lab, tmp_path, desired(lab, tmp_path))
    [start] = [a for a in p["actions"] if a["kind"] == "start-package"]
    assert start["host"] == "node2" and "node1" in start["reason"]


@pytest.mark.parametrize(
    "disturb, level",
    [
        ("cmmodpkg -m on -n node1 csync", "blocked"),  # maintenance mode, halted
        ("cmrunpkg -n node1 csync && cmhaltnode -d node1", "blocked"),  # detached
    ],
)
def test_a_package_out_of_service_is_never_started(reseed, tmp_path, disturb, level):
    lab = reseed("seed")
    sh(lab, "node2", disturb)
    r, p = plan(lab, tmp_path, desired(lab, tmp_path))
    assert not {k for k, _ in kinds(p)} & {"start-package", "halt-package", "enable-switching"}
    assert any(f["address"] == "package.csync" for f in p[level]), p


def test_a_package_in_transition_is_unknown_and_not_acted_on(reseed, tmp_path):
    lab = reseed("seed")
    lab.pkg_state("csync", "starting", node="node1")
    try:
        r, p = plan(lab, tmp_path, desired(lab, tmp_path))
    finally:
        lab.pkg_state("csync", "release")
    assert r.returncode == 1 and not {k for k, _ in kinds(p)} & {"start-package", "halt-package", "enable-switching", "dispatch-member"}
    assert any("in transition" in f["message"] for f in p["unknown"])


def test_an_unattended_apply_refuses_cluster_operations_and_a_reviewed_plan_runs_them(reseed, tmp_path):
    lab = reseed("seed")
    path = desired(lab, tmp_path)
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve")
    assert r.returncode == 6, r.stdout + r.stderr
    assert r.stderr.startswith("Error: ") and "--allow-cluster-ops" in r.stderr and "nothing was run" in r.stderr
    assert "status=down" in sh(lab, "node2", "cmviewcl -f line -p csync")  # nothing ran
    assert csync(tmp_path, "plan", "-f", str(path), "--out", "plan.json").returncode == 0
    r = csync(tmp_path, "apply", "plan.json", "-f", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert csync(tmp_path, "plan", "-f", str(path), "--detailed-exitcode").returncode == 0


@pytest.mark.parametrize("scenario", ["fresh", "seed", "standalone"])
def test_plan_never_shows_a_traceback_under_any_disturbance(reseed, lab_factory, tmp_path, scenario):
    lab = lab_factory("standalone", members=1, clients=2) if scenario == "standalone" else reseed(scenario)
    path = desired(lab, tmp_path)
    disturbances = [] if scenario == "standalone" else ["cmmodpkg -d -n node2 csync", "cmhaltnode -f node3", "cmmodpkg -d csync", "cmhaltpkg csync"]
    for step in ["true", *disturbances]:
        lab.exec("node1" if scenario != "standalone" else "master", step)
        for fmt in ("text", "json", "markdown"):
            r = csync(tmp_path, "plan", "-f", str(path), "--format", fmt)
            assert "Traceback" not in r.stdout + r.stderr, f"{step}: {r.stderr}"
            assert r.returncode in (0, 1), f"{step}: exit {r.returncode}: {r.stderr}"
            if r.returncode == 1 and r.stderr.strip():
                assert all(line.startswith(("Error: ", "probed")) for line in r.stderr.strip().splitlines()), r.stderr
