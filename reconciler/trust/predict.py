"""The trust matrix: will cfengine authenticate, predicted from the facts alone. Pure.

The rules are cfengine 2's (DOMAIN.md, "why the key rules are what they are"):
- a client side (cfagent pulling, cfrun calling) authenticates the server it connected to
  with `ppkeys/root-<IP it connected to>.pub`;
- a server (cfservd) authenticates the caller with `ppkeys/root-<caller's source IP>.pub`.
So `cfrun` from member M to client C needs, on M, root-<C>.pub = C's key and, on C,
root-<M>.pub = M's key; `cfagent` on C against the package address needs, on C,
root-<package IP>.pub = the key of the node answering there, and on that node
root-<C>.pub = C's key. Private keys are never read: a host's key pair is taken to be
consistent with its `localhost.pub`.

Every failed prediction carries its causes as data (`Cause`: which file on which host, and
what is wrong with it), so that `csync trust --live` can check that a live failure has a
predicted cause, and the views can group clients whose problems are alike.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.domain.package import PackageDecision, decide_package, failover, infer_cluster_key, package_server
from reconciler.observe.facts import HostFacts

# What is wrong with the file a check reads (Cause.kind).
MISSING = "missing"  # the file is not there
UNUSABLE = "unusable"  # there, but not a usable key (detail says why)
UNKNOWN_KEY = "unknown-key"  # the key it should hold is not known (its owner has no usable localhost.pub)
OTHER_KEY = "other-key"  # holds another key than the one it should
OWN_KEY = "own-key"  # the caller has no usable localhost.pub to offer
NO_SERVER = "no-server"  # nothing answers at the address (the package is not running)
UNREACHABLE = "unreachable"  # a host did not answer the probe


@dataclass(frozen=True, slots=True)
class Cause:
    """Why one authentication would fail: ``file`` on ``host`` is ``kind``; it should
    hold the key of ``whose``. For NO_SERVER, ``file`` is the address nobody answers at."""

    host: str
    file: str
    kind: str
    whose: str = ""
    detail: str = ""

    def describe(self) -> str:
        if self.kind == MISSING:
            return f"{self.host} lacks {self.file} (the key of {self.whose})"
        if self.kind == UNUSABLE:
            return f"{self.host}: {self.file} {self.detail or 'is not a usable key'}"
        if self.kind == UNKNOWN_KEY:
            return f"{self.host}: {self.file} cannot be checked: the key of {self.whose} is unknown"
        if self.kind == OTHER_KEY:
            return f"{self.host}: {self.file} holds another key than the key of {self.whose}"
        if self.kind == OWN_KEY:
            return f"{self.host} has no usable {self.file} (its own key)"
        if self.kind == NO_SERVER:
            return f"the package is not running: nothing answers at {self.file}"
        return f"{self.host}: {self.detail or 'unreachable'}"


# Plain dataclasses: a plan predicts members x clients checks (800,000 for 8 x 100,000).
@dataclass(frozen=True, slots=True)
class Check:
    """One authentication, predicted: ok, or why not (which file on which host)."""

    ok: bool | None  # None: unknown (a host unreachable)
    problems: tuple[str, ...] = ()
    causes: tuple[Cause, ...] = ()

    @property
    def symbol(self) -> str:
        return "?" if self.ok is None else ("ok" if self.ok else "FAIL")


_OK = Check(ok=True)


def _unknown(hosts: list[str]) -> Check:
    causes = tuple(Cause(host=h, file="", kind=UNREACHABLE, detail="did not answer the probe") for h in hosts)
    return Check(ok=None, problems=tuple(c.describe() for c in causes), causes=causes)


def _failed(causes: list[Cause]) -> Check:
    return Check(ok=False, problems=tuple(c.describe() for c in causes), causes=tuple(causes))


@dataclass(frozen=True, slots=True)
class MemberReadiness:
    member: str
    can_take_over: bool | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrustReport:
    site: str
    failover_ready: bool
    server_address: str
    package_node: str | None
    members: tuple[str, ...]
    clients: tuple[str, ...]
    cfrun: dict[str, dict[str, Check]]  # member -> client -> check
    cfagent: dict[str, Check]  # client -> check
    takeover: tuple[MemberReadiness, ...]
    reasons: tuple[str, ...] = ()
    unsure: tuple[str, ...] = ()  # why readiness is unknown (a node the desired state does not declare)
    cluster_key: str | None = None
    package: str | None = None  # the csync package's name; None for a standalone master
    server: str | None = None  # the host answering at server_address (None: the package is not running)
    addresses: dict[str, str] = dataclasses.field(default_factory=dict)  # host name -> address
    unreachable: dict[str, str] = dataclasses.field(default_factory=dict)  # host name -> why

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _expect(host: HostFacts | None, name: str, file: str, wanted: str | None, whose: str) -> Cause | None:
    """Why ``host`` would not accept ``whose`` key via ``file``, or None when it would."""
    if host is None or not host.reachable:
        return None
    key = host.keys.get(file)
    if key is not None and wanted is not None and key.fingerprint == wanted and key.kind == "file" and key.problem is None:
        return None  # the common case, first: a site has members x clients of these
    if key is None:
        return Cause(name, file, MISSING, whose)
    if not key.usable:
        return Cause(name, file, UNUSABLE, whose, key.problem or "")
    if wanted is None:
        return Cause(name, file, UNKNOWN_KEY, whose)
    if key.fingerprint != wanted:
        return Cause(name, file, OTHER_KEY, whose)
    return None


def _offers(host: HostFacts | None, name: str) -> Cause | None:
    """Why the caller ``host`` could not offer its own key, or None."""
    if host is None or not host.reachable or host.own_fingerprint is not None:
        return None
    return Cause(name, dsau.OWN_PUBLIC_KEY, OWN_KEY, name)


def _check(parts: dict[str, HostFacts | None], causes: list[Cause | None]) -> Check:
    down = [name for name, p in parts.items() if p is None or not p.reachable]
    if down:
        return _unknown(down)
    found = [c for c in causes if c]
    if found and all(c.kind == UNKNOWN_KEY for c in found):
        # The file is there but the key it should hold is not known (its owner shows no
        # usable localhost.pub): whether it authenticates depends on a private key csync
        # never reads.
        return Check(ok=None, problems=tuple(c.describe() for c in found), causes=tuple(found))
    return _failed(found) if found else _OK


def _own(f: HostFacts | None) -> str | None:
    return f.own_fingerprint if f and f.reachable else None


def _names(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + ("..." if len(names) > shown else "")


def _serviceguard_side(state: DesiredState, facts: Mapping[str, HostFacts], server: str | None, after: PackageDecision | None,
                       takeover: list[MemberReadiness], reasons: list[str], unsure: list[str]) -> None:
    """Failover needs more than keys: global switching enabled, and an adoptive node that is
    up, in the package's node list, enabled for the package, and configured."""
    d = after if after is not None else decide_package(state, facts)
    if d.view is None or d.cluster is None:
        return
    if after is not None:
        runs, runs_on, switching = d.runs_after, d.node or d.owner, bool(d.switching_after)
    else:
        runs, runs_on, switching = d.running, d.owner, d.view.autorun == "enabled"
    if d.owner and d.owner not in {m.name for m in state.members}:
        unsure.append(f"the package runs on {d.owner}, which the desired state does not declare")
    f = failover(state, d.view, d.cluster, runs_on=runs_on, runs=runs, switching=switching)
    reasons.extend(b for b in f.blockers if runs or server is not None)  # "not running" is said once, below
    if f.undeclared:
        unsure.append(f"the package can fail over to {', '.join(f.undeclared)}, which the desired state does not declare")
    maybe = {t.member for t in takeover if t.can_take_over is not False}
    if runs and f.adoptive and not maybe & set(f.adoptive):
        reasons.append(f"no adoptive node ({', '.join(f.adoptive)}) is configured to take over")


def trust_report(state: DesiredState, facts: Mapping[str, HostFacts], *, package_node: str | None = None,
                 after: PackageDecision | None = None) -> TrustReport:
    """Predict every cfrun (member -> client), every cfagent (client -> master) and each
    member's readiness to take over the package. ``after``: the planner's decision, when the
    report is of the site as a plan leaves it (else the package is read as it is now)."""
    masters = state.master_hosts
    server_address = state.package.address if state.is_cluster else state.standalone_host.address
    if state.is_cluster and package_node is None:
        package_node = package_server(state, facts)
    server = package_node if state.is_cluster else state.standalone_host.name
    cluster_key = _own(facts.get(server)) if server else None
    if state.is_cluster:
        owner = facts.get(server or "")
        if owner and owner.package_fs and owner.package_fs.cluster_key and owner.package_fs.cluster_key.usable:
            cluster_key = owner.package_fs.cluster_key.fingerprint
        if server is None:
            cluster_key = infer_cluster_key(state, {m.name: _own(facts.get(m.name)) for m in state.members})[0]

    own = {h.name: _own(facts.get(h.name)) for h in state.all_hosts}
    file_of = {h.name: dsau.peer_key_name(h.address) for h in state.all_hosts}
    cfrun: dict[str, dict[str, Check]] = {}
    cfagent: dict[str, Check] = {}
    lacking: dict[str, list[str]] = {}  # member -> clients whose key it lacks
    unchecked: list[str] = []  # clients whose own key is unknown (unreachable, no usable localhost.pub)
    # Clients outer, members inner: each client's facts are read once, not once per member
    # (8 members x 100,000 clients are 800,000 cells); the common case is checked inline.
    member_views = [(m.name, mf, file_of[m.name], own[m.name], mf.keys if mf is not None and mf.reachable else None,
                     _offers(mf, m.name)) for m in masters for mf in (facts.get(m.name),)]
    for m in masters:
        cfrun[m.name] = {}
        lacking[m.name] = []
    for c in state.clients:
        cf = facts.get(c.name)
        c_own, c_file = own[c.name], file_of[c.name]
        c_keys = cf.keys if cf is not None and cf.reachable and c_own is not None else None
        for m_name, mf, m_file, m_own, m_keys, offers in member_views:
            if c_keys is not None and m_keys is not None and m_own is not None:
                k1, k2 = m_keys.get(c_file), c_keys.get(m_file)
                if (k1 is not None and k2 is not None and k1.fingerprint == c_own and k2.fingerprint == m_own
                        and k1.kind == "file" and k2.kind == "file" and k1.problem is None and k2.problem is None):
                    cfrun[m_name][c.name] = _OK
                    continue
            member_side = _expect(mf, m_name, c_file, c_own, c.name)
            if member_side:
                (unchecked if member_side.kind == UNKNOWN_KEY else lacking[m_name]).append(c.name)
            client_side = _expect(cf, c.name, m_file, m_own, m_name)
            cfrun[m_name][c.name] = _check({m_name: mf, c.name: cf}, [offers, member_side, client_side])
    server_file = dsau.peer_key_name(server_address)
    sf = facts.get(server) if server else None
    for c in state.clients:
        cf = facts.get(c.name)
        if server is None:
            # The caller's own files are read before it connects, so a missing one shows first.
            client_side = _expect(cf, c.name, server_file, cluster_key, "the cluster")
            cfagent[c.name] = _check({c.name: cf}, [_offers(cf, c.name), client_side, Cause("", server_address, NO_SERVER)])
            continue
        cfagent[c.name] = _check({c.name: cf, server: sf}, [
            _offers(cf, c.name),
            _expect(cf, c.name, server_file, own.get(server), f"{server} (answering at {server_address})"),
            _expect(sf, server, file_of[c.name], own[c.name], c.name),
        ])
    takeover = []
    for m in masters:
        mf = facts.get(m.name)
        if mf is None or not mf.reachable:
            takeover.append(MemberReadiness(member=m.name, can_take_over=None, problems=("unreachable",)))
            continue
        problems = []
        if state.is_cluster and (cluster_key is None or own[m.name] != cluster_key):
            problems.append("does not hold the cluster key (not configured: dispatch it)" if cluster_key else
                            "the cluster key is unknown (the package is not running and the members do not agree on one key)")
        missing = lacking[m.name]
        if missing:
            problems.append(f"lacks the key of {len(missing)} client(s): {_names(missing)}")
        if problems or not unchecked:
            takeover.append(MemberReadiness(member=m.name, can_take_over=not problems, problems=tuple(problems)))
        else:
            unknown = list(dict.fromkeys(unchecked))
            takeover.append(MemberReadiness(member=m.name, can_take_over=None, problems=(
                f"cannot check the key of {len(unknown)} client(s) whose own key is unknown: {_names(unknown)}",)))
    reasons: list[str] = []
    unsure: list[str] = []
    unreachable = {h.name: (f.reason if f else "not probed") or "unreachable"
                   for h in state.all_hosts if (f := facts.get(h.name)) is None or not f.reachable}
    if unreachable:
        reasons.append(f"{len(unreachable)} host(s) did not answer: {', '.join(list(unreachable)[:5])}{'...' if len(unreachable) > 5 else ''}")
    if server is None:
        reasons.append("the package is not running")
    bad_agents = [c for c, chk in cfagent.items() if chk.ok is not True]
    if bad_agents:
        reasons.append(f"cfagent would fail or is unknown on {len(bad_agents)} client(s)")
    bad_members = [t.member for t in takeover if t.can_take_over is False]
    if bad_members:
        reasons.append(f"cannot take over: {', '.join(bad_members)}")
    unknown_members = [t.member for t in takeover if t.can_take_over is None]
    if unknown_members:
        reasons.append(f"takeover unknown: {', '.join(unknown_members)}")
    bad_cfrun = sum(1 for row in cfrun.values() for chk in row.values() if chk.ok is not True)
    if state.keys.cfrun == "all-members" and bad_cfrun:
        reasons.append(f"{bad_cfrun} cfrun pair(s) would fail or are unknown")
    if state.is_cluster:
        _serviceguard_side(state, facts, server, after, takeover, reasons, unsure)
    return TrustReport(
        site=state.site,
        failover_ready=not reasons and not unsure,
        unsure=tuple(unsure),
        server_address=server_address,
        package_node=package_node,
        members=tuple(m.name for m in masters),
        clients=tuple(c.name for c in state.clients),
        cfrun=cfrun,
        cfagent=cfagent,
        takeover=tuple(takeover),
        reasons=tuple(reasons),
        cluster_key=cluster_key if state.is_cluster else None,
        package=state.package.name if state.is_cluster else None,
        server=server,
        addresses={h.name: h.address for h in state.all_hosts},
        unreachable=unreachable,
    )
