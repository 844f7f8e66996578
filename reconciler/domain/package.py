"""Which node runs, or will run, the csync package, and why: decided here and nowhere else.

The planner (what to start, halt or enable), the site lock (where it lives), trust (who
answers at the package address, and who can take over) and apply's inventory (where the
package filesystem is) all ask `decide_package`. It is pure: it reads the members' cluster
views from their facts and the administrator's intent (`master.package.state`).

Serviceguard decides where a package may run: csync starts it only on a node that is in
the package's node list, up, and has switching enabled for the package (the preferred node
if it is eligible, else the next eligible node in the package's order), and never acts on a
package that is detached, in maintenance, starting, halting, or failed with switching
disabled.

The cluster key follows from it: while the package filesystem is mounted it is the key
found there; while it is not, the members that were configured hold it as their own, and
`infer_cluster_key` tells it when one key is held by more members than any other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from reconciler.desired.model import DesiredState
from reconciler.domain.serviceguard import ClusterView, PackageView
from reconciler.observe.facts import HostFacts

Level = Literal["blocked", "unknown", "notice"]

# Package states (cmviewcl's STATUS/STATE) in which csync never starts, halts or modifies it.
SETTLING = ("starting", "halting")
HANDS_OFF = ("detached", "maintenance")


@dataclass(frozen=True)
class PackageNote:
    """Something the decision found that is not an action: blocked, unknown, or a notice."""

    level: Level
    address: str
    message: str
    host: str | None = None


@dataclass(frozen=True)
class PackageDecision:
    node: str | None = None  # a declared member that runs the package now, or will once started
    running: bool = False  # it runs now, on `node` (or on `owner` when that is not declared)
    owner: str | None = None  # the node Serviceguard shows running it, declared or not
    start: bool = False  # csync starts it on `node`
    halt: bool = False  # csync halts it (state: halted), on `owner`
    enable_switching: bool = False  # it runs with global switching disabled: csync enables it
    runs_after: bool = False  # the package runs once this plan is applied
    view: PackageView | None = None  # the package as Serviceguard shows it
    cluster: ClusterView | None = None
    source: str | None = None  # the member whose cluster view was read
    why: str = ""  # why it is started, halted or switching enabled
    notes: tuple[PackageNote, ...] = ()
    adoptive: tuple[str, ...] = ()  # declared nodes that can take the package over (up, listed, switching enabled)
    undeclared_adoptive: tuple[str, ...] = ()  # nodes it can fail over to that the desired state does not declare
    switching_after: bool | None = None  # global switching (AUTO_RUN) once the plan is applied
    failover_blockers: tuple[str, ...] = ()  # why the package cannot fail over, whatever the keys


def decide_package(state: DesiredState, facts: Mapping[str, HostFacts], refused: Mapping[tuple[str, str], str] | None = None) -> PackageDecision:
    """Read the first declared member that shows a cluster view, and decide. ``facts`` may
    hold any hosts; unreachable or missing members are skipped. ``refused``: the operations
    Serviceguard's own preview does not confirm, (start|halt|enable, node) -> why
    (`reconciler.domain.preview.refusals`): blocked, never planned, and the decision is what
    it is without them."""
    if not state.is_cluster:
        return PackageDecision(node=state.standalone_host.name, running=True, owner=state.standalone_host.name, runs_after=True)
    pkg = state.package
    address = f"package.{pkg.name}"
    reachable = [(m, f) for m in state.members if (f := facts.get(m.name)) is not None and f.reachable]
    with_cluster = [(m, f) for m, f in reachable if f.cluster is not None]
    if not with_cluster:
        why = "; ".join(f"{m.name}: {f.cluster_error}" for m, f in reachable if f.cluster_error) or "no member answered"
        return PackageDecision(notes=(PackageNote("unknown", address, f"cluster state unknown ({why})"),))
    source, source_facts = with_cluster[0]
    cluster = source_facts.cluster
    assert cluster is not None
    if cluster.name and cluster.name != state.cluster_name:
        return PackageDecision(
            source=source.name,
            notes=(PackageNote("blocked", address, f"{source.name} belongs to cluster {cluster.name!r}, not {state.cluster_name!r} as declared", source.name),),
        )
    declared = {m.name for m in state.members}
    notes = [
        PackageNote(
            "blocked",
            f"member.{m.name}",
            f"{m.name} is not a node of cluster {state.cluster_name} according to Serviceguard; "
            f"add it to the cluster first (cmapplyconf); csync does not edit cluster configuration",
            m.name,
        )
        for m in state.members
        if m.name not in cluster.nodes
    ]
    notes += [
        PackageNote("notice", f"node.{n}", f"{n} is a node of cluster {state.cluster_name} that the desired state does not declare; csync leaves it alone", n)
        for n in sorted(cluster.nodes)
        if n not in declared
    ]
    view = cluster.packages.get(pkg.name)
    base = PackageDecision(view=view, cluster=cluster, source=source.name)
    if view is None:
        notes.append(PackageNote("blocked", address, f"package {pkg.name} is not configured in cluster {state.cluster_name}", source.name))
        return replace(base, notes=tuple(notes))
    d = _decide(state, facts, view, cluster, base, notes, refused or {})
    return replace(d, **_failover(state, view, cluster, d))


def _eligibility(view: PackageView, cluster: ClusterView, declared: set[str]) -> tuple[list[str], dict[str, str]]:
    """(nodes the package may be started on by csync, in the package's order; why each other
    node of its list may not)."""
    # Serviceguard's node list only: without one csync cannot know where the package may run,
    # and guesses no node (the caller blocks: "it lists no node")
    order = view.node_order()
    switching = {n.name: n.switching for n in view.nodes}
    eligible: list[str] = []
    why_not: dict[str, str] = {}
    for n in order:
        node = cluster.nodes.get(n)
        if node is None:
            why_not[n] = "not a node of the cluster"
        elif not node.up:
            why_not[n] = f"node {node.status}"
        elif switching.get(n, "unknown") == "disabled":
            why_not[n] = "switching disabled for the package on it (cmmodpkg -e -n)"
        elif switching.get(n, "unknown") != "enabled":
            why_not[n] = "switching for the package on it not reported by cmviewcl (never assumed enabled)"
        elif n not in declared:
            why_not[n] = "not declared in the desired state"
        else:
            eligible.append(n)
    return eligible, why_not


def _decide(
    state: DesiredState,
    facts: Mapping[str, HostFacts],
    view: PackageView,
    cluster: ClusterView,
    base: PackageDecision,
    notes: list[PackageNote],
    refused: Mapping[tuple[str, str], str],
) -> PackageDecision:
    pkg = state.package
    intent = pkg.state
    address = f"package.{pkg.name}"
    declared = {m.name for m in state.members}
    shown = f"{view.status}/{view.state}"

    def done(**kw) -> PackageDecision:
        return replace(base, notes=tuple(notes), **kw)

    if view.status in SETTLING or view.state in SETTLING:
        notes.append(
            PackageNote(
                "unknown",
                address,
                f"package {pkg.name} is {shown} on {view.owner or 'a node'}: csync does not act on a package in transition; plan again when it settles",
                view.owner,
            )
        )
        return done(owner=view.owner)
    owner = view.owner if view.owner and (view.status == "up" or view.state in HANDS_OFF) else None
    owner_declared = owner in declared if owner else False
    if owner and not owner_declared:
        notes.append(
            PackageNote(
                "unknown",
                address,
                f"package {pkg.name} runs on {owner}, which the desired state does not declare: "
                f"csync cannot read the package filesystem there, so the cluster key and the master's inputs are "
                f"unknown; declare {owner} or move the package (cmhaltpkg; cmrunpkg -n NODE)",
                owner,
            )
        )
    node = owner if owner_declared else None
    if view.status in HANDS_OFF or view.state in HANDS_OFF:
        mode = "detached (Serviceguard does not monitor it)" if "detached" in (view.status, view.state) else "in maintenance mode"
        level: Level = "notice" if intent == "unmanaged" else "blocked"
        notes.append(
            PackageNote(
                level,
                address,
                f"package {pkg.name} is {mode}: csync never starts, halts or changes it "
                f"(intent: {intent}); it cannot fail over until an administrator returns it to service",
                owner,
            )
        )
        return done(node=node, running=owner is not None, owner=owner, runs_after=owner is not None)
    if view.running:
        if intent == "halted":
            if ("halt", owner or "") in refused:
                notes.append(PackageNote("blocked", address, f"not halting package {pkg.name} on {owner}: {refused['halt', owner or '']}", owner))
                return done(node=None, running=True, owner=owner, runs_after=True)
            notes_why = f"package {pkg.name} runs on {owner} and the desired state says it is halted (maintenance)"
            return done(node=None, running=True, owner=owner, halt=True, why=notes_why, runs_after=False)
        if pkg.node and owner != pkg.node:
            notes.append(PackageNote("notice", address, f"runs on {owner}, not on the preferred node {pkg.node}; csync does not move a running package", owner))
        enable = False
        if view.autorun != "enabled":
            if intent == "unmanaged":
                notes.append(
                    PackageNote(
                        "notice",
                        address,
                        f"package {pkg.name} runs with switching (AUTO_RUN) {view.autorun}; unmanaged: csync leaves it so, and the package will not fail over",
                        owner,
                    )
                )
            else:
                owner_facts = facts.get(owner or "")
                enable = owner_declared and owner_facts is not None and owner_facts.reachable
                if enable and ("enable", owner or "") in refused:
                    notes.append(PackageNote("blocked", address, f"not enabling the switching of package {pkg.name}: {refused['enable', owner or '']}", owner))
                    enable = False
        why = f"package {pkg.name} runs on {owner} with switching {view.autorun}: it would not fail over" if enable else ""
        return done(node=node, running=True, owner=owner, enable_switching=enable, why=why, runs_after=True)
    if not (view.status == "down" and view.state in ("halted", "failed")):
        # Serviceguard's "unknown" (it could not tell), a state csync does not know (start_wait,
        # failing, relocate_wait, ...) or a view it could not read: never a reason to start it
        notes.append(
            PackageNote(
                "unknown",
                address,
                f"package {pkg.name} is {shown}{' on ' + view.owner if view.owner else ''}: csync acts only on a package "
                f"that is up/running, down/halted or down/failed (or detached, in maintenance, starting, halting); plan again when it is",
                view.owner,
            )
        )
        return done(owner=view.owner)
    # down: halted or failed
    if view.state == "failed" and view.autorun != "enabled":
        if intent == "running":
            notes.append(
                PackageNote(
                    "blocked",
                    address,
                    f"package {pkg.name} is {shown} with switching {view.autorun}: csync never "
                    f"starts a failed package; find why it failed (cmviewcl -v, the package log), then run it "
                    f"by hand or re-enable switching (cmmodpkg -e {pkg.name})",
                )
            )
        return done()
    if intent == "halted":
        return done()
    if intent == "unmanaged":
        notes.append(
            PackageNote("notice", address, f"package {pkg.name} is {shown}; unmanaged: csync does not start it, and key work that needs it waits until it runs")
        )
        return done()
    eligible, why_not = _eligibility(view, cluster, declared)
    if not eligible:
        reasons = "; ".join(f"{n}: {w}" for n, w in why_not.items()) or "it lists no node"
        notes.append(PackageNote("blocked", address, f"package {pkg.name} is {shown} and no node may run it ({reasons})"))
        return done()
    target = pkg.node if pkg.node in eligible else eligible[0]
    if ("start", target) in refused:
        notes.append(PackageNote("blocked", address, f"not starting package {pkg.name} on {target}: {refused['start', target]}", target))
        return done()
    why = f"package {pkg.name} is {view.status} ({view.state})"
    if pkg.node and target != pkg.node:
        why += f"; the preferred node {pkg.node} may not run it ({why_not.get(pkg.node, 'not in its node list')}), so the next eligible node"
    return done(node=target, start=True, why=why, runs_after=True)


def _failover(state: DesiredState, view: PackageView, cluster: ClusterView, d: PackageDecision) -> dict:
    """Who can take the package over once the plan is applied, and what prevents it."""
    switching_after = True if (d.start or d.enable_switching) else (view.autorun == "enabled")
    f = failover(state, view, cluster, runs_on=d.node or d.owner, runs=d.runs_after, switching=switching_after)
    return {"adoptive": f.adoptive, "undeclared_adoptive": f.undeclared, "switching_after": switching_after, "failover_blockers": f.blockers}


@dataclass(frozen=True)
class Failover:
    adoptive: tuple[str, ...]  # declared nodes that can take the package over
    undeclared: tuple[str, ...]  # nodes it can fail over to that the desired state does not declare
    blockers: tuple[str, ...]  # why Serviceguard would not move it, whatever the keys


def failover(state: DesiredState, view: PackageView, cluster: ClusterView, *, runs_on: str | None, runs: bool, switching: bool) -> Failover:
    """Whether Serviceguard could move the package off ``runs_on``: global switching enabled,
    and an adoptive node that is up, in the package's node list and enabled for it."""
    declared = {m.name for m in state.members}
    per_node = {n.name: n.switching for n in view.nodes}
    adoptive: list[str] = []
    undeclared: list[str] = []
    blockers: list[str] = []
    unreported: list[str] = []
    for n in view.node_order():  # Serviceguard's node list only, never the declared members
        node = cluster.nodes.get(n)
        if n == runs_on or node is None or not node.up or per_node.get(n, "unknown") == "disabled":
            continue
        if per_node.get(n, "unknown") != "enabled":
            unreported.append(n)  # never assumed enabled
            continue
        (adoptive if n in declared else undeclared).append(n)
    if not runs:
        blockers.append("the package does not run")
    elif view.status in HANDS_OFF or view.state in HANDS_OFF:
        blockers.append(f"the package is {view.state}: Serviceguard does not move it")
    elif not switching:
        blockers.append("global switching (AUTO_RUN) is disabled: Serviceguard would not move the package")
    if runs and not adoptive and not undeclared:
        blockers.append(
            "no adoptive node is up, in the package's node list and enabled for it"
            + (f" (cmviewcl did not report switching for {', '.join(unreported)})" if unreported else "")
            + ("" if view.node_order() else " (cmviewcl printed no node list for the package)")
        )
    return Failover(tuple(adoptive), tuple(undeclared), tuple(blockers))


def member_problems(own_key: str | None, facts: HostFacts, cluster_key: str | None) -> list[str]:
    """Why a member is not configured as an adoptive node: it lacks the cluster key as its
    own key, or the DSAU configuration the add-member processing leaves (an inputs directory
    with files, the package's files under /etc/cmcluster/csync). Empty: it is configured.
    Facts the probe could not tell (None) are never a reason."""
    problems = []
    if own_key != cluster_key:
        problems.append("does not hold the cluster key as its own key" if own_key else "has no usable localhost.pub")
    if facts.inputs_dir == "missing" or facts.inputs_count == 0:
        problems.append("has no inputs")
    if facts.package_files == 0:
        problems.append("has none of the package's files")
    return problems


def inputs_lag(member: Mapping[str, str] | None, master: Mapping[str, str] | None, shown: int = 3) -> str:
    """How a member's inputs differ from the master's ('' when they do not, or cannot tell)."""
    if member is None or master is None:
        return ""
    differ = sorted(p for p in set(member) | set(master) if member.get(p) != master.get(p))
    if not differ:
        return ""
    names = ", ".join(p.removeprefix("./") for p in differ[:shown]) + (", ..." if len(differ) > shown else "")
    return f"{len(differ)} of {len(master)} file(s): {names}"


def package_server(state: DesiredState, facts: Mapping[str, HostFacts]) -> str | None:
    """The declared host answering at the package address now: the node running the package
    (the standalone master), or None while the package does not run or runs undeclared."""
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
