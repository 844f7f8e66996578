"""Pair the desired state with the facts and derive the ordered plan. Pure: no I/O.

The planner walks the phases of DSAU's flows in order (package, members, ssh trust, keys,
removals). Each phase pairs what is declared with what its hosts will hold *when that phase
runs*: the facts as probed, updated by the effects of the actions already planned (a
started package mounts its filesystem; a dispatched member holds the cluster key and the
keys of the node that dispatched it). So an action's precondition is the state it will
meet, which apply re-checks on the host before running it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.desired.model import DesiredState, Host
from reconciler.domain import dsau
from reconciler.domain.base import Frozen
from reconciler.domain.keys import (
    KeyFile,
    is_verified_copy,
    key_problem,
    own_fingerprint,
    peer_address,
)
from reconciler.domain.package import decide_package, infer_cluster_key
from reconciler.observe.facts import HostFacts, KeyStoreReader
from reconciler.plan import kinds
from reconciler.plan.artefact import Action, Finding, Plan, fingerprint
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
class _HostView:
    """A host as it will be when a phase runs (starts as probed)."""

    facts: HostFacts
    keys: dict[str, KeyFile]
    planned: set[str] = field(default_factory=set)  # files written by this plan's key phase

    def cluster_key_copies(self, fp: str) -> list[str]:
        """Peer key files on this host that verifiably hold the key ``fp``."""
        return sorted(
            n for n, k in self.keys.items()
            if n not in self.planned and n.startswith(dsau.PEER_KEY_PREFIX) and k.fingerprint == fp and is_verified_copy(k)
        )

    @property
    def own(self) -> str | None:
        return own_fingerprint(self.keys)


@dataclass
class _Builder:
    state: DesiredState
    facts: Mapping[str, HostFacts]
    actions: list[_Pending] = field(default_factory=list)
    blocked: list[Finding] = field(default_factory=list)
    unknown: list[Finding] = field(default_factory=list)
    notices: list[Finding] = field(default_factory=list)
    views: dict[str, _HostView] = field(default_factory=dict)
    cluster_key: KeyFile | None = None
    cluster_key_source: str | None = None
    cluster_key_inferred: bool = False  # read from the members' own keys, not the package filesystem
    master_inputs: str | None = None
    package_node: str | None = None
    package_action: str | None = None  # id of start-package, when planned
    _client_keys: dict[str, KeyFile] = field(default_factory=dict)  # fingerprint -> a client's own key
    roles: dict[str, str] = field(default_factory=dict)  # host name -> member | master | client
    _desired: dict | None = None
    dispatched: dict[str, str] = field(default_factory=dict)  # member -> dispatch action id

    def __post_init__(self) -> None:
        master_role = "member" if self.state.is_cluster else "master"
        self.roles = {h.name: master_role for h in self.state.master_hosts}
        self.roles.update({c.name: "client" for c in self.state.clients})
        for host in self.state.all_hosts:
            f = self.facts.get(host.name)
            if f is None:
                self.unknown.append(Finding(address=self._host_address(host.name), host=host.name, message="not probed"))
            elif not f.reachable:
                self.unknown.append(Finding(address=self._host_address(host.name), host=host.name, message=f"unreachable: {f.reason}"))
            else:
                self.views[host.name] = _HostView(f, dict(f.keys))

    # --- helpers -----------------------------------------------------------------------
    def _host_address(self, name: str) -> str:
        return f"{self.roles[name]}.{name}"

    def _key_address(self, host: str, file: str) -> str:
        return f"{self._host_address(host)}.key[{file}]"

    def _add(self, spec: kinds.KindSpec, address: str, host: Host, params: Frozen, reason: str, *, precondition: dict, expected: dict,
             depends_on=(), replaces: bool = False) -> _Pending:
        cmd = spec.build(self.state, params)
        action = _Pending(kind=spec.name, address=address, host=host.name, params=spec.dump(params), depends_on=tuple(sorted(set(depends_on))), fields=dict(
            host_address=host.address,
            command=cmd.display,
            reason=reason,
            precondition=precondition,
            facts_fingerprint=fingerprint(precondition),
            expected=expected,
            replaces=replaces,
        ))
        self.actions.append(action)
        return action

    # --- package -----------------------------------------------------------------------
    def plan_package(self) -> None:
        pkg = self.state.master.package
        address = f"package.{pkg.name}"
        d = decide_package(self.state, {name: v.facts for name, v in self.views.items()})
        for note in d.notes:
            {"blocked": self.blocked, "unknown": self.unknown, "notice": self.notices}[note.level].append(
                Finding(address=note.address, host=note.host, message=note.message))
        self.package_node = d.node
        if d.view is None or d.node is None:
            return
        precondition = kinds.package_precondition(d.view)
        node = self.state.host(d.node) if d.node in self.views else None
        if d.enable_switching and node is not None:
            self._add(kinds.ENABLE_SWITCHING, address, node, kinds.PackageParams(package=pkg.name), d.why,
                      precondition=precondition, expected={"package": {"autorun": "enabled"}})
        if d.start:
            action = self._add(kinds.START_PACKAGE, address, self.state.host(d.node), kinds.StartPackageParams(package=pkg.name, node=d.node),
                               d.why, precondition=precondition,
                               expected={"package": {"owner": d.node, "running": True, "autorun": "enabled"}})
            self.package_action = action.id

    # --- the cluster (or standalone master) key ------------------------------------------
    def determine_cluster_key(self) -> None:
        if not self.state.is_cluster:
            master = self.state.master.host
            view = self.views.get(master.name)
            if view is None:
                return
            key = view.keys.get(dsau.OWN_PUBLIC_KEY)
            if key and key.usable:
                self.cluster_key, self.cluster_key_source = key, f"the own key of master {master.name}"
            else:
                self.blocked.append(Finding(address=f"master.{master.name}", host=master.name, message=f"master {master.name} has no usable {dsau.OWN_PUBLIC_KEY}: {key.problem if key else 'missing'}; run cfkey there"))
            mf = view.facts.master_files
            self.master_inputs = mf.inputs_digest if mf else None
            return
        owner = self.views.get(self.package_node or "")
        pkgfs = owner.facts.package_fs if owner else None
        if pkgfs and pkgfs.mounted:
            if pkgfs.cluster_key and pkgfs.cluster_key.usable:
                self.cluster_key = pkgfs.cluster_key
                self.cluster_key_source = f"the package filesystem on {self.package_node}"
            self.master_inputs = pkgfs.inputs_digest
            if self.cluster_key is None:
                self.blocked.append(Finding(address=f"package.{self.state.master.package.name}", host=self.package_node, message=f"the package filesystem on {self.package_node} holds no usable cluster key ({dsau.PACKAGE_CLUSTER_KEY_DIR}/{dsau.OWN_PUBLIC_KEY})"))
            return
        # Package down: the members that were configured hold the cluster key as their own.
        fp, holders = infer_cluster_key(self.state, {m.name: v.own for m in self.state.members if (v := self.views.get(m.name))})
        if fp is not None:
            self.cluster_key = self.views[holders[0]].keys[dsau.OWN_PUBLIC_KEY]
            self.cluster_key_inferred = True
            self.cluster_key_source = f"the own key of {', '.join(holders)} (the package filesystem is not mounted)"
        else:
            self.blocked.append(Finding(address="site.keys", message="cannot tell the cluster key: the package filesystem is not mounted and the members do not agree on one key; start the package and plan again"))

    # --- members -----------------------------------------------------------------------
    def plan_members(self) -> None:
        if self.cluster_key is None or self.package_node is None:
            return
        blocked_members = {f.address for f in self.blocked}
        owner = self.state.host(self.package_node)
        owner_view = self.views.get(owner.name)
        for m in self.state.members:
            address = f"member.{m.name}"
            view = self.views.get(m.name)
            if view is None or address in blocked_members:
                continue
            problems = []
            if view.own != self.cluster_key.fingerprint:
                problems.append("does not hold the cluster key as its own key" if view.own else f"has no usable {dsau.OWN_PUBLIC_KEY}")
            if self.master_inputs is not None and view.facts.inputs_digest != self.master_inputs:
                problems.append("its inputs differ from the master's" if view.facts.inputs_digest else "has no inputs")
            if not problems:
                continue
            if m.name == owner.name:
                self.blocked.append(Finding(address=address, host=m.name, message=f"{m.name} runs the package but {' and '.join(problems)}; fix it by hand or move the package"))
                continue
            if owner_view is None:
                self.unknown.append(Finding(address=address, host=m.name, message=f"needs dispatching, but {owner.name}, which runs the package, is unreachable"))
                continue
            precondition = kinds.dispatch_precondition(view.facts, owner.name, self.cluster_key.fingerprint)
            action = self._add(
                kinds.DISPATCH_MEMBER, address, owner, kinds.DispatchParams(member=m.name),
                f"{m.name} {' and '.join(problems)} (not configured as an adoptive node)",
                precondition=precondition,
                expected={"member": {"own_key": self.cluster_key.fingerprint, "inputs": self.master_inputs}},
                depends_on=[self.package_action] if self.package_action else [],
            )
            self.dispatched[m.name] = action.id
            # The dispatcher copies the package node's key store and installs the new
            # member's key on every member [ours: see docs/LAB.md].
            view.keys = {n: k for n, k in owner_view.keys.items() if n.startswith(dsau.PEER_KEY_PREFIX)}
            view.keys[dsau.OWN_PUBLIC_KEY] = self.cluster_key
            for other in self.state.members:
                if other.name in self.views:
                    self.views[other.name].keys[dsau.peer_key_name(m.address)] = self.cluster_key.model_copy(update={"name": dsau.peer_key_name(m.address)})

    # --- keys ----------------------------------------------------------------------------
    def desired_keys(self) -> dict[str, dict[str, tuple[str | None, str]]]:
        """host -> file -> (desired fingerprint or None when unknown, whose key it is).

        Computed once, after the member phase (it reads the members' predicted state)."""
        if self._desired is None:
            self._desired = self._desired_keys()
        return self._desired

    def _desired_keys(self) -> dict[str, dict[str, tuple[str | None, str]]]:
        s = self.state
        ck = self.cluster_key.fingerprint if self.cluster_key else None
        master_addresses = [h.address for h in s.master_hosts]
        own_name = "the cluster key" if s.is_cluster else f"the key of master {s.master.host.name}"
        server = s.master.package.address if s.is_cluster else s.master.host.address
        want: dict[str, dict[str, tuple[str | None, str]]] = {}
        client_files = {}
        for c in s.clients:
            cv = self.views.get(c.name)
            client_files[dsau.peer_key_name(c.address)] = (cv.own if cv else None, f"the key of client {c.name}")
        for c in s.clients:
            files = {dsau.peer_key_name(server): (ck, own_name)}
            if s.keys.cfrun == "all-members":
                files.update({dsau.peer_key_name(a): (ck, own_name) for a in master_addresses})
            want[c.name] = files
        for m in s.master_hosts:
            files = {}
            if s.is_cluster:
                files[dsau.peer_key_name(server)] = (ck, own_name)
                files.update({dsau.peer_key_name(a): (ck, own_name) for a in master_addresses})
            files.update(client_files)
            want[m.name] = files
        return want

    def key_source(self, fp: str) -> KeyFile | None:
        """Where the content of a key to install comes from: the cluster key, or a client's own."""
        if self.cluster_key and fp == self.cluster_key.fingerprint:
            return self.cluster_key
        return self._client_keys.get(fp)

    def plan_keys(self) -> None:
        if self.state.keys.distribution == "regenerate":
            self.plan_regenerate()
            return
        want = self.desired_keys()
        self._client_keys = {v.own: v.keys[dsau.OWN_PUBLIC_KEY] for c in self.state.clients if (v := self.views.get(c.name)) and v.own}
        for host in self.state.all_hosts:
            view = self.views.get(host.name)
            if view is None:
                continue
            if self.key_store_refused(host, view):
                continue
            for file, (fp, whose) in sorted(want[host.name].items()):
                current = view.keys.get(file)
                if fp is None:
                    if whose.startswith("the key of client") or self.cluster_key is None:
                        self.unknown.append(Finding(address=self._key_address(host.name, file), host=host.name, message=f"should hold {whose}, which is unknown ({'client unreachable or without a key' if whose.startswith('the key of client') else 'cluster key unknown'})"))
                    continue
                problem = self.key_problem(current, fp)
                if problem is None:
                    continue
                self.plan_key_fix(host, view, file, fp, whose, current, problem, self._key_address(host.name, file))

    key_problem = staticmethod(key_problem)

    def key_store_refused(self, host: Host, view: _HostView) -> bool:
        """A ppkeys that exists but is not a directory (a symbolic link, a file) is neither
        read nor written through (commands refuse it): blocked, with what to do, rather than
        planning key actions that can only fail."""
        kind = view.facts.ppkeys_dir
        if kind not in ("symlink", "file", "other"):
            return False
        what = {"symlink": "a symbolic link", "file": "a file", "other": "not a directory"}[kind]
        self.blocked.append(Finding(
            address=self._host_address(host.name), host=host.name,
            message=f"{self.state.paths.cfengine_dir}/{dsau.PPKEYS_SUBDIR} is {what}; csync neither reads nor writes keys through it: "
                    f"make it a directory (mode 700) holding the keys, then plan again",
        ))
        return True

    def plan_key_fix(self, host: Host, view: _HostView, file: str, fp: str, whose: str, current: KeyFile | None, problem: str, address: str) -> None:
        depends = []
        if host.name in self.dispatched:
            depends.append(self.dispatched[host.name])
        if self.package_action and self.cluster_key and fp == self.cluster_key.fingerprint and self.cluster_key_inferred:
            # the key was inferred while the package is down: confirm it by starting first
            depends.append(self.package_action)
        replaces = current is not None
        reason = f"{file} {problem}; should hold {whose} ({fp})"
        # A verified copy already on the host (checked by content, never by name), as the
        # manual does for the cluster key; other keys are installed from their source.
        source = None
        if self.cluster_key and fp == self.cluster_key.fingerprint:
            source = next((n for n in view.cluster_key_copies(fp) if n != file), None)
        if source is not None:
            precondition = kinds.key_precondition(file, current, fp, view.keys[source], source)
            self._add(kinds.COPY_KEY, address, host, kinds.CopyKeyParams(file=file, source=source), reason,
                      precondition=precondition,
                      expected={"file": file, "fingerprint": fp}, depends_on=depends, replaces=replaces)
        else:
            precondition = kinds.key_precondition(file, current, fp)
            key = self.key_source(fp)
            if key is None or not key.pem:
                self.unknown.append(Finding(address=address, host=host.name, message=f"{reason}, but csync has no copy of that key to install"))
                return
            self._add(kinds.INSTALL_KEY, address, host, kinds.InstallKeyParams(file=file, pem=key.pem, fingerprint=fp), reason,
                      precondition=precondition,
                      expected={"file": file, "fingerprint": fp}, depends_on=depends, replaces=replaces)
        view.keys[file] = KeyFile(name=file, fingerprint=fp, mode=dsau.KEY_FILE_MODE)
        view.planned.add(file)

    def regeneration_drift(self) -> list[str]:
        """Addresses of the key files that differ from what they should hold."""
        want = self.desired_keys()
        drift = []
        for host in self.state.all_hosts:
            view = self.views.get(host.name)
            if view is None:
                continue
            for file, (fp, _) in sorted(want[host.name].items()):
                if fp is None or self.key_problem(view.keys.get(file), fp):
                    drift.append(self._key_address(host.name, file))
        return drift

    def plan_regenerate(self) -> None:
        s = self.state
        drift = self.regeneration_drift()
        if not drift:
            return
        unreachable = [c.name for c in s.clients if c.name not in self.views]
        runner = self.state.host(self.package_node) if s.is_cluster and self.package_node else (s.master.host if not s.is_cluster else None)
        address = "site.keys"
        if unreachable:
            self.blocked.append(Finding(address=address, message=f"key regeneration needs every client reachable; unreachable: {', '.join(unreachable)}"))
            return
        if runner is None or runner.name not in self.views:
            self.blocked.append(Finding(address=address, message="key regeneration needs the master (the node running the package) reachable"))
            return
        master_keys = {k.fingerprint: k for h in s.master_hosts if h.name in self.views for k in self.views[h.name].facts.ssh_public_keys}
        depends = [d for d in [self.package_action, *self.dispatched.values()] if d]
        if not master_keys:
            self.blocked.append(Finding(address=address, message="key regeneration needs root ssh from the master to every client, but no master host has a root ssh key"))
            return
        for c in s.clients:
            missing = sorted(fp for fp in master_keys if fp not in self.views[c.name].facts.ssh_authorized)
            if missing:
                lines = [master_keys[fp].line for fp in missing]
                action = self._add(kinds.AUTHORIZE_SSH, f"client.{c.name}.ssh", c, kinds.AuthorizeSshParams(lines=lines),
                                   f"root on {c.name} does not accept ssh from the master's key(s) {', '.join(missing)} (key regeneration needs it)",
                                   precondition=kinds.authorized_precondition(self.views[c.name].facts),
                                   expected={"authorized": missing})
                depends.append(action.id)
        addresses = [c.address for c in s.clients]
        self._add(kinds.REGENERATE_KEYS, address, runner, kinds.RegenerateParams(clients=addresses),
                  f"{len(drift)} key file(s) differ ({', '.join(drift[:3])}{', ...' if len(drift) > 3 else ''}); distribution is 'regenerate'",
                  precondition={"drift": drift, "cluster_key": self.cluster_key.fingerprint if self.cluster_key else None},
                  expected={"consistent": True}, depends_on=depends)

    # --- prune ---------------------------------------------------------------------------
    def plan_prune(self) -> None:
        s = self.state
        want = self.desired_keys()
        inventory = self.inventory()
        ck = self.cluster_key.fingerprint if self.cluster_key else None
        for host in s.all_hosts:
            view = self.views.get(host.name)
            if view is None:
                continue
            for file, key in sorted(view.keys.items()):
                ip = peer_address(file)
                if ip is None or file in want[host.name]:
                    continue
                address = self._key_address(host.name, file)
                managed = ip in inventory or (ck is not None and key.fingerprint == ck)
                if not s.keys.prune:
                    continue
                if not managed:
                    self.notices.append(Finding(address=address, host=host.name, message=f"{file} is for an address not declared, and csync cannot prove it manages it; left alone"))
                    continue
                why = "in the site's inventory" if ip in inventory else "holds the cluster key"
                self._add(kinds.REMOVE_KEY, address, host, kinds.RemoveKeyParams(file=file),
                          f"{ip} is no longer declared ({why})",
                          precondition=kinds.removal_precondition(file, key), expected={"file": file, "absent": True})

    def inventory(self) -> set[str]:
        if self.state.is_cluster:
            v = self.views.get(self.package_node or "")
            pkgfs = v.facts.package_fs if v else None
            return set(pkgfs.inventory or ()) if pkgfs else set()
        v = self.views.get(self.state.master.host.name)
        mf = v.facts.master_files if v else None
        return set(mf.inventory or ()) if mf else set()

    # --- prediction -----------------------------------------------------------------------
    def predicted_trust(self) -> TrustReport:
        """The trust matrix of the site as this plan would leave it."""
        for a in self.actions:
            if a.kind == kinds.REMOVE_KEY.name and a.host in self.views:
                self.views[a.host].keys.pop(a.params["file"], None)
        predicted: dict = {name: _Predicted(v.facts, v.keys) for name, v in self.views.items()}
        for f in self.facts.values():
            predicted.setdefault(f.name, f)
        report = trust_report(self.state, predicted, package_node=self.package_node)
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


def _through_members(state: DesiredState, facts: Mapping[str, HostFacts]) -> _Builder:
    """The builder after the package and member phases (the key phase comes next)."""
    b = _Builder(state, facts)
    if state.is_cluster:
        b.plan_package()
    b.determine_cluster_key()
    if state.is_cluster:
        b.plan_members()
    return b


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
    b = _through_members(state, facts)
    b.plan_keys()
    b.plan_prune()
    key = lambda f: (f.address, f.host or "", f.message)  # noqa: E731
    after = b.predicted_trust()
    return Plan(
        site=state.site,
        desired_state_digest=state.digest(),
        git_commit=git_commit,
        cluster_key=b.cluster_key.fingerprint if b.cluster_key else None,
        cluster_key_source=b.cluster_key_source,
        package_node=b.package_node,
        actions=b.ordered(),
        blocked=tuple(sorted(b.blocked, key=key)),
        unknown=tuple(sorted(b.unknown, key=key)),
        notices=tuple(sorted(b.notices, key=key)),
        failover_ready_after=after.failover_ready,
        failover_notes=after.reasons,
    )


def regeneration_drift(state: DesiredState, facts: Mapping[str, HostFacts]) -> tuple[list[str], str | None]:
    """(key files that differ, cluster key) as the regenerate phase sees them."""
    b = _through_members(state, facts)
    return b.regeneration_drift(), b.cluster_key.fingerprint if b.cluster_key else None
