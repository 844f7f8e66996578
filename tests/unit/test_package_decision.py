"""decide_package's rules on constructed cluster views: package states x intent x per-node
switching x the package's node list. One place decides; these pin what it decides."""

from __future__ import annotations

import pytest

from reconciler.desired.model import DesiredState
from reconciler.domain.package import decide_package
from reconciler.domain.serviceguard import ClusterView, NodeView, PackageNode, PackageView
from reconciler.plan.planner import make_plan
from reconciler.trust.predict import trust_report
from tests.unit.sitefacts import converged, site


def with_intent(state: DesiredState, intent: str) -> DesiredState:
    data = state.model_dump(mode="json")
    data["master"]["package"]["state"] = intent
    return DesiredState.model_validate(data)


def view(
    *, status="down", state="halted", owner=None, autorun="disabled", nodes=("node1", "node2", "node3"), disabled=(), down=(), extra_nodes=()
) -> ClusterView:
    names = ["node1", "node2", "node3", *extra_nodes]
    return ClusterView(
        name="c1",
        status="up",
        nodes={n: NodeView(name=n, status="down" if n in down else "up", state="halted" if n in down else "running") for n in names},
        packages={
            "csync": PackageView(
                name="csync",
                status=status,
                state=state,
                owner=owner,
                autorun=autorun,
                nodes=tuple(PackageNode(name=n, switching="disabled" if n in disabled else "enabled", order=i) for i, n in enumerate(nodes, 1)),
            )
        },
    )


def facts_with(state: DesiredState, cluster: ClusterView, owner: str | None = None):
    return converged(state, owner=owner, cluster=cluster)


RUNNING = dict(status="up", state="running", owner="node1", autorun="enabled")


@pytest.mark.parametrize(
    "intent, shown, expect",
    [
        ("running", RUNNING, dict(start=False, halt=False, node="node1", runs_after=True)),
        ("halted", RUNNING, dict(start=False, halt=True, node=None, runs_after=False)),
        ("unmanaged", RUNNING, dict(start=False, halt=False, node="node1", runs_after=True)),
        ("running", {}, dict(start=True, halt=False, node="node1", runs_after=True)),
        ("halted", {}, dict(start=False, halt=False, node=None, runs_after=False)),
        ("unmanaged", {}, dict(start=False, halt=False, node=None, runs_after=False)),
    ],
)
def test_intent_decides_start_and_halt(intent, shown, expect):
    state = with_intent(site(), intent)
    d = decide_package(state, facts_with(state, view(**shown), owner=shown.get("owner")))
    assert {k: getattr(d, k) for k in expect} == expect


@pytest.mark.parametrize("intent", ["running", "unmanaged"])
def test_switching_disabled_on_purpose_is_enabled_only_under_running(intent):
    state = with_intent(site(), intent)
    d = decide_package(state, facts_with(state, view(**{**RUNNING, "autorun": "disabled"}), owner="node1"))
    assert d.enable_switching is (intent == "running")
    if intent == "unmanaged":
        assert any("leaves it so" in n.message for n in d.notes)


@pytest.mark.parametrize(
    "disabled, down, order, expected",
    [
        ((), (), ("node1", "node2", "node3"), "node1"),  # the preferred node
        (("node1",), (), ("node1", "node2", "node3"), "node2"),  # switching disabled there: the next in order
        ((), ("node1",), ("node1", "node2", "node3"), "node2"),  # down: the next
        ((), (), ("node3", "node2"), "node3"),  # node1 not in the package's node list; its order decides
        (("node1", "node2"), ("node3",), ("node1", "node2", "node3"), None),  # nobody may run it
    ],
)
def test_start_node_follows_serviceguards_eligibility(disabled, down, order, expected):
    state = site()
    d = decide_package(state, facts_with(state, view(nodes=order, disabled=disabled, down=down)))
    assert d.node == expected and d.start is (expected is not None)
    if expected is None:
        [blocked] = [n for n in d.notes if n.level == "blocked"]
        assert "node1: switching disabled" in blocked.message and "node3: node down" in blocked.message


@pytest.mark.parametrize(
    "status, pkg_state, level",
    [
        ("detached", "detached", "blocked"),
        ("up", "maintenance", "blocked"),
        ("down", "maintenance", "blocked"),
        ("starting", "starting", "unknown"),
        ("halting", "halting", "unknown"),
        # what Serviceguard could not tell, or a state csync does not act on: never started
        ("unknown", "unknown", "unknown"),
        ("down", "unknown", "unknown"),
        ("start_wait", "start_wait", "unknown"),
        ("failing", "failing", "unknown"),
        ("down", "relocate_wait", "unknown"),
        ("up", "reconfiguring", "unknown"),
    ],
)
@pytest.mark.parametrize("intent", ["running", "halted"])
def test_a_package_out_of_service_or_in_transition_is_never_started_or_halted(status, pkg_state, level, intent):
    state = with_intent(site(), intent)
    owner = None if status == "down" else "node1"
    d = decide_package(state, facts_with(state, view(status=status, state=pkg_state, owner=owner, autorun="enabled"), owner=owner))
    assert not d.start and not d.halt and not d.enable_switching
    assert any(n.level == level and n.address == "package.csync" for n in d.notes)


def test_a_failed_package_with_switching_disabled_is_blocked_never_started():
    state = site()
    d = decide_package(state, facts_with(state, view(status="down", state="failed", autorun="disabled")))
    assert not d.start and any(n.level == "blocked" and "never starts a failed package" in n.message for n in d.notes)


def test_a_package_on_an_undeclared_node_is_reported_and_readiness_unknown_never_a_traceback():
    state = site(members=2)
    cluster = view(**{**RUNNING, "owner": "node3"})
    facts = converged(state, owner=None, cluster=cluster)
    plan = make_plan(state, facts)
    assert any(f.address == "package.csync" and "node3, which the desired state does not declare" in f.message for f in plan.unknown)
    assert any(f.address == "node.node3" for f in plan.notices)
    assert plan.failover_ready_after is None
    assert not any(a.kind in ("start-package", "halt-package", "dispatch-member") for a in plan.actions)


def test_failover_readiness_needs_global_switching_and_an_eligible_adoptive_node():
    state = with_intent(site(), "unmanaged")
    no_switching = view(**{**RUNNING, "autorun": "disabled"})
    report = trust_report(state, facts_with(state, no_switching, owner="node1"))
    assert not report.failover_ready and any("global switching" in r for r in report.reasons)
    lonely = view(**RUNNING, disabled=("node2", "node3"))
    report = trust_report(state, facts_with(state, lonely, owner="node1"))
    assert not report.failover_ready and any("no adoptive node" in r for r in report.reasons)
    undeclared = view(**RUNNING, nodes=("node1", "node4"), extra_nodes=("node4",))
    report = trust_report(state, facts_with(state, undeclared, owner="node1"))
    assert not report.failover_ready and report.unsure and "node4" in report.unsure[0]


def test_a_package_whose_node_list_cmviewcl_did_not_print_is_never_started_on_a_guess():
    # before: csync took the declared members, by name, as the package's node list
    state = site()
    d = decide_package(state, facts_with(state, view(nodes=())))
    assert not d.start and d.node is None
    [blocked] = [n for n in d.notes if n.level == "blocked"]
    assert "it lists no node" in blocked.message


def test_a_node_whose_switching_cmviewcl_did_not_report_is_not_eligible():
    # before: a switching state cmviewcl did not print counted as enabled
    state = site()
    cluster = view()
    pkg = cluster.packages["csync"]
    unreported = tuple(n.model_copy(update={"switching": "unknown"}) if n.name == "node1" else n for n in pkg.nodes)
    cluster = cluster.model_copy(update={"packages": {"csync": pkg.model_copy(update={"nodes": unreported})}})
    d = decide_package(state, facts_with(state, cluster))
    assert d.start and d.node == "node2"
    assert "node1 may not run it (switching for the package on it not reported by cmviewcl" in d.why
    assert d.adoptive == ("node3",)  # nor counted as a node it could fail over to
