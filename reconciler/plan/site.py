"""The predicted site the planner's phases work on (see plan/planner.py): the facts as
probed, updated by the effects of the actions planned so far, and what has been planned."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.desired.model import DesiredState, Host
from reconciler.domain import dsau
from reconciler.domain.base import Frozen
from reconciler.domain.inventory import KeyInventory
from reconciler.domain.keys import (
    KeyFile,
    is_verified_copy,
    own_fingerprint,
)
from reconciler.domain.package import PackageDecision
from reconciler.observe.facts import HostFacts, KeyStoreReader
from reconciler.plan import kinds
from reconciler.plan.artefact import Action, Finding, fingerprint
from reconciler.trust.predict import TrustReport, trust_report


@dataclass(slots=True)
class _Pending:
    """An action being planned; it becomes an Action (validated once) when its wave is known."""

    kind: str
    address: str
    host: str
    params: dict
    depends_on: tuple[str, ...]
    fields: dict

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.address}"

    def action(self, wave: int) -> Action:
        return Action(kind=self.kind, address=self.address, host=self.host, params=self.params, depends_on=self.depends_on, wave=wave, **self.fields)


class _Predicted(KeyStoreReader):
    """A host's facts with the key store this plan leaves it (what the trust check reads),
    without copying the facts: a site has one per host."""

    __slots__ = ("facts", "keys", "reachable")

    def __init__(self, facts: HostFacts, keys: dict[str, KeyFile]):
        self.facts = facts
        self.keys = keys
        self.reachable = facts.reachable

    def __getattr__(self, name: str):
        return getattr(self.facts, name)


@dataclass
class HostView:
    """A host as it will be when a phase runs (starts as probed)."""

    facts: HostFacts
    keys: dict[str, KeyFile]
    planned: set[str] = field(default_factory=set)  # files written by this plan's key phase

    def cluster_key_copies(self, fp: str) -> list[str]:
        """Peer key files on this host that verifiably hold the key ``fp``."""
        return sorted(
            n for n, k in self.keys.items() if n not in self.planned and n.startswith(dsau.PEER_KEY_PREFIX) and k.fingerprint == fp and is_verified_copy(k)
        )

    @property
    def own(self) -> str | None:
        return own_fingerprint(self.keys)

    def after_write(self, file: str, fp: str) -> None:
        """A copy-key or install-key planned here leaves ``file`` holding the key ``fp``."""
        self.keys[file] = KeyFile(name=file, fingerprint=fp, mode=dsau.KEY_FILE_MODE)
        self.planned.add(file)


@dataclass
class PredictedSite:
    """The site as the plan so far will leave it: each host's predicted key store, the
    package and the cluster key decided, the actions and findings planned. Every phase is
    a function over it (plan/phases.py); it owns the effects of the actions planned."""

    state: DesiredState
    facts: Mapping[str, HostFacts]
    actions: list[_Pending] = field(default_factory=list)
    blocked: list[Finding] = field(default_factory=list)
    unknown: list[Finding] = field(default_factory=list)
    notices: list[Finding] = field(default_factory=list)
    views: dict[str, HostView] = field(default_factory=dict)
    cluster_key: KeyFile | None = None
    cluster_key_source: str | None = None
    cluster_key_inferred: bool = False  # read from the members' own keys, not the package filesystem
    master_inputs: str | None = None
    master_inputs_sums: dict[str, str] | None = None
    decision: PackageDecision | None = None  # the package, as decide_package saw it
    package_node: str | None = None
    package_action: str | None = None  # id of start-package, when planned
    client_keys: dict[str, KeyFile] = field(default_factory=dict)  # fingerprint -> a client's own key
    roles: dict[str, str] = field(default_factory=dict)  # host name -> member | master | client
    desired_cache: dict | None = None
    peers_cache: dict | None = None  # phases.declared_peers, once
    dispatched: dict[str, str] = field(default_factory=dict)  # member -> dispatch action id
    refused: dict[tuple[str, str], str] = field(default_factory=dict)  # operations Serviceguard's preview does not confirm
    inventory: KeyInventory | None = None  # the site's inventory (None: it cannot be read)
    inventory_error: str | None = None  # why it cannot be read

    def __post_init__(self) -> None:
        master_role = "member" if self.state.is_cluster else "master"
        self.roles = {h.name: master_role for h in self.state.master_hosts}
        self.roles.update({c.name: "client" for c in self.state.clients})
        for host in self.state.all_hosts:
            f = self.facts.get(host.name)
            if f is None:
                self.unknown.append(Finding(address=self.host_address(host.name), host=host.name, message="not probed"))
            elif not f.reachable:
                self.unknown.append(Finding(address=self.host_address(host.name), host=host.name, message=f"unreachable: {f.reason}"))
            else:
                self.views[host.name] = HostView(f, dict(f.keys))

    # --- helpers -----------------------------------------------------------------------
    def host_address(self, name: str) -> str:
        return f"{self.roles[name]}.{name}"

    def key_address(self, host: str, file: str) -> str:
        return f"{self.host_address(host)}.key[{file}]"

    def find(self, level: str, address: str, message: str, host: str | None = None) -> None:
        {"blocked": self.blocked, "unknown": self.unknown, "notice": self.notices}[level].append(Finding(address=address, host=host, message=message))

    def add(
        self,
        spec: kinds.KindSpec,
        address: str,
        host: Host,
        params: Frozen,
        reason: str,
        *,
        precondition: dict,
        expected: dict,
        depends_on=(),
        replaces: bool = False,
    ) -> _Pending:
        cmd = spec.build(self.state, params)
        action = _Pending(
            kind=spec.name,
            address=address,
            host=host.name,
            params=spec.dump(params),
            depends_on=tuple(sorted(set(depends_on))),
            fields=dict(
                host_address=host.address,
                command=cmd.display,
                reason=reason,
                precondition=precondition,
                facts_fingerprint=fingerprint(precondition),
                expected=expected,
                replaces=replaces,
            ),
        )
        self.actions.append(action)
        return action

    # --- package -----------------------------------------------------------------------
    # --- the cluster (or standalone master) key ------------------------------------------
    # --- members -----------------------------------------------------------------------
    # --- keys ----------------------------------------------------------------------------
    # --- prune ---------------------------------------------------------------------------
    # --- the effects of the actions planned -------------------------------------------------
    def after_dispatch(self, member: Host, owner_view: HostView) -> None:
        """A dispatched member holds the cluster key as its own and a copy of the package
        node's peer keys; every member holds the new member's key [ours: see docs/LAB.md]."""
        assert self.cluster_key is not None
        view = self.views[member.name]
        view.keys = {n: k for n, k in owner_view.keys.items() if n.startswith(dsau.PEER_KEY_PREFIX)}
        view.keys[dsau.OWN_PUBLIC_KEY] = self.cluster_key
        file = dsau.peer_key_name(member.address)
        for other in self.state.members:
            if other.name in self.views:
                self.views[other.name].keys[file] = self.cluster_key.model_copy(update={"name": file})

    # --- prediction -----------------------------------------------------------------------
    def predicted_trust(self) -> TrustReport:
        """The trust matrix of the site as this plan would leave it."""
        for a in self.actions:
            if a.kind == kinds.REMOVE_KEY.name and a.host in self.views:
                self.views[a.host].keys.pop(a.params["file"], None)
        predicted: dict = {name: _Predicted(v.facts, v.keys) for name, v in self.views.items()}
        for f in self.facts.values():
            predicted.setdefault(f.name, f)
        report = trust_report(self.state, predicted, package_node=self.package_node, after=self.decision)
        if any(a.kind == kinds.REGENERATE_KEYS.name for a in self.actions):
            return dataclasses.replace(report, failover_ready=False, reasons=("keys are regenerated: readiness is known after apply",))
        return report

    # --- order ---------------------------------------------------------------------------
    def ordered(self) -> tuple[Action, ...]:
        """Actions in waves: DSAU's flow order first (package, members, ssh trust, keys,
        removals), dependencies second; a wave's actions are independent of each other."""
        by_id = {a.id: a for a in self.actions}
        waves: dict[str, int] = {}

        def wave(a: _Pending) -> int:
            if a.id not in waves:
                deps = [wave(by_id[d]) + 1 for d in a.depends_on if d in by_id]
                waves[a.id] = max([kinds.spec_of(a.kind).phase, *deps])
            return waves[a.id]

        for a in self.actions:
            wave(a)
        dense = {w: i + 1 for i, w in enumerate(sorted(set(waves.values())))}
        order = sorted(self.actions, key=lambda a: (dense[waves[a.id]], kinds.ORDER[a.kind], a.host, a.address))
        return tuple(a.action(dense[waves[a.id]]) for a in order)
