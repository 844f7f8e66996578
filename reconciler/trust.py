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
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler import dsau
from reconciler.facts import HostFacts
from reconciler.model import DesiredState


# Plain dataclasses: a plan predicts members x clients checks (800,000 for 8 x 100,000).
@dataclass(frozen=True, slots=True)
class Check:
    """One authentication, predicted: ok, or why not (which file on which host)."""

    ok: bool | None  # None: unknown (a host unreachable)
    problems: tuple[str, ...] = ()

    @property
    def symbol(self) -> str:
        return "?" if self.ok is None else ("ok" if self.ok else "FAIL")


_OK = Check(ok=True)
_UNKNOWN = Check(ok=None, problems=("a host is unreachable",))


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _expect(host: HostFacts | None, name: str, file: str, wanted: str | None, whose: str) -> str | None:
    """Why ``host`` would not accept ``whose`` key via ``file``, or None when it would."""
    if host is None or not host.reachable:
        return None
    key = host.keys.get(file)
    if key is not None and wanted is not None and key.fingerprint == wanted and key.kind == "file" and key.problem is None:
        return None  # the common case, first: a site has members x clients of these
    if key is None:
        return f"{name} lacks {file} ({whose})"
    if not key.usable:
        return f"{name}: {file} {key.problem or 'is not a usable key'}"
    if wanted is None:
        return f"{name}: {whose} is unknown"
    if key.fingerprint != wanted:
        return f"{name}: {file} holds another key than {whose}"
    return None


def _check(parts: list[HostFacts | None], problems: list[str | None]) -> Check:
    if any(p is None or not p.reachable for p in parts):
        return _UNKNOWN
    if not any(problems):
        return _OK
    return Check(ok=False, problems=tuple(p for p in problems if p))


def _own(f: HostFacts | None) -> str | None:
    return f.own_fingerprint if f and f.reachable else None


def trust_report(state: DesiredState, facts: Mapping[str, HostFacts], *, package_node: str | None = None) -> TrustReport:
    """Predict every cfrun (member -> client), every cfagent (client -> master) and each
    member's readiness to take over the package."""
    masters = state.master_hosts
    server_address = state.master.package.address if state.is_cluster else state.master.host.address
    if state.is_cluster and package_node is None:
        for m in masters:
            f = facts.get(m.name)
            if f and f.cluster and (pkg := f.cluster.packages.get(state.master.package.name)) and pkg.running:
                package_node = pkg.owner
                break
    server = package_node if state.is_cluster else state.master.host.name
    cluster_key = _own(facts.get(server)) if server else None
    if state.is_cluster:
        owner = facts.get(server or "")
        if owner and owner.package_fs and owner.package_fs.cluster_key and owner.package_fs.cluster_key.usable:
            cluster_key = owner.package_fs.cluster_key.fingerprint

    own = {h.name: _own(facts.get(h.name)) for h in state.all_hosts}
    file_of = {h.name: dsau.peer_key_name(h.address) for h in state.all_hosts}
    cfrun: dict[str, dict[str, Check]] = {}
    cfagent: dict[str, Check] = {}
    lacking: dict[str, list[str]] = {}  # member -> clients whose key it lacks
    # Clients outer, members inner: each client's facts are read once, not once per member
    # (8 members x 100,000 clients are 800,000 cells); the common case is checked inline.
    member_facts = [(m, facts.get(m.name)) for m in masters]
    member_keys = [(m.name, file_of[m.name], own[m.name], mf.keys if mf is not None and mf.reachable else None)
                   for m, mf in member_facts]
    for m in masters:
        cfrun[m.name] = {}
        lacking[m.name] = []
    for c in state.clients:
        cf = facts.get(c.name)
        c_own, c_file = own[c.name], file_of[c.name]
        c_keys = cf.keys if cf is not None and cf.reachable and c_own is not None else None
        for (m, mf), (m_name, m_file, m_own, m_keys) in zip(member_facts, member_keys):
            if c_keys is not None and m_keys is not None and m_own is not None:
                k1, k2 = m_keys.get(c_file), c_keys.get(m_file)
                if (k1 is not None and k2 is not None and k1.fingerprint == c_own and k2.fingerprint == m_own
                        and k1.kind == "file" and k2.kind == "file" and k1.problem is None and k2.problem is None):
                    cfrun[m_name][c.name] = _OK
                    continue
            member_side = _expect(mf, m_name, c_file, c_own, f"the key of client {c.name}")
            if member_side:
                lacking[m_name].append(c.name)
            cfrun[m_name][c.name] = _check([mf, cf], [member_side, _expect(cf, c.name, m_file, m_own, f"the key of {m_name}")])
    server_file = dsau.peer_key_name(server_address)
    for c in state.clients:
        cf = facts.get(c.name)
        if server is None:
            cfagent[c.name] = Check(ok=False, problems=("the package is not running: nothing answers at the package address",))
            continue
        sf = facts.get(server)
        cfagent[c.name] = _check([cf, sf], [
            _expect(cf, c.name, server_file, own.get(server), f"the key of {server} (answering at {server_address})"),
            _expect(sf, server, file_of[c.name], own[c.name], f"the key of client {c.name}"),
        ])
    takeover = []
    for m in masters:
        mf = facts.get(m.name)
        if mf is None or not mf.reachable:
            takeover.append(MemberReadiness(member=m.name, can_take_over=None, problems=("unreachable",)))
            continue
        problems = []
        if state.is_cluster and (cluster_key is None or own[m.name] != cluster_key):
            problems.append("does not hold the cluster key (not configured: dispatch it)")
        missing = lacking[m.name]
        if missing:
            problems.append(f"lacks the key of {len(missing)} client(s): {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}")
        takeover.append(MemberReadiness(member=m.name, can_take_over=not problems, problems=tuple(problems)))
    reasons = []
    if server is None:
        reasons.append("the package is not running")
    bad_agents = [c for c, chk in cfagent.items() if chk.ok is not True]
    if bad_agents:
        reasons.append(f"cfagent would fail or is unknown on {len(bad_agents)} client(s)")
    bad_members = [t.member for t in takeover if t.can_take_over is not True]
    if bad_members:
        reasons.append(f"cannot take over: {', '.join(bad_members)}")
    bad_cfrun = sum(1 for row in cfrun.values() for chk in row.values() if chk.ok is not True)
    if state.keys.cfrun == "all-members" and bad_cfrun:
        reasons.append(f"{bad_cfrun} cfrun pair(s) would fail or are unknown")
    return TrustReport(
        site=state.site,
        failover_ready=not reasons,
        server_address=server_address,
        package_node=package_node,
        members=tuple(m.name for m in masters),
        clients=tuple(c.name for c in state.clients),
        cfrun=cfrun,
        cfagent=cfagent,
        takeover=tuple(takeover),
        reasons=tuple(reasons),
    )
