"""The planner's rules, one behaviour per test, on constructed facts."""

from __future__ import annotations

from reconciler.domain import dsau
from reconciler.observe.facts import HostFacts, SshKey, unreachable
from reconciler.plan.planner import make_plan
from tests.unit.sitefacts import (
    PKG_IP,
    client_ip,
    cluster_view,
    converged,
    keyset,
    member_ip,
    site,
    standalone_facts,
    with_keys,
)


def kinds(plan) -> list[tuple[str, str, str]]:
    return [(a.kind, a.address, a.host) for a in plan.actions]


def seed_facts(state):
    """The seed excerpt: node3 added while the package was down."""
    facts = converged(state, owner=None)
    node3 = facts["node3"]
    facts["node3"] = node3.model_copy(update={"keys": keyset(own="node3-own"), "inputs_digest": None, "inputs_dir": "dir"})
    facts["node3"] = facts["node3"].model_copy(update={"inputs_digest": "sha256:empty", "inputs_count": 0, "inputs_sums": {}, "package_files": 0})
    for m in ("node1", "node2"):
        facts[m] = with_keys(facts[m], drop=(member_ip(3),))
    for c in state.clients:
        facts[c.name] = with_keys(facts[c.name], drop=(member_ip(3),))
    facts["client1"] = with_keys(facts["client1"], **{member_ip(2): "stale"})
    facts["client2"] = with_keys(facts["client2"], drop=(PKG_IP,))
    return facts


def test_a_converged_site_plans_nothing():
    state = site()
    plan = make_plan(state, converged(state))
    assert plan.actions == () and plan.clean


def test_seed_scenario_plans_exactly_the_manual_chores():
    state = site()
    plan = make_plan(state, seed_facts(state))
    assert kinds(plan) == [
        ("start-package", "package.csync", "node1"),
        ("dispatch-member", "member.node3", "node1"),
        ("copy-key", f"client.client1.key[root-{member_ip(2)}.pub]", "client1"),
        ("copy-key", f"client.client1.key[root-{member_ip(3)}.pub]", "client1"),
        ("copy-key", f"client.client2.key[root-{PKG_IP}.pub]", "client2"),
        ("copy-key", f"client.client2.key[root-{member_ip(3)}.pub]", "client2"),
        ("copy-key", f"client.client3.key[root-{member_ip(3)}.pub]", "client3"),
    ]
    assert [a.wave for a in plan.actions] == [1, 2, 3, 3, 3, 3, 3]
    assert not plan.blocked and not plan.unknown
    stale = plan.actions[2]
    assert stale.replaces and "holds another key" in stale.reason
    assert stale.params["source"] != stale.params["file"]


def test_cluster_key_is_inferred_from_members_while_the_package_is_down():
    state = site()
    plan = make_plan(state, seed_facts(state))
    assert plan.cluster_key == make_plan(state, converged(state)).cluster_key
    assert "node1, node2" in plan.cluster_key_source and "not mounted" in plan.cluster_key_source
    start = plan.actions[0].id
    assert all(start in a.depends_on for a in plan.actions if a.kind == "copy-key")


def test_dispatch_targets_the_node_that_runs_the_package():
    state = site()
    facts = converged(state, owner="node2")
    facts["node3"] = facts["node3"].model_copy(update={"keys": keyset(own="node3-own")})
    plan = make_plan(state, facts)
    assert kinds(plan) == [("dispatch-member", "member.node3", "node2")]
    assert plan.actions[0].command == f"{dsau.DISPATCHER} MEMBER_ADDED: node3"
    assert any("not on the preferred node node1" in n.message for n in plan.notices)


def test_a_configured_member_whose_inputs_lag_is_a_notice_never_a_dispatch():
    state = site()
    facts = converged(state)
    lagging = {**facts["node2"].inputs_sums, "./cf.main": "999 101"}
    facts["node2"] = facts["node2"].model_copy(update={"inputs_digest": "sha256:old", "inputs_sums": lagging})
    plan = make_plan(state, facts)
    assert plan.actions == () and plan.clean
    [notice] = [n for n in plan.notices if n.address == "member.node2"]
    assert "1 of 2 file(s): cf.main" in notice.message and "not an action" in notice.message


def test_a_member_without_inputs_or_package_files_is_dispatched():
    state = site()
    for missing in ({"inputs_count": 0}, {"package_files": 0}, {"inputs_dir": "missing", "inputs_count": None}):
        facts = converged(state)
        facts["node2"] = facts["node2"].model_copy(update=missing)
        plan = make_plan(state, facts)
        assert kinds(plan) == [("dispatch-member", "member.node2", "node1")], missing
        assert "not configured" in plan.actions[0].reason


def test_what_the_probe_cannot_tell_is_never_a_reason_to_dispatch():
    state = site()
    facts = converged(state)
    facts["node2"] = facts["node2"].model_copy(update={"inputs_count": None, "package_files": None, "inputs_sums": None})
    assert make_plan(state, facts).actions == ()


def test_start_uses_the_next_adoptive_node_when_the_preferred_one_is_down():
    state = site()
    facts = converged(state, cluster=cluster_view(state, owner=None, down=("node1",)))
    plan = make_plan(state, facts)
    assert kinds(plan)[0] == ("start-package", "package.csync", "node2")
    assert plan.actions[0].command == "cmrunpkg -n node2 csync && cmmodpkg -e csync"


def test_start_is_blocked_when_no_member_is_up():
    state = site()
    facts = converged(state, cluster=cluster_view(state, owner=None, down=("node1", "node2", "node3")))
    plan = make_plan(state, facts)
    assert not any(a.kind == "start-package" for a in plan.actions)
    [blocked] = [f for f in plan.blocked if f.address == "package.csync"]
    assert "no node may run it" in blocked.message and "node1: node down" in blocked.message


def test_a_member_serviceguard_does_not_know_is_a_blocking_error():
    state = site()
    facts = converged(state, cluster=cluster_view(state, missing=("node3",)))
    plan = make_plan(state, facts)
    [finding] = [f for f in plan.blocked if f.address == "member.node3"]
    assert "add it to the cluster first" in finding.message
    assert not any(a.address == "member.node3" for a in plan.actions)


def test_running_package_without_switching_gets_it_enabled():
    state = site()
    cv = cluster_view(state)
    pkg = cv.packages["csync"].model_copy(update={"autorun": "disabled"})
    facts = converged(state, cluster=cv.model_copy(update={"packages": {"csync": pkg}}))
    assert kinds(make_plan(state, facts)) == [("enable-switching", "package.csync", "node1")]


def test_install_key_when_the_client_holds_no_verified_copy():
    state = site(members=1, clients=1)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP, member_ip(1)))
    plan = make_plan(state, facts)
    assert [a.kind for a in plan.actions] == ["install-key", "install-key"]
    install = plan.actions[0]
    assert install.params["pem"].startswith("-----BEGIN RSA PUBLIC KEY-----")
    assert install.expected["fingerprint"] == plan.cluster_key
    assert "PRIVATE" not in plan.to_json()


def test_a_stale_copy_is_never_used_as_a_source():
    state = site(members=2, clients=1)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,), **{member_ip(1): "stale", member_ip(2): "stale"})
    plan = make_plan(state, facts)
    # no verified copy on the host: every file is written from the cluster key itself
    assert [a.kind for a in plan.actions] == ["install-key"] * 3
    assert all(a.params["fingerprint"] == plan.cluster_key for a in plan.actions)


def test_every_member_holds_every_clients_key():
    state = site()
    facts = converged(state)
    facts["node2"] = with_keys(facts["node2"], drop=(client_ip(2),))
    plan = make_plan(state, facts)
    [a] = plan.actions
    assert (a.kind, a.host, a.params["file"]) == ("install-key", "node2", f"root-{client_ip(2)}.pub")
    assert "the key of client client2" in a.reason


def test_a_world_writable_key_is_replaced():
    state = site(members=1, clients=1)
    facts = converged(state)
    k = facts["client1"].keys[f"root-{PKG_IP}.pub"].model_copy(update={"mode": 0o666})
    facts["client1"] = facts["client1"].model_copy(update={"keys": {**facts["client1"].keys, k.name: k}})
    [a] = make_plan(state, facts).actions
    assert a.replaces and "writable by others" in a.reason


def test_an_unreachable_client_is_unknown_never_converged():
    state = site()
    facts = converged(state)
    facts["client2"] = unreachable("client2", client_ip(2), "client", "connection refused", "unreachable")
    facts["node2"] = with_keys(facts["node2"], drop=(client_ip(2),))
    plan = make_plan(state, facts)
    assert any(f.address == "client.client2" and "connection refused" in f.message for f in plan.unknown)
    assert any(f.address == f"member.node2.key[root-{client_ip(2)}.pub]" for f in plan.unknown)
    assert not plan.actions


def test_cfrun_none_needs_only_the_package_key_on_clients():
    state = site(cfrun="none")
    facts = converged(state)
    for c in state.clients:
        facts[c.name] = with_keys(facts[c.name], drop=tuple(m.address for m in state.members))
    assert make_plan(state, facts).actions == ()


def test_prune_removes_keys_provably_managed_and_reports_the_rest():
    state = site(clients=2)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"10.1.0.99": "cluster", "10.9.9.9": "someone"})
    owner = facts["node1"]
    facts["node1"] = owner.model_copy(update={"package_fs": owner.package_fs.model_copy(update={"inventory": ("10.1.0.23",)})})
    facts["node1"] = with_keys(facts["node1"], **{"10.1.0.23": "client-old"})
    plan = make_plan(state, facts)
    assert kinds(plan) == [
        ("remove-key", "client.client1.key[root-10.1.0.99.pub]", "client1"),
        ("remove-key", "member.node1.key[root-10.1.0.23.pub]", "node1"),
    ]
    assert any(n.address == "client.client1.key[root-10.9.9.9.pub]" and "left alone" in n.message for n in plan.notices)


def test_without_prune_nothing_is_removed():
    state = site(prune=False)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"10.1.0.99": "cluster"})
    assert make_plan(state, facts).actions == ()


def test_removals_come_after_additions():
    state = site(clients=1)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,), **{"10.1.0.99": "cluster"})
    plan = make_plan(state, facts)
    assert [a.kind for a in plan.actions] == ["copy-key", "remove-key"]
    assert plan.actions[0].wave < plan.actions[1].wave


def _ssh(f: HostFacts, *, public=None, authorized=()) -> HostFacts:
    return f.model_copy(update={"ssh_public_keys": tuple(public or ()), "ssh_authorized": tuple(authorized)})


def test_regenerate_replaces_key_actions_with_one_wizard_run():
    state = site(distribution="regenerate")
    facts = converged(state)
    master_key = SshKey(type="ssh-ed25519", fingerprint="SHA256:m", line="ssh-ed25519 AAAAm")
    for m in state.members:
        facts[m.name] = _ssh(facts[m.name], public=[master_key])
    for c in state.clients:
        facts[c.name] = _ssh(with_keys(facts[c.name], drop=(member_ip(2),)), authorized=["SHA256:m"])
    plan = make_plan(state, facts)
    [a] = plan.actions
    assert a.kind == "regenerate-keys" and a.host == "node1"
    assert a.command.startswith(dsau.WIZARD + " regenerate-keys")


def test_regenerate_is_blocked_by_one_unreachable_client():
    state = site(distribution="regenerate")
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,))
    facts["client3"] = unreachable("client3", client_ip(3), "client", "timed out", "timeout")
    plan = make_plan(state, facts)
    assert not plan.actions
    assert any("unreachable: client3" in f.message for f in plan.blocked)


def test_regenerate_first_authorizes_the_masters_ssh_key_where_missing():
    state = site(distribution="regenerate", clients=2)
    facts = converged(state)
    master_key = SshKey(type="ssh-ed25519", fingerprint="SHA256:m", line="ssh-ed25519 AAAAm")
    for m in state.members:
        facts[m.name] = _ssh(facts[m.name], public=[master_key])
    facts["client1"] = _ssh(with_keys(facts["client1"], drop=(PKG_IP,)), authorized=["SHA256:m"])
    facts["client2"] = _ssh(facts["client2"])
    plan = make_plan(state, facts)
    assert [(a.kind, a.host) for a in plan.actions] == [("authorize-ssh", "client2"), ("regenerate-keys", "node1")]
    assert plan.actions[0].id in plan.actions[1].depends_on


def test_standalone_master_uses_its_own_key_and_address():
    state, facts = standalone_facts()
    master_ip = member_ip(1)
    plan = make_plan(state, facts)
    assert kinds(plan) == [
        ("install-key", f"client.client2.key[root-{master_ip}.pub]", "client2"),
        ("install-key", f"master.master.key[root-{client_ip(2)}.pub]", "master"),
    ]
    assert "master master" in plan.actions[0].reason


def test_the_same_facts_give_the_byte_identical_plan():
    state = site()
    facts = seed_facts(state)
    shuffled = dict(reversed(list(facts.items())))
    assert make_plan(state, facts).to_json() == make_plan(state, shuffled).to_json()


def test_every_action_carries_the_fingerprint_of_its_facts():
    state = site()
    plan = make_plan(state, seed_facts(state))
    assert all(a.facts_fingerprint.startswith("sha256:") and a.precondition for a in plan.actions)


def test_target_selects_an_action_and_what_it_depends_on():
    state = site()
    plan = make_plan(state, seed_facts(state)).select(targets=("client.client3",))
    assert [a.kind for a in plan.actions] == ["start-package", "copy-key"]
    excluded = make_plan(state, seed_facts(state)).select(excludes=("package.csync",))
    assert not any(a.kind in ("start-package", "dispatch-member", "copy-key") and a.depends_on for a in excluded.actions)
