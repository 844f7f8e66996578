"""Pair the desired state with the facts and derive the ordered plan. Pure: no I/O.

The planner walks the phases of DSAU's flows in order (package, members, ssh trust, keys,
removals: plan/phases.py). Each phase pairs what is declared with what its hosts will hold
*when that phase runs*: the facts as probed, updated by the effects of the actions already
planned (a started package mounts its filesystem; a dispatched member holds the cluster key
and the keys of the node that dispatched it), kept by the `PredictedSite`. So an action's
precondition is the state it will meet, which apply re-checks on the host before running it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Mapping

from reconciler.desired.model import DesiredState
from reconciler.observe.facts import HostFacts
from reconciler.plan import kinds, phases
from reconciler.plan.artefact import Plan
from reconciler.plan.site import PredictedSite


def _through_members(state: DesiredState, facts: Mapping[str, HostFacts]) -> PredictedSite:
    """The predicted site after the package and member phases (the key phase comes next)."""
    site = PredictedSite(state, facts)
    if state.is_cluster:
        phases.plan_package(site)
    phases.determine_cluster_key(site)
    if state.is_cluster:
        phases.plan_members(site)
    return site


@contextlib.contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector while a plan is built.

    Planning allocates millions of small objects and frees none of them until it returns, so
    every full collection would walk the whole (growing) heap for nothing: at 100,000 clients
    that made planning grow faster than the site. Nothing here creates reference cycles that
    need the collector; it runs as usual once the plan is made.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def make_plan(state: DesiredState, facts: Mapping[str, HostFacts], *, git_commit: str | None = None) -> Plan:
    """The plan that would bring the hosts described by ``facts`` to ``state``."""
    with _collector_paused():
        return _make_plan(state, facts, git_commit)


def _make_plan(state: DesiredState, facts: Mapping[str, HostFacts], git_commit: str | None) -> Plan:
    site = _through_members(state, facts)
    phases.plan_probe_program(site)
    phases.plan_keys(site)
    phases.plan_prune(site)
    key = lambda f: (f.address, f.host or "", f.message)
    after = site.predicted_trust()
    actions = site.ordered()
    return Plan(
        site=state.site,
        desired_state_digest=state.digest(),
        git_commit=git_commit,
        cluster_key=site.cluster_key.fingerprint if site.cluster_key else None,
        cluster_key_source=site.cluster_key_source,
        cluster_key_inferred=site.cluster_key_inferred,
        package_node=site.package_node,
        actions=actions,
        cluster_operations=sum(1 for a in actions if kinds.spec_of(a.kind).cluster_op),
        blocked=tuple(sorted(site.blocked, key=key)),
        unknown=tuple(sorted(site.unknown, key=key)),
        notices=tuple(sorted(site.notices, key=key)),
        failover_ready_after=None if after.unsure else after.failover_ready,
        failover_notes=after.unsure + after.reasons,
    )


def regeneration_drift(state: DesiredState, facts: Mapping[str, HostFacts]) -> tuple[list[str], str | None]:
    """(key files that differ, cluster key) as the regenerate phase sees them."""
    site = _through_members(state, facts)
    return phases.regeneration_drift(site), site.cluster_key.fingerprint if site.cluster_key else None
