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
from collections.abc import Iterable, Mapping

from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.domain.preview import Preview, refusals
from reconciler.observe.facts import HostFacts
from reconciler.plan import kinds, phases
from reconciler.plan.artefact import Plan
from reconciler.plan.site import PredictedSite


def _through_members(state: DesiredState, facts: Mapping[str, HostFacts], previews: tuple[Preview, ...] = ()) -> PredictedSite:
    """The predicted site after the package and member phases (the key phase comes next)."""
    site = PredictedSite(state, facts, refused=refusals(previews))
    if state.is_cluster:
        phases.plan_package(site)
    phases.determine_cluster_key(site)
    phases.read_inventory(site)
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


def make_plan(state: DesiredState, facts: Mapping[str, HostFacts], *, git_commit: str | None = None, previews: Iterable[Preview] = ()) -> Plan:
    """The plan that would bring the hosts described by ``facts`` to ``state``. ``previews``:
    Serviceguard's predictions of the cluster operations of the plan made from the same facts
    (reconciler/pipeline.py): an operation a preview does not confirm is blocked, and what
    depends on it is not planned."""
    with _collector_paused():
        return _make_plan(state, facts, git_commit, tuple(sorted(previews, key=lambda p: p.action)))


def _make_plan(state: DesiredState, facts: Mapping[str, HostFacts], git_commit: str | None, previews: tuple[Preview, ...]) -> Plan:
    site = _through_members(state, facts, previews)
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
        previews=previews,
        blocked=tuple(sorted(site.blocked, key=key)),
        unknown=tuple(sorted(site.unknown, key=key)),
        notices=tuple(sorted(site.notices, key=key)),
        failover_ready_after=None if after.unsure else after.failover_ready,
        failover_notes=after.unsure + after.reasons,
    )


def rotation_now(state: DesiredState, facts: Mapping[str, HostFacts], runner: str) -> dict:
    """What a planned rotation was planned from, recomputed from ``facts`` (apply's re-check)."""
    site = _through_members(state, facts)
    host = state.host(runner)
    if host.name not in site.views:
        return {"runner": runner, "reachable": False}
    undeclared, _ = phases.known_systems(site, host)
    clients = [c.address for c in state.clients] + undeclared
    members = [m.address for m in state.master_hosts if m.name != runner]
    return phases.rotation_precondition(site, host, clients, members)


def rotation_problems(state: DesiredState, facts: Mapping[str, HostFacts], old_cluster_key: str | None) -> tuple[list[str], str | None]:
    """(what shows a rotation did not reach every declared host, the cluster key now)."""
    site = _through_members(state, facts)
    return phases.rotation_problems(site, old_cluster_key), site.cluster_key.fingerprint if site.cluster_key else None


def owned_key_files(state: DesiredState, facts: Mapping[str, HostFacts]) -> dict[str, set[str]]:
    """For every declared host that answered: the key files csync owns there now, those it
    should hold (declared for it) and any named after a declared host whose key it holds,
    present on it. apply records them in the site's inventory (prune's proof of ownership)."""
    site = _through_members(state, facts)
    want = phases.desired_keys(site)
    out: dict[str, set[str]] = {}
    for host in state.all_hosts:
        view = site.views.get(host.name)
        if view is not None:
            out[host.name] = {f for f in want[host.name] if f in view.keys and f.startswith(dsau.PEER_KEY_PREFIX)}
    return out
