"""Every kind of action csync can plan, each in one place: its spec.

A spec says everything csync knows about its kind: the phase it belongs to (the order of
DSAU's flows), its typed parameters, the remote command built from them, the facts it is
planned from (recorded by the planner, recomputed by apply before it runs: the same
function), the hosts it reads, touches and is verified on, how it is verified, and how a
view shows it. Adding a kind is one new spec here plus its tests; the name of each kind is
written in this module and nowhere else in `reconciler/`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import ValidationError

from reconciler.desired.model import DesiredState
from reconciler.domain.base import Frozen
from reconciler.domain.keys import KeyFile, is_verified_copy, key_problem
from reconciler.domain.package import member_problems
from reconciler.domain.preview import PreviewRequest
from reconciler.domain.serviceguard import PackageView
from reconciler.driver import commands, probeprogram
from reconciler.observe.facts import HostFacts, ProbeProgram

if TYPE_CHECKING:
    from reconciler.plan.artefact import Action

Facts = Mapping[str, HostFacts]
Summary = Literal["start", "halt", "add", "remove", "regenerate", "program"]
P = TypeVar("P", bound=Frozen)


# --- typed parameters ------------------------------------------------------------------------
class PackageParams(Frozen):
    package: str


class StartPackageParams(Frozen):
    package: str
    node: str


class DispatchParams(Frozen):
    member: str


class CopyKeyParams(Frozen):
    file: str
    source: str


class InstallKeyParams(Frozen):
    file: str
    pem: str
    fingerprint: str


class RegenerateParams(Frozen):
    clients: list[str]  # every client the wizard regenerates: declared ones' addresses, then those the master knows besides
    members: list[str]  # the members' addresses, but the node the wizard runs on (its preflight reaches them by root ssh)


class RemoveKeyParams(Frozen):
    file: str


class MirrorKeyParams(Frozen):
    file: str
    source: str


class ProbeProgramParams(Frozen):
    version: int
    digest: str


# --- the facts an action is planned from (recorded by the planner, recomputed by apply) ----
def key_state(key: KeyFile | None) -> dict:
    """The facts about one key file that an action is planned from (no key material)."""
    if key is None:
        return {"present": False}
    return {"present": True, "kind": key.kind, "fingerprint": key.fingerprint, "mode": key.mode}


def key_precondition(file: str, current: KeyFile | None, desired: str | None, source: KeyFile | None = None, source_file: str | None = None) -> dict:
    """copy-key / install-key: the target file as found; for a copy, the source as found."""
    pre: dict[str, Any] = {"file": file, "current": key_state(current), "desired": desired}
    if source_file is not None:
        pre["source"] = {"file": source_file, "fingerprint": source.fingerprint if source and is_verified_copy(source) else None}
    return pre


def package_state(view: PackageView | None) -> dict | None:
    return None if view is None else {"status": view.status, "state": view.state, "owner": view.owner, "autorun": view.autorun}


def package_precondition(view: PackageView | None) -> dict:
    """start-package / enable-switching: the package as Serviceguard shows it."""
    return {"package": package_state(view)}


def dispatch_precondition(member: HostFacts, package_node: str | None, cluster_key: str | None) -> dict:
    """dispatch-member: the member's own key and inputs, who runs the package, the cluster key."""
    return {
        "member": {"own_key": member.own_fingerprint, "inputs_files": member.inputs_count, "package_files": member.package_files},
        "package_node": package_node,
        "cluster_key": cluster_key,
    }


def removal_precondition(file: str, current: KeyFile | None) -> dict:
    return {"file": file, "current": key_state(current)}


def program_state(program: ProbeProgram | None) -> dict | None:
    return None if program is None else {"kind": program.kind, "version": program.version, "digest": program.digest}


def program_precondition(facts: HostFacts) -> dict:
    """install-probe: the probe program as found (the plan identity reports it even when it
    cannot probe; root's probe reads its version line)."""
    return {"program": program_state(facts.probe_program)}


# --- the spec ------------------------------------------------------------------------------
Verdict = tuple[str | None, dict]  # (what is still wrong, or None; the verified facts)


@dataclass(frozen=True)
class KindSpec(Generic[P]):
    name: str
    phase: int  # the DSAU flow an action belongs to: its earliest wave (0 first)
    summary: Summary  # how the plan's summary line counts it
    symbol: tuple[str, str]  # (sign, colour) in views
    params: type[P]
    cluster_op: bool  # starts, halts or reconfigures the package, or dispatches a member: gated in apply
    build: Callable[[DesiredState, P], commands.RemoteCommand]
    precondition_now: Callable[[DesiredState, Action, P, Facts], dict]
    verify: Callable[[DesiredState, Action, P, Facts], Verdict]
    reads: Callable[[DesiredState, Action, P], set[str]] | None = None  # default: the host it runs on
    touches: Callable[[DesiredState, Action, P], set[str]] | None = None
    verified_on: Callable[[DesiredState, Action, P], set[str]] | None = None
    preview: Callable[[Action, P], PreviewRequest] | None = None  # Serviceguard's -t of it (domain/preview.py)

    def typed(self, params: Mapping[str, Any]) -> P:
        """The action's params as this kind's type; raises ValueError naming what is wrong."""
        try:
            return self.params.model_validate(dict(params))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            raise ValueError(f"{self.name} params: {where}: {first['msg']}") from None

    def dump(self, params: P) -> dict:
        return params.model_dump(mode="json")


# --- per-kind behaviour ------------------------------------------------------------------------
def _package_view(here: HostFacts, package: str) -> PackageView | None:
    return here.cluster.packages.get(package) if here.cluster else None


def _package_now(state: DesiredState, a: Action, p: Any, facts: Facts) -> dict:
    return package_precondition(_package_view(facts[a.host], p.package))


def _verify_package(state: DesiredState, a: Action, p: Any, facts: Facts, *, started: bool) -> Verdict:
    here = facts[a.host]
    view = _package_view(here, p.package)
    if view is None:
        return f"Serviceguard on {a.host} does not show package {p.package} ({here.cluster_error or 'no cluster view'})", {}
    seen = {"package": package_state(view)}
    want = a.expected.get("package", {})
    if started and not (view.running and view.owner == want.get("owner")):
        return f"package {view.name} is {view.status}/{view.state} on {view.owner or 'no node'}, not running on {want.get('owner')}", seen
    if view.autorun != "enabled":
        return f"package {view.name} switching (AUTO_RUN) is {view.autorun}, not enabled", seen
    return None, seen


def _verify_halted(state: DesiredState, a: Action, p: StartPackageParams, facts: Facts) -> Verdict:
    here = facts[a.host]
    view = _package_view(here, p.package)
    if view is None:
        return f"Serviceguard on {a.host} does not show package {p.package} ({here.cluster_error or 'no cluster view'})", {}
    seen = {"package": package_state(view)}
    if view.running or view.status == "up":
        return f"package {view.name} is still {view.status}/{view.state} on {view.owner or 'a node'}", seen
    return None, seen


def _cluster_wide(state: DesiredState, a: Action, p: Any) -> set[str]:
    # the package mounts on one node and cmviewcl changes on all; the dispatcher installs
    # the new member's key on every member
    return {m.name for m in state.members} | {a.host}


def _every_host(state: DesiredState, a: Action, p: Any) -> set[str]:
    return {h.name for h in state.all_hosts}


def _dispatch_now(state: DesiredState, a: Action, p: DispatchParams, facts: Facts) -> dict:
    here = facts[a.host]
    view = _package_view(here, state.package.name)
    runs_here = view is not None and view.running and view.owner == a.host
    pkgfs = here.package_fs
    key = pkgfs.cluster_key if runs_here and pkgfs and pkgfs.mounted else None
    return dispatch_precondition(facts[p.member], view.owner if view is not None and view.running else None, key.fingerprint if key and key.usable else None)


def _verify_dispatch(state: DesiredState, a: Action, p: DispatchParams, facts: Facts) -> Verdict:
    member = facts[p.member]
    want = a.expected["member"]
    seen = {"member": {"own_key": member.own_fingerprint, "inputs_files": member.inputs_count, "package_files": member.package_files}}
    problems = member_problems(member.own_fingerprint, member, want["own_key"])
    return (f"{member.name} is still not configured: {' and '.join(problems)}" if problems else None), seen


def _key_now(state: DesiredState, a: Action, p: CopyKeyParams | InstallKeyParams, facts: Facts) -> dict:
    here = facts[a.host]
    source_file = p.source if isinstance(p, CopyKeyParams) else None
    source = here.keys.get(source_file) if source_file else None
    return key_precondition(p.file, here.keys.get(p.file), a.precondition.get("desired"), source, source_file)


def _verify_key(state: DesiredState, a: Action, p: Any, facts: Facts) -> Verdict:
    e = a.expected
    key = facts[a.host].keys.get(e["file"])
    seen = {"file": e["file"], "fingerprint": key.fingerprint if key else None, "mode": f"{key.mode:04o}" if key and key.mode is not None else None}
    problem = key_problem(key, e["fingerprint"])
    return (f"{e['file']} {problem}, not {e['fingerprint']}" if problem else None), seen


def _regenerate_now(state: DesiredState, a: Action, p: RegenerateParams, facts: Facts) -> dict:
    from reconciler.plan.planner import rotation_now

    return rotation_now(state, facts, a.host)


def _verify_regenerated(state: DesiredState, a: Action, p: RegenerateParams, facts: Facts) -> Verdict:
    from reconciler.plan.planner import rotation_problems

    problems, cluster_key = rotation_problems(state, facts, a.expected.get("old_cluster_key"))
    seen = {"cluster_key": cluster_key, "problems": problems[:20]}
    return (f"{len(problems)} problem(s) after the rotation: {'; '.join(problems[:5])}" if problems else None), seen


def _verify_mirrored(state: DesiredState, a: Action, p: MirrorKeyParams, facts: Facts) -> Verdict:
    keys = facts[a.host].keys
    source, target = keys.get(p.source), keys.get(p.file)
    seen = {"file": p.file, "fingerprint": target.fingerprint if target else None, "source": source.fingerprint if source else None}
    if source is None or not is_verified_copy(source):
        return f"{p.source} is {'missing' if source is None else 'not a usable key'}", seen
    problem = key_problem(target, source.fingerprint or "")
    return (f"{p.file} {problem}, not the key of {p.source} ({source.fingerprint})" if problem else None), seen


def _install_probe(state: DesiredState, p: ProbeProgramParams) -> commands.RemoteCommand:
    digest = probeprogram.program_digest(state.platform)
    if (p.version, p.digest) != (probeprogram.PROGRAM_VERSION, digest):
        raise commands.UnsafeValue(
            f"the plan installs probe program version {p.version} ({p.digest}); this csync has version "
            f"{probeprogram.PROGRAM_VERSION} ({digest}) for this site's platform: plan again with this csync"
        )
    return probeprogram.install(state.platform)


def _verify_program(state: DesiredState, a: Action, p: ProbeProgramParams, facts: Facts) -> Verdict:
    found = facts[a.host].probe_program
    seen = {"program": program_state(found)}
    if found is None or found.kind != "file" or (found.version, found.digest) != (p.version, p.digest):
        return f"the probe program is {program_state(found)}, not version {p.version} ({p.digest})", seen
    return None, seen


def _verify_removed(state: DesiredState, a: Action, p: RemoveKeyParams, facts: Facts) -> Verdict:
    present = p.file in facts[a.host].keys
    return (f"{p.file} is still there" if present else None), {"file": p.file, "absent": not present}


START_PACKAGE: KindSpec[StartPackageParams] = KindSpec(
    "start-package",
    0,
    "start",
    ("+", "green"),
    StartPackageParams,
    True,
    build=lambda s, p: commands.start_package(p.package, p.node, serviceguard_path=s.platform.serviceguard_path),
    precondition_now=_package_now,
    verify=lambda s, a, p, f: _verify_package(s, a, p, f, started=True),
    touches=_cluster_wide,
    preview=lambda a, p: PreviewRequest(a.id, "start", p.package, p.node, a.host),
)
ENABLE_SWITCHING: KindSpec[PackageParams] = KindSpec(
    "enable-switching",
    0,
    "start",
    ("~", "yellow"),
    PackageParams,
    True,
    build=lambda s, p: commands.enable_switching(p.package, serviceguard_path=s.platform.serviceguard_path),
    precondition_now=_package_now,
    verify=lambda s, a, p, f: _verify_package(s, a, p, f, started=False),
    touches=_cluster_wide,
    preview=lambda a, p: PreviewRequest(a.id, "enable", p.package, a.host, a.host),
)
HALT_PACKAGE: KindSpec[StartPackageParams] = KindSpec(
    "halt-package",
    0,
    "halt",
    ("-", "red"),
    StartPackageParams,
    True,
    build=lambda s, p: commands.halt_package(p.package, serviceguard_path=s.platform.serviceguard_path),
    precondition_now=_package_now,
    verify=_verify_halted,
    touches=_cluster_wide,
    preview=lambda a, p: PreviewRequest(a.id, "halt", p.package, p.node, a.host),
)
DISPATCH_MEMBER: KindSpec[DispatchParams] = KindSpec(
    "dispatch-member",
    1,
    "start",
    ("+", "green"),
    DispatchParams,
    True,
    build=lambda s, p: commands.dispatch_member(s, p.member),
    precondition_now=_dispatch_now,
    verify=_verify_dispatch,
    reads=lambda s, a, p: {a.host, p.member},
    touches=_cluster_wide,
    verified_on=lambda s, a, p: {p.member},
)
COPY_KEY: KindSpec[CopyKeyParams] = KindSpec(
    "copy-key",
    3,
    "add",
    ("+", "green"),
    CopyKeyParams,
    False,
    build=lambda s, p: commands.copy_key(s, p.source, p.file),
    precondition_now=_key_now,
    verify=_verify_key,
)
INSTALL_KEY: KindSpec[InstallKeyParams] = KindSpec(
    "install-key",
    3,
    "add",
    ("+", "green"),
    InstallKeyParams,
    False,
    build=lambda s, p: commands.install_key(s, p.file, p.pem, p.fingerprint),
    precondition_now=_key_now,
    verify=_verify_key,
)
REGENERATE_KEYS: KindSpec[RegenerateParams] = KindSpec(
    "regenerate-keys",
    3,
    "regenerate",
    ("-/+", "yellow"),
    RegenerateParams,
    False,
    build=lambda s, p: commands.regenerate_keys(s, list(p.clients), list(p.members)),
    precondition_now=_regenerate_now,
    verify=_verify_regenerated,
    reads=_every_host,
    touches=_every_host,
    verified_on=_every_host,
)
# After a rotation: the wizard writes a key under the addresses it knows; the same key goes to
# the names it does not write (extra addresses, host names), copied on the host. Planned from
# names only: the key itself is made by the rotation it follows.
MIRROR_KEY: KindSpec[MirrorKeyParams] = KindSpec(
    "mirror-key",
    3,
    "add",
    ("~", "yellow"),
    MirrorKeyParams,
    False,
    build=lambda s, p: commands.copy_key(s, p.source, p.file),
    precondition_now=lambda s, a, p, f: {"file": p.file, "source": p.source, "after": "the rotation"},
    verify=_verify_mirrored,
)
REMOVE_KEY: KindSpec[RemoveKeyParams] = KindSpec(
    "remove-key",
    4,
    "remove",
    ("-", "red"),
    RemoveKeyParams,
    False,
    build=lambda s, p: commands.remove_key(s, p.file),
    precondition_now=lambda s, a, p, f: removal_precondition(p.file, f[a.host].keys.get(p.file)),
    verify=_verify_removed,
)
# csync's own probe program (the plan identity's forced command), not a DSAU flow: first, so
# that the next plan made with the plan identity can read the host whatever else fails.
INSTALL_PROBE: KindSpec[ProbeProgramParams] = KindSpec(
    "install-probe",
    0,
    "program",
    ("~", "cyan"),
    ProbeProgramParams,
    False,
    build=_install_probe,
    precondition_now=lambda s, a, p, f: program_precondition(f[a.host]),
    verify=_verify_program,
)

# In the order of DSAU's flows: within a wave, actions are listed in this order.
KINDS: dict[str, KindSpec[Any]] = {
    k.name: k
    for k in (
        INSTALL_PROBE,
        START_PACKAGE,
        HALT_PACKAGE,
        ENABLE_SWITCHING,
        DISPATCH_MEMBER,
        COPY_KEY,
        INSTALL_KEY,
        REGENERATE_KEYS,
        MIRROR_KEY,
        REMOVE_KEY,
    )
}
ORDER: dict[str, int] = {name: i for i, name in enumerate(KINDS)}


def spec_of(kind: str) -> KindSpec[Any]:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown action kind {kind!r} (csync knows {', '.join(KINDS)})") from None


# --- what apply asks of an action, through its spec ----------------------------------------------
def script_for(state: DesiredState, action: Action) -> commands.RemoteCommand:
    """The command of ``action``, rebuilt by the driver from its typed params (the plan's
    `command` is only its display form, and must match)."""
    spec = spec_of(action.kind)
    return spec.build(state, spec.typed(action.params))


def precondition_hosts(state: DesiredState, action: Action) -> set[str]:
    """The hosts whose facts `precondition_now` reads for ``action``."""
    spec = spec_of(action.kind)
    return spec.reads(state, action, spec.typed(action.params)) if spec.reads else {action.host}


def precondition_now(state: DesiredState, action: Action, facts: Facts) -> dict:
    """The precondition of ``action`` computed from fresh ``facts`` with the functions the
    planner used to record it; apply compares the two fingerprints before running it.
    ``facts`` must hold every host of `precondition_hosts`. What the plan decided rather than
    observed (the key a file should hold) is taken from the action itself."""
    spec = spec_of(action.kind)
    return spec.precondition_now(state, action, spec.typed(action.params), facts)


def touched_hosts(state: DesiredState, action: Action) -> set[str]:
    """Hosts whose facts an action may change (their earlier probes are then out of date)."""
    spec = spec_of(action.kind)
    return spec.touches(state, action, spec.typed(action.params)) if spec.touches else {action.host}


def verify_hosts(state: DesiredState, action: Action) -> set[str]:
    """Hosts whose fresh facts show whether an action did its job."""
    spec = spec_of(action.kind)
    return spec.verified_on(state, action, spec.typed(action.params)) if spec.verified_on else {action.host}


def verify(state: DesiredState, action: Action, facts: Facts) -> Verdict:
    """(what is still wrong or None, the verified facts) for an action that ran, from fresh
    facts of `verify_hosts`. Never includes key material."""
    for name in sorted(verify_hosts(state, action)):
        f = facts.get(name)
        if f is None or not f.reachable:
            return f"cannot verify: {name} is unreachable ({f.reason if f else 'not probed'})", {}
    spec = spec_of(action.kind)
    return spec.verify(state, action, spec.typed(action.params), facts)


def preview_request(action: Action) -> PreviewRequest | None:
    """What Serviceguard's -t preview of ``action`` is, or None for a kind it cannot preview."""
    spec = spec_of(action.kind)
    return spec.preview(action, spec.typed(action.params)) if spec.preview else None
