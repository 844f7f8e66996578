"""The trust matrix: will cfengine authenticate, predicted from the facts alone. Pure.

The rules are cfengine 2's (DOMAIN.md, "why the key rules are what they are"; src/cfrun.c
PollServer, src/proto.c KeyAuthentication, src/cfservd.c CheckStoreKey):
- a client side (cfagent pulling, cfrun calling) authenticates the server it connected to
  with `ppkeys/root-<IP it connected to>.pub`; cfrun with `hostnamekeys` in its hosts file
  uses `root-<host as written>.pub` instead (it looks that one up first in any case, but
  without hostnamekeys a name key only decides whether cfrun asks to trust a key);
- a server (cfservd) authenticates the caller with `ppkeys/root-<caller's source IP>.pub`,
  or with `HostnameKeys = ( on )` `ppkeys/root-<caller's name>.pub`.
So `cfrun` from member M (leaving from any of its addresses A) to client C needs, on M,
root-<C>.pub = C's key and, on C, root-<A>.pub = M's key; `cfagent` on C against a package
address P needs, on C, root-<P>.pub = the key of the node answering there, and on that node
root-<C>.pub = C's key. Each extra address of a member is a column of its own, and so is
each extra address of the package. Private keys are never read: a host's key pair is taken
to be consistent with its `localhost.pub`.

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
UNKNOWN_NAME = "unknown-name"  # the server authenticates callers by name, and the name the caller gives is unknown


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
            held = f" ({self.detail})" if self.detail else ""
            return f"{self.host}: {self.file} holds another key{held} than the key of {self.whose}"
        if self.kind == OWN_KEY:
            return f"{self.host} has no usable {self.file} (its own key)"
        if self.kind == NO_SERVER:
            return f"the package is not running: nothing answers at {self.file}"
        if self.kind == UNKNOWN_NAME:
            return (
                f"{self.host} authenticates callers by name (HostnameKeys); the name {self.whose} gives for {self.detail} is its "
                f"resolver's, which csync does not know"
            )
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


@dataclass(frozen=True, slots=True)
class Column:
    """A column of the matrix: cfrun from a member leaving from one of its addresses, or
    cfagent on every client against one of the master's addresses."""

    label: str  # "node1" (its address), "node1@10.0.2.1" (an extra address), "cfagent", "cfagent@10.0.2.10"
    tool: str  # cfrun | cfagent
    member: str | None  # the cfrun caller
    address: str  # cfrun: the caller's source address; cfagent: the address it connects to


@dataclass(frozen=True)
class TrustReport:
    site: str
    failover_ready: bool
    server_address: str
    package_node: str | None
    members: tuple[str, ...]
    clients: tuple[str, ...]
    cfrun: dict[str, dict[str, Check]]  # cfrun column (member, or member@address) -> client -> check
    cfagent: dict[str, Check]  # client -> check (against server_address)
    takeover: tuple[MemberReadiness, ...]
    reasons: tuple[str, ...] = ()
    unsure: tuple[str, ...] = ()  # why readiness is unknown (a node the desired state does not declare)
    cluster_key: str | None = None
    package: str | None = None  # the csync package's name; None for a standalone master
    server: str | None = None  # the host answering at server_address (None: the package is not running)
    addresses: dict[str, str] = dataclasses.field(default_factory=dict)  # host name -> address
    unreachable: dict[str, str] = dataclasses.field(default_factory=dict)  # host name -> why
    cfagent_extra: dict[str, dict[str, Check]] = dataclasses.field(default_factory=dict)  # extra master address -> client -> check
    columns: tuple[Column, ...] = ()  # the matrix's columns, in order: cfrun ones, then cfagent ones
    cluster_key_md5: str | None = None  # the cluster key's digest in cfengine's notation

    def check(self, column: Column, client: str) -> Check:
        if column.tool == "cfrun":
            return self.cfrun[column.label][client]
        return self.cfagent[client] if column.address == self.server_address else self.cfagent_extra[column.address][client]

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
        return Cause(name, file, OTHER_KEY, whose, key.shown())  # the key it holds: SHA256 and cfengine's MD5
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
    if found and all(c.kind in (UNKNOWN_KEY, UNKNOWN_NAME) for c in found):
        # The file is there but the key it should hold is not known (its owner shows no
        # usable localhost.pub): whether it authenticates depends on a private key csync
        # never reads.
        return Check(ok=None, problems=tuple(c.describe() for c in found), causes=tuple(found))
    return _failed(found) if found else _OK


def _own(f: HostFacts | None) -> str | None:
    return f.own_fingerprint if f and f.reachable else None


def _names(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + ("..." if len(names) > shown else "")


def _serviceguard_side(
    state: DesiredState,
    facts: Mapping[str, HostFacts],
    server: str | None,
    after: PackageDecision | None,
    takeover: list[MemberReadiness],
    reasons: list[str],
    unsure: list[str],
) -> None:
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


def _written(facts: HostFacts | None) -> tuple[dict[str, str], bool]:
    """How a member's cfrun.hosts writes each host (lower-case first label or address -> as
    written), and whether it has hostnamekeys."""
    hosts = facts.cfrun_hosts if facts is not None and facts.reachable else None
    if hosts is None:
        return {}, False
    return {w.lower().split(".", 1)[0] if not _is_address(w) else w: w for w in hosts.hosts}, hosts.hostnamekeys


def _is_address(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def trust_report(state: DesiredState, facts: Mapping[str, HostFacts], *, package_node: str | None = None, after: PackageDecision | None = None) -> TrustReport:
    """Predict every cfrun (member, from each of its addresses -> client), every cfagent
    (client -> each master address) and each member's readiness to take over the package.
    ``after``: the planner's decision, when the report is of the site as a plan leaves it
    (else the package is read as it is now)."""
    masters = state.master_hosts
    server_address = state.package.address if state.is_cluster else state.standalone_host.address
    if state.is_cluster and package_node is None:
        package_node = package_server(state, facts)
    server = package_node if state.is_cluster else state.standalone_host.name
    cluster_key = _own(facts.get(server)) if server else None
    cluster_md5 = None
    if server and (sf0 := facts.get(server)) is not None and sf0.reachable and sf0.own_key is not None:
        cluster_md5 = sf0.own_key.md5
    if state.is_cluster:
        owner = facts.get(server or "")
        if owner and owner.package_fs and owner.package_fs.cluster_key and owner.package_fs.cluster_key.usable:
            cluster_key = owner.package_fs.cluster_key.fingerprint
            cluster_md5 = owner.package_fs.cluster_key.md5
        if server is None:
            cluster_key = infer_cluster_key(state, {m.name: _own(facts.get(m.name)) for m in state.members})[0]
            holder = next((f for m in state.members if (f := facts.get(m.name)) is not None and _own(f) == cluster_key), None)
            cluster_md5 = holder.own_key.md5 if holder is not None and holder.own_key is not None and cluster_key else None

    own = {h.name: _own(facts.get(h.name)) for h in state.all_hosts}
    file_of = {h.name: dsau.peer_key_name(h.address) for h in state.all_hosts}
    columns = [Column(m.name if a == m.address else f"{m.name}@{a}", "cfrun", m.name, a) for m in masters for a in m.addresses]
    cfrun: dict[str, dict[str, Check]] = {col.label: {} for col in columns}
    cfagent: dict[str, Check] = {}
    lacking: dict[str, list[str]] = {m.name: [] for m in masters}  # member -> clients whose key it lacks
    unchecked: list[str] = []  # clients whose own key is unknown (unreachable, no usable localhost.pub)
    # Per column, what the member offers and where; per member, how its cfrun writes clients.
    member_of = {m.name: m for m in masters}
    views = []
    for col in columns:
        mf = facts.get(col.member or "")
        written, by_name = _written(mf)
        primary = col.address == member_of[col.member or ""].address
        serves_by_name = bool(mf is not None and mf.reachable and mf.hostname_keys)
        views.append(
            (
                col,
                mf,
                own[col.member or ""],
                mf.keys if mf is not None and mf.reachable else None,
                _offers(mf, col.member or ""),
                written,
                by_name,
                primary,
                dsau.peer_key_name(col.address),
                serves_by_name,
            )
        )
    # Clients outer, columns inner: each client's facts are read once, not once per column
    # (8 members x 100,000 clients are 800,000 cells); the common case is checked inline.
    for c in state.clients:
        cf = facts.get(c.name)
        c_own, c_file = own[c.name], file_of[c.name]
        c_lower = c.name.lower()
        c_reachable = cf is not None and cf.reachable
        c_keys = cf.keys if cf is not None and c_reachable and c_own is not None else None
        c_names = bool(c_reachable and cf is not None and cf.hostname_keys)
        for col, mf, m_own, m_keys, offers, written, by_name, primary, source_file, serves_by_name in views:
            m_name = col.member or ""
            m_file = c_file
            if by_name:  # cfrun authenticates by the name as its cfrun.hosts writes it
                w = written.get(c_lower) or written.get(c.address) or c.address
                m_file = c_file if _is_address(w) else dsau.peer_key_name(w)
            if c_names:
                c_side_file = dsau.peer_key_name(m_name.lower()) if primary else None  # the name it gives from another LAN: unknown
            else:
                c_side_file = source_file
            # the file the member's cfservd authenticates the client by, when it serves cfagent (takeover)
            serve_file = dsau.peer_key_name(c_lower) if serves_by_name else c_file
            if c_keys is not None and m_keys is not None and m_own is not None and c_side_file is not None and serve_file == m_file:
                k1, k2 = m_keys.get(m_file), c_keys.get(c_side_file)
                if (
                    k1 is not None
                    and k2 is not None
                    and k1.fingerprint == c_own
                    and k2.fingerprint == m_own
                    and k1.kind == "file"
                    and k2.kind == "file"
                    and k1.problem is None
                    and k2.problem is None
                ):
                    cfrun[col.label][c.name] = _OK
                    continue
            member_side = _expect(mf, m_name, m_file, c_own, c.name)
            if primary:
                serving = member_side if serve_file == m_file else _expect(mf, m_name, serve_file, c_own, c.name)
                if serving:
                    (unchecked if serving.kind == UNKNOWN_KEY else lacking[m_name]).append(c.name)
            if c_side_file is None:
                client_side: Cause | None = Cause(c.name, "", UNKNOWN_NAME, m_name, col.address) if c_reachable else None
            else:
                client_side = _expect(cf, c.name, c_side_file, m_own, m_name)
            cfrun[col.label][c.name] = _check({m_name: mf, c.name: cf}, [offers, member_side, client_side])
    sf = facts.get(server) if server else None
    extra_addresses = state.server_addresses[1:]
    cfagent_extra: dict[str, dict[str, Check]] = {a: {} for a in extra_addresses}
    s_names = bool(sf is not None and sf.reachable and sf.hostname_keys)
    for c in state.clients:
        cf = facts.get(c.name)
        s_file = dsau.peer_key_name(c.name.lower()) if s_names else file_of[c.name]
        for address in state.server_addresses:
            server_file = dsau.peer_key_name(address)
            if server is None:
                # The caller's own files are read before it connects, so a missing one shows first.
                client_side = _expect(cf, c.name, server_file, cluster_key, "the cluster")
                chk = _check({c.name: cf}, [_offers(cf, c.name), client_side, Cause("", address, NO_SERVER)])
            else:
                chk = _check(
                    {c.name: cf, server: sf},
                    [
                        _offers(cf, c.name),
                        _expect(cf, c.name, server_file, own.get(server), f"{server} (answering at {address})"),
                        _expect(sf, server, s_file, own[c.name], c.name),
                    ],
                )
            if address == server_address:
                cfagent[c.name] = chk
            else:
                cfagent_extra[address][c.name] = chk
    takeover = []
    for m in masters:
        mf = facts.get(m.name)
        if mf is None or not mf.reachable:
            takeover.append(MemberReadiness(member=m.name, can_take_over=None, problems=("unreachable",)))
            continue
        problems = []
        if state.is_cluster and (cluster_key is None or own[m.name] != cluster_key):
            problems.append(
                "does not hold the cluster key (not configured: dispatch it)"
                if cluster_key
                else "the cluster key is unknown (the package is not running and the members do not agree on one key)"
            )
        missing = lacking[m.name]
        if missing:
            problems.append(f"lacks the key of {len(missing)} client(s): {_names(missing)}")
        if problems or not unchecked:
            takeover.append(MemberReadiness(member=m.name, can_take_over=not problems, problems=tuple(problems)))
        else:
            unknown = list(dict.fromkeys(unchecked))
            takeover.append(
                MemberReadiness(
                    member=m.name,
                    can_take_over=None,
                    problems=(f"cannot check the key of {len(unknown)} client(s) whose own key is unknown: {_names(unknown)}",),
                )
            )
    reasons: list[str] = []
    unsure: list[str] = []
    unreachable = {h.name: (f.reason if f else "not probed") or "unreachable" for h in state.all_hosts if (f := facts.get(h.name)) is None or not f.reachable}
    if unreachable:
        reasons.append(f"{len(unreachable)} host(s) did not answer: {', '.join(list(unreachable)[:5])}{'...' if len(unreachable) > 5 else ''}")
    if server is None:
        reasons.append("the package is not running")
    bad_agents = [c.name for c in state.clients if cfagent[c.name].ok is not True or any(row[c.name].ok is not True for row in cfagent_extra.values())]
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
    agent_columns = [Column("cfagent" if a == server_address else f"cfagent@{a}", "cfagent", None, a) for a in state.server_addresses]
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
        cfagent_extra=cfagent_extra,
        columns=tuple(columns + agent_columns),
        cluster_key_md5=cluster_md5 if state.is_cluster else None,
    )
