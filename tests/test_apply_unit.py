"""The executor's pure parts on constructed plans and simulated hosts (no lab): waves,
one round trip per host per wave, failures blocking only their dependents, stale actions,
verification, interruption; the batch script under a real /bin/sh; up-front plan checks."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from reconciler.apply.checks import changed_facts as differences
from reconciler.apply.checks import check_plan
from reconciler.apply.events import Events, StopFlag
from reconciler.apply.executor import Executor
from reconciler.apply.journal import scrub
from reconciler.apply.report import ActionResult, plan_digest
from reconciler.domain import dsau
from reconciler.driver import batch
from reconciler.driver.transport import CommandResult, TransportError
from reconciler.errors import InvalidInput, StalePlan
from reconciler.observe.facts import HostFacts, PackageFilesystem, SshKey, unreachable
from reconciler.plan.artefact import Action, Plan, fingerprint
from reconciler.plan.kinds import precondition_now
from reconciler.plan.planner import make_plan
from tests.unit.sitefacts import (
    INPUTS,
    PKG_IP,
    converged,
    key,
    member_ip,
    site,
    standalone_facts,
    with_keys,
)
from tests.unit.test_planner import _ssh, seed_facts

# --- a simulated site: what each action does to the hosts' facts -------------------------


def effect(state, world: dict[str, HostFacts], action: Action, *, package_key: str = "cluster") -> None:
    """Change ``world`` as the action's command would on real hosts (``package_key``: the
    label of the key the package filesystem holds)."""
    p = action.params
    if action.kind == "start-package":
        for m in state.members:
            f = world[m.name]
            view = f.cluster.packages[p["package"]].model_copy(update={"status": "up", "state": "running", "owner": p["node"], "autorun": "enabled"})
            cluster = f.cluster.model_copy(update={"packages": {p["package"]: view}})
            pkgfs = (
                PackageFilesystem(mounted=True, cluster_key=key("localhost.pub", package_key), inputs_digest=INPUTS) if m.name == p["node"] else f.package_fs
            )
            world[m.name] = f.model_copy(update={"cluster": cluster, "package_fs": pkgfs})
    elif action.kind == "enable-switching":
        for m in state.members:
            f = world[m.name]
            view = f.cluster.packages[p["package"]].model_copy(update={"autorun": "enabled"})
            world[m.name] = f.model_copy(update={"cluster": f.cluster.model_copy(update={"packages": {p["package"]: view}})})
    elif action.kind == "dispatch-member":
        owner = world[action.host]
        member = world[p["member"]]
        keys = {n: k for n, k in owner.keys.items() if n.startswith(dsau.PEER_KEY_PREFIX)}
        keys[dsau.OWN_PUBLIC_KEY] = key(dsau.OWN_PUBLIC_KEY, "cluster")
        world[p["member"]] = member.model_copy(update={"keys": keys, "inputs_digest": INPUTS, "inputs_count": 2, "package_files": 1})
        for m in state.members:
            name = dsau.peer_key_name(member.address)
            world[m.name] = world[m.name].model_copy(update={"keys": {**world[m.name].keys, name: key(name, "cluster")}})
    elif action.kind in ("copy-key", "install-key"):
        f = world[action.host]
        source = (
            f.keys[p["source"]] if action.kind == "copy-key" else next(k for h in world.values() for k in h.keys.values() if k.fingerprint == p["fingerprint"])
        )
        world[action.host] = f.model_copy(update={"keys": {**f.keys, p["file"]: source.model_copy(update={"name": p["file"], "mode": 0o644})}})
    elif action.kind == "remove-key":
        f = world[action.host]
        world[action.host] = f.model_copy(update={"keys": {n: k for n, k in f.keys.items() if n != p["file"]}})
    else:
        raise AssertionError(f"no simulation of {action.kind}")


class SimulatedExecutor(Executor):
    """The real executor with the hosts replaced by ``world``; counts round trips."""

    def __init__(self, state, plan, world, *, fail=(), no_effect=(), down=(), package_key="cluster", **kw):
        super().__init__(state, plan, pool=None, **kw)
        self.package_key = package_key
        self.world = dict(world)
        self.fail, self.no_effect, self.down = set(fail), set(no_effect), set(down)
        self.batches: list[tuple[str, list[str]]] = []
        self.probes: Counter = Counter()

    def _store(self, name: str, after: int) -> None:
        self.probes[name] += 1
        host = self.hosts[name]
        f = unreachable(name, host.address, self.state.role_of(name), "connection refused", "unreachable") if name in self.down else self.world[name]
        with self._lock:
            self.facts[name] = f
            self.taken_after[name] = after

    def _probe(self, names, after):
        for n in names:
            self._store(n, after)

    def _probe_one(self, host, after):
        self._store(host.name, after)

    def _commands_sent(self, host):
        return sum(1 for name, _ in self.batches if name == host.name)

    def _run_batch(self, host, actions, nonce):
        if host.name in self.down:
            raise TransportError("connection lost", kind="unreachable")
        with self._lock:
            self.batches.append((host.name, [a.id for a in actions]))
        out, err = [], []
        for i, a in enumerate(actions):
            rc = 1 if a.id in self.fail else 0
            if rc == 0 and a.id not in self.no_effect:
                with self._lock:
                    effect(self.state, self.world, a, package_key=self.package_key)
            out += [f"@@{nonce} begin {i}", f"@@{nonce} end {i} {rc}"]
            err += [f"@@{nonce} begin {i}"] + (["boom"] if rc else []) + [f"@@{nonce} end {i} {rc}"]
        return CommandResult(0, "\n".join(out).encode(), "\n".join(err).encode(), 0.01)


def outcomes(results: dict[str, ActionResult]) -> dict[str, str]:
    return {i: r.outcome for i, r in results.items()}


def seed():
    state = site()
    facts = seed_facts(state)
    return state, facts, make_plan(state, facts)


# --- waves and round trips ------------------------------------------------------------------


def test_the_seed_plan_runs_wave_by_wave_to_a_converged_site():
    state, facts, plan = seed()
    ex = SimulatedExecutor(state, plan, facts, facts=facts)
    results = ex.run()
    assert set(outcomes(results).values()) == {"done"}
    assert make_plan(state, ex.world).clean


def test_each_host_gets_one_round_trip_per_wave_for_all_its_actions():
    state, facts, plan = seed()
    ex = SimulatedExecutor(state, plan, facts, facts=facts)
    ex.run()
    per_host_wave = Counter((host, plan_wave(plan, ids[0])) for host, ids in ex.batches)
    assert max(per_host_wave.values()) == 1
    client1 = [ids for host, ids in ex.batches if host == "client1"]
    assert len(client1) == 1 and len(client1[0]) == 2


def test_probes_after_a_wave_serve_as_the_next_waves_recheck():
    state, facts, plan = seed()
    ex = SimulatedExecutor(state, plan, facts, facts=facts)
    ex.run()
    # node1 runs waves 1 and 2 (a probe after each) and is probed after the last wave; the
    # clients' only probe is the one after their batch in the last wave: the plan's facts
    # were their re-check
    assert ex.probes["node1"] == 3
    assert all(ex.probes[c.name] == 1 for c in state.clients)


def plan_wave(plan: Plan, action_id: str) -> int:
    return next(a.wave for a in plan.actions if a.id == action_id)


# --- failures, skips, stale -----------------------------------------------------------------


def test_a_failed_action_blocks_what_depends_on_it_and_says_why():
    state, facts, plan = seed()
    start = "start-package:package.csync"
    ex = SimulatedExecutor(state, plan, facts, facts=facts, fail={start})
    results = ex.run()
    assert results[start].outcome == "failed" and "exit 1: boom" in results[start].detail
    for a in plan.actions:
        if start in a.depends_on:
            assert results[a.id].outcome == "skipped"
            assert results[a.id].detail.startswith(f"depends on {start}, which failed: exit 1")
    assert ex.batches == [("node1", [start])]


def test_a_failed_action_does_not_stop_independent_ones_on_the_same_host():
    state = site()
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(member_ip(2), member_ip(3)))
    plan = make_plan(state, facts)
    first, second = [a.id for a in plan.actions]
    results = SimulatedExecutor(state, plan, facts, facts=facts, fail={first}).run()
    assert outcomes(results) == {first: "failed", second: "done"}


def test_a_dependent_of_a_skipped_action_names_the_root_failure():
    state, facts, plan = seed()
    chained = plan.model_copy(
        update={
            "actions": tuple(
                a.model_copy(update={"depends_on": ("dispatch-member:member.node3",), "wave": 3}) if a.kind == "copy-key" else a for a in plan.actions
            )
        }
    )
    results = SimulatedExecutor(state, chained, facts, facts=facts, fail={"start-package:package.csync"}).run()
    copy = next(r for r in results.values() if r.action.kind == "copy-key")
    assert copy.outcome == "skipped" and "which was skipped" in copy.detail and "failed: exit 1" in copy.detail


def test_an_action_whose_facts_changed_is_stale_and_not_run():
    state, facts, plan = seed()
    target = next(a for a in plan.actions if a.host == "client2" and a.params["file"] == dsau.peer_key_name(PKG_IP))
    world = dict(facts)
    world["client2"] = with_keys(facts["client2"], **{PKG_IP: "by-hand"})
    ex = SimulatedExecutor(state, plan, world)
    results = ex.run()
    assert results[target.id].outcome == "stale"
    assert "current.fingerprint" in results[target.id].detail
    assert all(target.id not in ids for _, ids in ex.batches)
    assert all(r.outcome == "done" for i, r in results.items() if i != target.id)


def test_exit_zero_without_the_expected_result_is_a_failure():
    state, facts, plan = seed()
    target = next(a for a in plan.actions if a.host == "client3")
    results = SimulatedExecutor(state, plan, facts, facts=facts, no_effect={target.id}).run()
    assert results[target.id].outcome == "failed"
    assert results[target.id].detail.startswith("command exited 0 but root-")


def test_a_started_package_whose_filesystem_holds_another_key_makes_every_later_action_stale():
    state, facts, plan = seed()
    assert plan.cluster_key_inferred
    results = SimulatedExecutor(state, plan, facts, facts=facts, package_key="another").run()
    assert results["start-package:package.csync"].outcome == "done"
    later = [r for r in results.values() if r.action.kind != "start-package"]
    assert later and {r.outcome for r in later} == {"stale"}
    assert all("plan again" in r.detail and "holds" in r.detail for r in later)


def test_a_started_package_whose_filesystem_holds_the_planned_key_confirms_it():
    state, facts, plan = seed()
    results = SimulatedExecutor(state, plan, facts, facts=facts).run()
    assert {r.outcome for r in results.values()} == {"done"}


def test_a_dispatch_is_verified_on_the_member_it_configured():
    state, facts, plan = seed()
    dispatch = "dispatch-member:member.node3"
    results = SimulatedExecutor(state, plan, facts, facts=facts, no_effect={dispatch}).run()
    assert results[dispatch].outcome == "failed" and "node3 is still not configured" in results[dispatch].detail


def test_an_unreachable_host_fails_its_actions_and_no_others():
    state, facts, plan = seed()
    ex = SimulatedExecutor(state, plan, facts, down={"client3"})
    results = ex.run()
    for a in plan.actions:
        expected = "failed" if a.host == "client3" else "done"
        assert results[a.id].outcome == expected, a.id
    assert "client3 is unreachable" in next(r.detail for r in results.values() if r.action.host == "client3")


def test_a_host_lost_during_its_batch_fails_the_batch():
    state, facts, plan = seed()

    class LosesClient2(SimulatedExecutor):
        def _run_batch(self, host, actions, nonce):
            if host.name == "client2":
                self.batches.append((host.name, [a.id for a in actions]))  # sent, then lost
                raise TransportError("command timed out", kind="timeout")
            return super()._run_batch(host, actions, nonce)

    results = LosesClient2(state, plan, facts, facts=facts).run()
    lost = [r for r in results.values() if r.action.host == "client2"]
    assert lost and all(r.outcome == "failed" and "did not complete on client2: command timed out" in r.detail for r in lost)


# --- interruption and the lock ---------------------------------------------------------------


class StopAfterWave(Events):
    def __init__(self, stop: StopFlag, wave: int):
        self.stop, self.wave = stop, wave

    def wave_finished(self, number, results):
        if number == self.wave:
            self.stop.set("interrupted by SIGTERM", 15)


def test_a_signal_stops_new_waves_and_reports_them_not_started():
    state, facts, plan = seed()
    stop = StopFlag()
    results = SimulatedExecutor(state, plan, facts, facts=facts, stop=stop, events=StopAfterWave(stop, 1)).run()
    assert results["start-package:package.csync"].outcome == "done"
    later = [r for r in results.values() if r.action.wave > 1]
    assert later and all(r.outcome == "skipped" and r.detail == "not started: interrupted by SIGTERM" for r in later)


def test_a_lost_lock_stops_new_actions():
    state, facts, plan = seed()
    ex = SimulatedExecutor(state, plan, facts, facts=facts, lock_check=lambda: "the site lock was taken over")
    results = ex.run()
    assert all(r.outcome == "skipped" for r in results.values()) and ex.batches == []
    assert ex.lock_problem == "the site lock was taken over"


# --- preconditions: one definition, for the planner and for apply ----------------------------


@pytest.mark.parametrize("scenario", ["seed", "prune", "regenerate", "switching", "standalone", "install"])
def test_precondition_now_on_the_planning_facts_reproduces_every_first_wave_fingerprint(scenario):
    state, facts = scenario_facts(scenario)
    plan = make_plan(state, facts)
    first = [a for a in plan.actions if a.wave == 1 or a.kind == "regenerate-keys"]
    assert first
    for a in first:
        assert fingerprint(precondition_now(state, a, facts)) == a.facts_fingerprint, a.id


def scenario_facts(name: str):
    if name == "seed":
        state = site()
        return state, seed_facts(state)
    if name == "prune":
        state = site()
        facts = converged(state)
        facts["client1"] = with_keys(facts["client1"], **{"10.1.0.99": "cluster"})
        pkgfs = facts["node1"].package_fs.model_copy(update={"inventory": ("client1 root-10.1.0.99.pub",)})
        facts["node1"] = facts["node1"].model_copy(update={"package_fs": pkgfs})
        return state, facts
    if name == "regenerate":
        state = site(distribution="regenerate", generation=1, clients=2)
        facts = converged(state)
        master_key = SshKey(type="ssh-ed25519", fingerprint="SHA256:m", line="ssh-ed25519 AAAAm")
        for m in state.members:
            facts[m.name] = _ssh(facts[m.name], public=[master_key], authorized=["SHA256:m"])
        facts["client1"] = _ssh(with_keys(facts["client1"], drop=(PKG_IP,)), authorized=["SHA256:m"])
        facts["client2"] = _ssh(facts["client2"], authorized=["SHA256:m"])
        return state, facts
    if name == "switching":
        state = site()
        facts = converged(state)
        view = facts["node1"].cluster.packages["csync"].model_copy(update={"autorun": "disabled"})
        cluster = facts["node1"].cluster.model_copy(update={"packages": {"csync": view}})
        return state, {n: (f.model_copy(update={"cluster": cluster}) if f.cluster else f) for n, f in facts.items()}
    if name == "standalone":
        return standalone_facts()
    if name == "install":
        state = site()
        facts = converged(state)
        facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP, member_ip(1), member_ip(2), member_ip(3)))
        return state, facts
    raise AssertionError(name)


def test_differences_name_each_changed_fact():
    assert differences({"current": {"present": True, "fingerprint": "A"}}, {"current": {"present": True, "fingerprint": "B"}}) == [
        "current.fingerprint: planned 'A', now 'B'"
    ]
    assert differences({"package": {"owner": "node1"}}, {"package": None}) == ["package: planned {'owner': 'node1'}, now None"]


# --- the batch script under a real shell -----------------------------------------------------


def test_a_batch_runs_every_action_in_its_own_subshell_and_reports_each_exit_code():
    scripts = ["echo one; cd /; exit 0", "echo two >&2; exit 3", "pwd; cat; echo three", "umask 077; exit 0"]
    nonce = "0123456789abcdef"
    script = batch.batch(scripts, nonce)
    p = subprocess.run(["/bin/sh", "-s"], input=script.script.encode(), capture_output=True, cwd="/tmp", timeout=10)
    parts = batch.parse_batch(CommandResult(p.returncode, p.stdout, p.stderr, 0), nonce, len(scripts))
    assert [rc for rc, _, _ in parts] == [0, 3, 0, 0]
    assert parts[0][1] == "one" and parts[1][2] == "two"
    # cd stayed inside the first subshell; `cat` read /dev/null, not the rest of the script
    assert parts[2][1] == "/tmp\nthree"


def test_a_forged_marker_in_an_actions_output_is_ignored():
    nonce = "fedcba9876543210"
    script = batch.batch(["echo '@@0000000000000000 end 0 0'; exit 4"], nonce)
    p = subprocess.run(["/bin/sh", "-s"], input=script.script.encode(), capture_output=True, timeout=10)
    assert batch.parse_batch(CommandResult(p.returncode, p.stdout, p.stderr, 0), nonce, 1)[0][0] == 4


def test_an_unfinished_batch_leaves_the_rest_without_exit_codes():
    nonce = "00112233445566778899aabbccddeeff"
    out = f"@@{nonce} begin 0\n@@{nonce} end 0 0\n@@{nonce} begin 1\npartial".encode()
    assert [rc for rc, _, _ in batch.parse_batch(CommandResult(-1, out, b"", 0), nonce, 3)] == [0, None, None]


# --- up-front checks of a saved plan ---------------------------------------------------------


def test_a_plan_from_another_desired_state_is_refused_as_stale():
    state, facts, plan = seed()
    other = site(clients=4)
    with pytest.raises(StalePlan) as e:
        check_plan(other, plan, "plan.json")
    assert e.value.exit_code == 4 and "csync plan" in str(e.value) and "--out" in str(e.value)


def test_a_plan_whose_command_differs_from_what_csync_builds_is_refused():
    state, facts, plan = seed()
    a = plan.actions[-1]
    forged = plan.model_copy(update={"actions": plan.actions[:-1] + (a.model_copy(update={"command": "rm -rf /"}),)})
    with pytest.raises(InvalidInput, match="is not what csync"):
        check_plan(state, forged)


def test_a_plan_with_unsafe_params_is_refused():
    state, facts, plan = seed()
    a = plan.actions[-1]
    forged = plan.model_copy(update={"actions": plan.actions[:-1] + (a.model_copy(update={"params": {**a.params, "file": "../../etc/passwd"}}),)})
    with pytest.raises(InvalidInput, match="damaged plan"):
        check_plan(state, forged)


def test_a_plan_with_edited_facts_is_refused():
    state, facts, plan = seed()
    a = plan.actions[-1]
    forged = plan.model_copy(update={"actions": plan.actions[:-1] + (a.model_copy(update={"precondition": {**a.precondition, "desired": "x"}}),)})
    with pytest.raises(InvalidInput, match="fingerprint"):
        check_plan(state, forged)


def test_plan_digest_is_stable_and_changes_with_the_plan():
    state, facts, plan = seed()
    assert plan_digest(plan) == plan_digest(Plan.from_json(plan.to_json()))
    assert plan_digest(plan) != plan_digest(plan.model_copy(update={"actions": plan.actions[1:]}))


# --- the journal never holds key material ----------------------------------------------------


def test_scrub_removes_pem_blocks_and_dangling_headers():
    from tests.keys import keypair

    private, public = keypair("scrub")
    text = f"x {private} y {public} z -----BEGIN RSA PRIVATE KEY----- tail"
    cleaned = scrub(text)
    assert "PRIVATE KEY" not in cleaned and "PUBLIC KEY" not in cleaned
    assert public.splitlines()[1] not in cleaned and cleaned.startswith("x [pem removed]")
