"""The trust predictions (reconciler.trust.predict), one rule per test, on constructed facts."""

from __future__ import annotations

from reconciler.domain import dsau
from reconciler.observe.facts import unreachable
from reconciler.trust.predict import (
    MISSING,
    NO_SERVER,
    OTHER_KEY,
    OWN_KEY,
    UNREACHABLE,
    Cause,
    trust_report,
)
from tests.unit.sitefacts import (
    PKG_IP,
    client_ip,
    converged,
    keyset,
    member_ip,
    site,
    standalone_facts,
    with_keys,
)
from tests.unit.test_planner import seed_facts


def failing(report) -> dict[tuple[str, str], tuple[Cause, ...]]:
    cells = {(m, c): chk.causes for m, row in report.cfrun.items() for c, chk in row.items() if chk.ok is not True}
    cells.update({("cfagent", c): chk.causes for c, chk in report.cfagent.items() if chk.ok is not True})
    return cells


def test_a_converged_site_is_failover_ready():
    state = site()
    report = trust_report(state, converged(state))
    assert report.failover_ready and report.reasons == ()
    assert failing(report) == {}
    assert [t.can_take_over for t in report.takeover] == [True, True, True]
    assert report.server == "node1" and report.package == "csync"


def test_cfrun_needs_the_clients_key_on_the_member_and_the_members_key_on_the_client():
    state = site()
    facts = converged(state)
    facts["node2"] = with_keys(facts["node2"], drop=(client_ip(1),))
    facts["client3"] = with_keys(facts["client3"], **{member_ip(2): "stale"})
    report = trust_report(state, facts)
    assert failing(report) == {
        ("node2", "client1"): (Cause("node2", f"root-{client_ip(1)}.pub", MISSING, "client1"),),
        ("node2", "client3"): (Cause("client3", f"root-{member_ip(2)}.pub", OTHER_KEY, "node2", facts["client3"].keys[f"root-{member_ip(2)}.pub"].shown()),),
    }
    assert report.cfrun["node2"]["client1"].problems == (f"node2 lacks root-{client_ip(1)}.pub (the key of client1)",)
    takeover = {t.member: t for t in report.takeover}
    assert takeover["node2"].can_take_over is False and "client1" in takeover["node2"].problems[0]
    assert takeover["node1"].can_take_over and not report.failover_ready


def test_cfagent_needs_the_package_key_on_the_client_and_the_clients_key_on_the_package_node():
    state = site()
    facts = converged(state)
    facts["client2"] = with_keys(facts["client2"], drop=(PKG_IP,))
    facts["node1"] = with_keys(facts["node1"], drop=(client_ip(3),))
    report = trust_report(state, facts)
    assert report.cfagent["client2"].causes == (Cause("client2", f"root-{PKG_IP}.pub", MISSING, f"node1 (answering at {PKG_IP})"),)
    assert report.cfagent["client3"].causes == (Cause("node1", f"root-{client_ip(3)}.pub", MISSING, "client3"),)
    assert report.cfagent["client1"].ok


def test_while_the_package_is_down_cfagent_fails_and_the_cluster_key_comes_from_the_members():
    state = site()
    report = trust_report(state, seed_facts(state))
    assert report.server is None and report.cluster_key is not None
    assert report.cfagent["client1"].causes == (Cause("", PKG_IP, NO_SERVER),)
    # A client's own missing file is read before it connects: a live cfagent names it first.
    assert report.cfagent["client2"].causes[0] == Cause("client2", f"root-{PKG_IP}.pub", MISSING, "the cluster")
    takeover = {t.member: (t.can_take_over, t.problems) for t in report.takeover}
    assert takeover["node1"] == (True, ())
    assert takeover["node3"][0] is False and "does not hold the cluster key" in takeover["node3"][1][0]
    assert "the package is not running" in report.reasons


def test_an_unconfigured_member_fails_both_directions_of_cfrun():
    state = site()
    report = trust_report(state, seed_facts(state))
    assert report.cfrun["node3"]["client2"].causes == (
        Cause("node3", f"root-{client_ip(2)}.pub", MISSING, "client2"),
        Cause("client2", f"root-{member_ip(3)}.pub", MISSING, "node3"),
    )


def test_a_caller_without_its_own_key_fails_on_that_file():
    state = site()
    facts = converged(state)
    facts["client1"] = facts["client1"].model_copy(update={"keys": {k: v for k, v in facts["client1"].keys.items() if k != dsau.OWN_PUBLIC_KEY}})
    report = trust_report(state, facts)
    assert Cause("client1", "localhost.pub", OWN_KEY, "client1") in report.cfagent["client1"].causes
    assert report.cfagent["client1"].ok is False
    # As a cfrun server its key is unknown: whether it signs right depends on its private key.
    assert report.cfrun["node1"]["client1"].ok is None


def test_an_unreachable_host_makes_its_cells_unknown_never_ok_or_failed():
    state = site()
    facts = converged(state)
    facts["client2"] = unreachable("client2", client_ip(2), "client", "connection refused", "unreachable")
    report = trust_report(state, facts)
    assert {report.cfrun[m]["client2"].ok for m in report.members} == {None}
    assert report.cfagent["client2"].ok is None and report.cfagent["client2"].causes[0].kind == UNREACHABLE
    assert report.unreachable == {"client2": "connection refused"}
    assert not report.failover_ready and report.reasons[0].startswith("1 host(s) did not answer")
    # the members' takeover cannot be checked against a key nobody saw; it is not "lacking"
    assert {t.can_take_over for t in report.takeover} == {None}
    assert report.takeover[0].problems == ("cannot check the key of 1 client(s) whose own key is unknown: client2",)
    assert "takeover unknown: node1, node2, node3" in report.reasons


def test_cfrun_policy_none_leaves_cfrun_out_of_the_verdict():
    state = site(cfrun="none")
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(member_ip(2),))
    report = trust_report(state, facts)
    assert report.cfrun["node2"]["client1"].ok is False
    assert report.failover_ready


def test_a_standalone_master_serves_at_its_own_address():
    state, facts = standalone_facts(clients=2)
    report = trust_report(state, facts)
    assert report.package is None and report.server == "master" and report.server_address == member_ip(1)
    assert report.cfagent["client1"].ok
    assert {c.kind for c in report.cfagent["client2"].causes} == {MISSING}
    assert report.cluster_key is None


def test_members_disagreeing_on_their_own_key_leave_the_cluster_key_unknown():
    state = site(members=2)
    facts = converged(state, owner=None)
    facts["node2"] = facts["node2"].model_copy(update={"keys": {**facts["node2"].keys, **keyset(own="other")}})
    report = trust_report(state, facts)
    assert report.cluster_key is None
    assert all(not t.can_take_over and "unknown" in t.problems[0] for t in report.takeover)
