"""Issue #15, "Ask Serviceguard itself where it can", on the lab: the plan runs the -t preview
of each cluster operation on the lab's Serviceguard and shows its prediction beside csync's;
a preview that does not confirm an operation blocks it and what depends on it; a release
without -t gets no preview and the plan proceeds.

The disagreements are real ones the lab produces: the cluster changes between the probe and
the preview (an administrator's command, run from the probe's progress callback once every
host has answered), so csync's rule sees the old cluster and Serviceguard the new one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.desired.loader import load_desired_state
from reconciler.desired.model import DesiredState
from reconciler.driver.transport import Pool
from reconciler.lab import Lab
from reconciler.observe.facts import HostFacts
from reconciler.pipeline import refresh_and_plan
from reconciler.views.plan import render_text

pytestmark = pytest.mark.lab
USERLANDS = ("default", "hpux")  # issue 17: the preview script runs under posh and HP-UX's tools too

START_SEEN = "package:csync|node:node1|action:starting"


def csync(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"}
    )


def sh(lab: Lab, host: str, command: str) -> str:
    done = lab.exec(host, command)
    assert done.returncode == 0, f"{host}$ {command}: {done.stdout}{done.stderr}"
    return done.stdout


def desired(lab: Lab, tmp_path: Path, intent: str | None = None) -> Path:
    text = lab.desired_state_text()
    if intent is not None:
        text = text.replace("state: running}", f"state: {intent}}}", 1)
        assert f"state: {intent}" in text
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def plan_in_process(state: DesiredState, after_probe: Callable[[], None] | None = None):
    """refresh_and_plan as `csync plan` runs it; ``after_probe`` runs once every host has
    answered the probe, before the previews. Returns (plan, commands sent per host)."""
    answered: list[str] = []

    def probed(f: HostFacts) -> None:
        answered.append(f.name)
        if after_probe is not None and len(answered) == len(state.all_hosts):
            after_probe()

    with Pool(state.access) as pool:
        plan, _ = refresh_and_plan(state, pool, on_probed=probed)
        sent = {name: s.commands_sent for name, s in pool.sessions.items()}
    return plan, sent


def test_seed_plan_shows_serviceguards_preview_of_the_start_beside_csyncs(reseed, tmp_path):
    lab = reseed("seed")
    path = desired(lab, tmp_path)
    text = csync(tmp_path, "plan", "-f", str(path))
    assert text.returncode == 0, text.stdout + text.stderr
    section = text.stdout[text.stdout.index("Cluster operations") :]
    assert (
        "  * package.csync  [start-package] on node1: cmrunpkg -n node1 csync && cmmodpkg -e csync\n"
        f"      csync predicts:        {START_SEEN}\n"
        f"      Serviceguard predicts: {START_SEEN}  (cmrunpkg -t -n node1 csync on node1, A.11.20.00: agrees)\n"
    ) in section
    assert "member.node3  [dispatch-member] on node1" in section and "no preview (not a Serviceguard command)" in section
    md = csync(tmp_path, "plan", "-f", str(path), "--format", "markdown").stdout
    assert f"  - Serviceguard predicts: `{START_SEEN}` (cmrunpkg -t -n node1 csync on node1, A.11.20.00: agrees)" in md
    p = json.loads(csync(tmp_path, "plan", "-f", str(path), "--format", "json").stdout)
    [preview] = p["previews"]
    assert preview == {
        "action": "start-package:package.csync",
        "operation": "start",
        "package": "csync",
        "node": "node1",
        "host": "node1",
        "command": "cmrunpkg -t -n node1 csync",
        "release": "A.11.20.00",
        "expected": [START_SEEN],
        "lines": [START_SEEN, "cmrunpkg: Command preview completed successfully"],
        "exit_code": 0,
        "agrees": True,
        "verdict": f"Serviceguard predicts the same: {START_SEEN}",
    }
    # a preview acts on nothing: the package is still halted, and the plan is the same
    assert "status=down" in sh(lab, "node2", "cmviewcl -f line -p csync").splitlines()
    assert [a["kind"] for a in p["actions"]][:2] == ["start-package", "dispatch-member"]


def test_the_preview_costs_one_round_trip_on_the_node_of_the_operation_only(reseed):
    lab = reseed("seed")
    state = load_desired_state([lab.desired_state_path])
    plan, sent = plan_in_process(state)
    assert [p.agrees for p in plan.previews] == [True]
    assert sent == {h.name: 2 if h.name == "node1" else 1 for h in state.all_hosts}
    converged = reseed("fresh")
    plan, sent = plan_in_process(load_desired_state([converged.desired_state_path]))
    assert plan.previews == () and set(sent.values()) == {1}  # no cluster operation: nothing more


def test_switching_disabled_after_the_probe_blocks_the_start_and_what_depends_on_it(reseed):
    lab = reseed("seed")
    state = load_desired_state([lab.desired_state_path])
    # csync's rule reads the probe's cluster (switching enabled on node1); Serviceguard, asked
    # a moment later, sees node1's switching disabled for the package by an administrator
    plan, _ = plan_in_process(state, after_probe=lambda: sh(lab, "node2", "cmmodpkg -d -n node1 csync"))
    kinds = {a.kind for a in plan.actions}
    assert not kinds & {"start-package", "dispatch-member", "copy-key"}, kinds
    assert not any(a.depends_on for a in plan.actions)
    [preview] = plan.previews
    refusal = (
        "cmrunpkg: Unable to run package csync on node node1: node switching is disabled for the package on this "
        "node (enable it with cmmodpkg -e -n node1 csync)."
    )
    assert (preview.agrees, preview.exit_code, preview.lines) == (False, 1, (refusal,))
    [blocked] = [f for f in plan.blocked if f.address == "package.csync"]
    assert blocked.host == "node1"
    assert blocked.message.startswith(
        "not starting package csync on node1: Serviceguard's preview (cmrunpkg -t -n node1 csync "
        "on node1, A.11.20.00) does not confirm it: Serviceguard refuses it (exit 1): " + refusal.rstrip(".")
    )
    assert any(f.address == "member.node3" and "waits for the package" in f.message for f in plan.notices)
    text = render_text(plan)
    assert "  x start-package:package.csync on node1: not planned (blocked by Serviceguard's preview)" in text
    assert f"      csync predicts:        {START_SEEN}" in text
    # nothing ran: the package is still down
    assert "status=down" in sh(lab, "node2", "cmviewcl -f line -p csync").splitlines()
    # planned again, csync's own rule sees the switching and starts on the next eligible node,
    # which Serviceguard confirms
    again, _ = plan_in_process(state)
    [start] = [a for a in again.actions if a.kind == "start-package"]
    assert start.host == "node2" and [p.agrees for p in again.previews] == [True]
    assert again.previews[0].predicted == ("package:csync|node:node2|action:starting",)


def test_a_halt_serviceguard_predicts_on_another_node_is_blocked(reseed, tmp_path):
    lab = reseed("fresh")
    state = load_desired_state([desired(lab, tmp_path, intent="halted")])
    # the probe sees the package on node1; then node1 is halted and the package fails over
    plan, _ = plan_in_process(state, after_probe=lambda: sh(lab, "node2", "cmhaltnode -f node1"))
    assert not [a for a in plan.actions if a.kind == "halt-package"]
    [preview] = plan.previews
    assert preview.command == "cmhaltpkg -t csync" and preview.host == "node1"
    assert (preview.agrees, preview.exit_code) == (False, 0)
    assert preview.predicted == ("package:csync|node:node2|action:halting",)
    assert preview.verdict == ("Serviceguard predicts package:csync|node:node2|action:halting, csync package:csync|node:node1|action:halting")
    assert any(f.message.startswith("not halting package csync on node1: Serviceguard's preview") for f in plan.blocked)
    assert "Serviceguard predicts: package:csync|node:node2|action:halting" in render_text(plan)
    assert "DISAGREES: blocked" in render_text(plan)


def test_a_release_without_the_preview_says_so_and_proceeds(reseed, tmp_path):
    lab = reseed("seed")
    before = lab.sg_release
    lab.set_sg_release("A.11.18")
    try:
        path = desired(lab, tmp_path)
        text = csync(tmp_path, "plan", "-f", str(path))
        p = json.loads(csync(tmp_path, "plan", "-f", str(path), "--format", "json").stdout)
    finally:
        lab.set_sg_release(before)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "      Serviceguard:          no preview on this release (A.11.18.00; -t from A.11.19)" in text.stdout
    assert [a["kind"] for a in p["actions"]][:2] == ["start-package", "dispatch-member"] and not p["blocked"]
    [preview] = p["previews"]
    assert (preview["agrees"], preview["release"], preview["lines"], preview["exit_code"]) == (None, "A.11.18.00", [], None)


def test_apply_previews_the_plan_it_makes_under_its_lock_and_converges(reseed, tmp_path):
    lab = reseed("seed")
    path = desired(lab, tmp_path)
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--allow-cluster-ops")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Serviceguard predicts: {START_SEEN}  (cmrunpkg -t -n node1 csync on node1, A.11.20.00: agrees)" in r.stdout
    assert {"status=up", "owner=node1"} <= set(sh(lab, "node2", "cmviewcl -f line -p csync").splitlines())
