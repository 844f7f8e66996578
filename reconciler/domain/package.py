"""Which node runs, or will run, the csync package, and why: decided here and nowhere else.

The planner (what to start or enable), the site lock (where it lives), trust (who answers
at the package address) and apply's inventory (where the package filesystem is) all ask
`decide_package`. It is pure: it reads the members' cluster views from their facts.

The cluster key follows from it: while the package filesystem is mounted it is the key
found there; while it is not, the members that were configured hold it as their own, and
`infer_cluster_key` tells it when one key is held by more members than any other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.desired.model import DesiredState
from reconciler.domain.serviceguard import ClusterView, PackageView
from reconciler.observe.facts import HostFacts

Level = str  # "blocked" | "unknown" | "notice"


@dataclass(frozen=True)
class PackageNote:
    """Something the decision found that is not an action: blocked, unknown, or a notice."""

    level: Level
    address: str
    message: str
    host: str | None = None


@dataclass(frozen=True)
class PackageDecision:
    node: str | None = None  # runs the package now, or will run it once started
    running: bool = False  # it runs now, on `node`
    start: bool = False  # csync starts it on `node`
    enable_switching: bool = False  # it runs with switching disabled: csync enables it
    view: PackageView | None = None  # the package as Serviceguard shows it
    cluster: ClusterView | None = None
    source: str | None = None  # the member whose cluster view was read
    why: str = ""  # why it is started or switching enabled
    notes: tuple[PackageNote, ...] = ()


def decide_package(state: DesiredState, facts: Mapping[str, HostFacts]) -> PackageDecision:
    """Read the first declared member that shows a cluster view, and decide. ``facts`` may
    hold any hosts; unreachable or missing members are skipped."""
    master = state.master
    if not state.is_cluster:
        return PackageDecision(node=master.host.name, running=True)  # type: ignore[union-attr]
    pkg = master.package  # type: ignore[union-attr]
    address = f"package.{pkg.name}"
    reachable = [(m, f) for m in state.members if (f := facts.get(m.name)) is not None and f.reachable]
    with_cluster = [(m, f) for m, f in reachable if f.cluster is not None]
    if not with_cluster:
        why = "; ".join(f"{m.name}: {f.cluster_error}" for m, f in reachable if f.cluster_error) or "no member answered"
        return PackageDecision(notes=(PackageNote("unknown", address, f"cluster state unknown ({why})"),))
    source, source_facts = with_cluster[0]
    cluster = source_facts.cluster
    assert cluster is not None
    if cluster.name and cluster.name != master.cluster:  # type: ignore[union-attr]
        return PackageDecision(source=source.name, notes=(PackageNote(
            "blocked", address, f"{source.name} belongs to cluster {cluster.name!r}, not {master.cluster!r} as declared", source.name),))  # type: ignore[union-attr]
    notes = [
        PackageNote("blocked", f"member.{m.name}",
                    f"{m.name} is not a node of cluster {master.cluster} according to Serviceguard; "  # type: ignore[union-attr]
                    f"add it to the cluster first (cmapplyconf); csync does not edit cluster configuration", m.name)
        for m in state.members if m.name not in cluster.nodes
    ]
    view = cluster.packages.get(pkg.name)
    base = PackageDecision(view=view, cluster=cluster, source=source.name)
    if view is None:
        notes.append(PackageNote("blocked", address, f"package {pkg.name} is not configured in cluster {master.cluster}", source.name))  # type: ignore[union-attr]
        return _with(base, notes=tuple(notes))
    if view.running:
        if pkg.node and view.owner != pkg.node:
            notes.append(PackageNote("notice", address, f"runs on {view.owner}, not on the preferred node {pkg.node}; csync does not move a running package", view.owner))
        owner = facts.get(view.owner or "")
        enable = view.autorun != "enabled" and owner is not None and owner.reachable
        return _with(base, node=view.owner, running=True, enable_switching=enable, notes=tuple(notes),
                     why=f"package {pkg.name} runs on {view.owner} with switching {view.autorun}: it would not fail over" if enable else "")
    declared = {m.name for m in state.members}
    order = view.node_order() or [m.name for m in state.members]
    candidates = ([pkg.node] if pkg.node else []) + [n for n in order if n != pkg.node]
    up = [n for n in candidates if n in declared and n in cluster.nodes and cluster.nodes[n].up and n in order]
    if not up:
        notes.append(PackageNote("blocked", address, f"package {pkg.name} is {view.status}/{view.state} and no declared member that can run it is up"))
        return _with(base, notes=tuple(notes))
    node = up[0]
    why = f"package {pkg.name} is {view.status} ({view.state})"
    if pkg.node and node != pkg.node:
        why += f"; the preferred node {pkg.node} is not up, so the next adoptive node"
    return _with(base, node=node, start=True, why=why, notes=tuple(notes))


def _with(d: PackageDecision, **changes) -> PackageDecision:
    return PackageDecision(**{**d.__dict__, **changes})


def package_server(state: DesiredState, facts: Mapping[str, HostFacts]) -> str | None:
    """The host answering at the package address now: the node running the package (the
    standalone master), or None while the package does not run."""
    d = decide_package(state, facts)
    return d.node if d.running else None


def infer_cluster_key(state: DesiredState, own_keys: Mapping[str, str | None]) -> tuple[str | None, list[str]]:
    """(the cluster key, the members holding it) while the package filesystem is not
    mounted: the own key held by more members than any other, else (None, [])."""
    held = Counter(fp for m in state.members if (fp := own_keys.get(m.name)))
    ranked = held.most_common(2)
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        fp = ranked[0][0]
        return fp, sorted(m.name for m in state.members if own_keys.get(m.name) == fp)
    return None, []
