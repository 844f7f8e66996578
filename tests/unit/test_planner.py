"""The planner's rules, one behaviour per test, on constructed facts."""

from __future__ import annotations

from reconciler.domain import dsau
from reconciler.observe.facts import CfrunHosts, HostFacts, SshKey, unreachable
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


def _inventory(f: HostFacts, *lines: str) -> HostFacts:
    return f.model_copy(update={"package_fs": f.package_fs.model_copy(update={"inventory": lines})})


def test_prune_removes_only_what_the_inventory_records_and_reports_the_rest():
    state = site(clients=2)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"10.1.0.99": "cluster", "10.9.9.9": "someone"})
    facts["node1"] = _inventory(with_keys(facts["node1"], **{"10.1.0.23": "client-old"}), "node1 root-10.1.0.23.pub")
    plan = make_plan(state, facts)
    assert kinds(plan) == [("remove-key", "member.node1.key[root-10.1.0.23.pub]", "node1")]
    # a key file holding the cluster key is not csync's for that alone (a second package address, another LAN)
    notes = {n.address: n.message for n in plan.notices}
    assert "not csync's" in notes["client.client1.key[root-10.1.0.99.pub]"]
    assert "left alone" in notes["client.client1.key[root-10.9.9.9.pub]"]


def test_without_prune_nothing_is_removed():
    state = site(prune=False)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"10.1.0.99": "cluster"})
    facts["node1"] = _inventory(facts["node1"], "client1 root-10.1.0.99.pub")
    assert make_plan(state, facts).actions == ()


def test_removals_come_after_additions():
    state = site(clients=1)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,), **{"10.1.0.99": "cluster"})
    facts["node1"] = _inventory(facts["node1"], "client1 root-10.1.0.99.pub")
    plan = make_plan(state, facts)
    assert [a.kind for a in plan.actions] == ["copy-key", "remove-key"]
    assert plan.actions[0].wave < plan.actions[1].wave


def _ssh(f: HostFacts, *, public=None, authorized=()) -> HostFacts:
    return f.model_copy(update={"ssh_public_keys": tuple(public or ()), "ssh_authorized": tuple(authorized)})


MASTER_SSH = SshKey(type="ssh-ed25519", fingerprint="SHA256:m", line="ssh-ed25519 AAAAm")


def _trusting(state, facts):
    for m in state.members:
        facts[m.name] = _ssh(facts[m.name], public=[MASTER_SSH], authorized=["SHA256:m"])
    for c in state.clients:
        facts[c.name] = _ssh(facts[c.name], authorized=["SHA256:m"])
    return facts


def test_regenerate_repairs_drift_by_copy_without_a_generation_bump():
    state = site(distribution="regenerate")
    facts = _trusting(state, converged(state))
    facts["client1"] = with_keys(facts["client1"], drop=(member_ip(2),))
    plan = make_plan(state, facts)
    assert [(a.kind, a.host) for a in plan.actions] == [("copy-key", "client1")]


def test_a_generation_bump_rotates_every_key_through_the_wizard():
    state = site(distribution="regenerate", generation=1)
    facts = _trusting(state, converged(state))
    facts["client1"] = with_keys(facts["client1"], drop=(member_ip(2),))
    plan = make_plan(state, facts)
    [a] = plan.actions
    assert a.kind == "regenerate-keys" and a.host == "node1"
    assert a.params == {"clients": [client_ip(i) for i in (1, 2, 3)], "members": [member_ip(2), member_ip(3)]}
    assert dsau.WIZARD + " regenerate-keys" in a.command
    assert a.expected == {"generation": 1, "old_cluster_key": plan.cluster_key}


def test_the_recorded_generation_stops_a_second_rotation():
    state = site(distribution="regenerate", generation=2)
    facts = _trusting(state, converged(state))
    facts["node1"] = _inventory(facts["node1"], "generation 2")
    assert make_plan(state, facts).actions == ()
    facts["node1"] = _inventory(facts["node1"], "generation 3")
    plan = make_plan(state, facts)
    assert plan.actions == () and any("lower than the generation 3" in n.message for n in plan.notices)


def test_a_generation_bump_with_distribution_copy_is_blocked():
    state = site(generation=1)
    plan = make_plan(state, _trusting(state, converged(state)))
    assert plan.actions == () and any("distribution: copy" in f.message for f in plan.blocked)


def test_a_rotation_is_blocked_by_every_unreachable_or_untrusting_client_named():
    state = site(distribution="regenerate", generation=1, clients=4)
    facts = _trusting(state, converged(state))
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,))
    facts["client3"] = unreachable("client3", client_ip(3), "client", "timed out", "timeout")
    facts["client4"] = _ssh(facts["client4"])
    plan = make_plan(state, facts)
    [blocked] = [f for f in plan.blocked if f.address == "site.keys"]
    assert "unreachable: client3" in blocked.message and "root on client4 does not accept ssh" in blocked.message
    assert "nothing is rotated" in blocked.message
    # drift is still repaired by copy
    assert [(a.kind, a.host) for a in plan.actions] == [("copy-key", "client1")]


def test_a_rotation_covers_the_clients_the_master_knows_besides_the_declared_ones():
    state = site(distribution="regenerate", generation=1, clients=2)
    facts = _trusting(state, converged(state))
    facts["node1"] = with_keys(facts["node1"], **{"10.1.0.77": "client-undeclared"})
    facts["node1"] = facts["node1"].model_copy(update={"cfrun_hosts": CfrunHosts(hosts=("client1", "client2", "web9"))})
    plan = make_plan(state, facts)
    [a] = plan.actions
    assert a.params["clients"] == [client_ip(1), client_ip(2), "10.1.0.77", "web9"]
    assert any("cannot verify them" in n.message and "web9" in n.message for n in plan.notices)


def test_a_rotation_is_blocked_by_an_undeclared_address_holding_the_cluster_key():
    state = site(distribution="regenerate", generation=1, clients=1)
    facts = _trusting(state, converged(state))
    facts["node1"] = with_keys(facts["node1"], **{"10.1.9.10": "cluster"})
    plan = make_plan(state, facts)
    assert plan.actions == ()
    assert any("holds the cluster key for 10.1.9.10" in f.message for f in plan.blocked)


def test_standalone_master_uses_its_own_key_and_address():
    state, facts = standalone_facts()
    master_ip = member_ip(1)
    plan = make_plan(state, facts)
    assert kinds(plan) == [
        ("install-key", f"client.client2.key[root-{master_ip}.pub]", "client2"),
        ("install-key", f"master.master.key[root-{master_ip}.pub]", "master"),
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
