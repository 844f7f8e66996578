"""The planner's phases, in DSAU's order: the package, the cluster key, the members, the keys
(copy/install, or the wizard's regeneration), the removals. Each is a function over the
`PredictedSite`: it reads the site as the earlier phases leave it and plans into it.
"""

from __future__ import annotations

from reconciler.desired.model import Host
from reconciler.domain import dsau
from reconciler.domain.keys import KeyFile, key_problem, peer_address
from reconciler.domain.package import decide_package, infer_cluster_key, inputs_lag, member_problems
from reconciler.driver.probeprogram import PROGRAM_VERSION, program_digest
from reconciler.plan import kinds
from reconciler.plan.artefact import Finding
from reconciler.plan.site import HostView, PredictedSite

# --- package -----------------------------------------------------------------------------


def plan_package(site: PredictedSite) -> None:
    pkg = site.state.package
    address = f"package.{pkg.name}"
    d = decide_package(site.state, {name: v.facts for name, v in site.views.items()})
    site.decision = d
    for note in d.notes:
        site.find(note.level, note.address, note.message, note.host)
    site.package_node = d.node
    if d.view is None:
        return
    precondition = kinds.package_precondition(d.view)
    if d.halt and d.owner in site.views:
        site.add(kinds.HALT_PACKAGE, address, site.state.host(d.owner), kinds.StartPackageParams(package=pkg.name, node=d.owner),
                 d.why, precondition=precondition, expected={"package": {"running": False}})
    if d.node is None:
        return
    if d.enable_switching and d.node in site.views:
        site.add(kinds.ENABLE_SWITCHING, address, site.state.host(d.node), kinds.PackageParams(package=pkg.name), d.why,
                 precondition=precondition, expected={"package": {"autorun": "enabled"}})
    if d.start:
        action = site.add(kinds.START_PACKAGE, address, site.state.host(d.node), kinds.StartPackageParams(package=pkg.name, node=d.node),
                          d.why, precondition=precondition,
                          expected={"package": {"owner": d.node, "running": True, "autorun": "enabled"}})
        site.package_action = action.id


def determine_cluster_key(site: PredictedSite) -> None:
    if not site.state.is_cluster:
        master = site.state.standalone_host
        view = site.views.get(master.name)
        if view is None:
            return
        key = view.keys.get(dsau.OWN_PUBLIC_KEY)
        if key and key.usable:
            site.cluster_key, site.cluster_key_source = key, f"the own key of master {master.name}"
        else:
            site.blocked.append(Finding(address=f"master.{master.name}", host=master.name, message=f"master {master.name} has no usable {dsau.OWN_PUBLIC_KEY}: {key.problem if key else 'missing'}; run cfkey there"))
        mf = view.facts.master_files
        site.master_inputs = mf.inputs_digest if mf else None
        return
    # The package filesystem, where the package runs now (also when it is about to be halted).
    d = site.decision
    holder = d.owner if d is not None and d.running else None
    owner = site.views.get(holder or "")
    pkgfs = owner.facts.package_fs if owner else None
    if pkgfs and pkgfs.mounted:
        if pkgfs.cluster_key and pkgfs.cluster_key.usable:
            site.cluster_key = pkgfs.cluster_key
            site.cluster_key_source = f"the package filesystem on {holder}"
        site.master_inputs = pkgfs.inputs_digest
        site.master_inputs_sums = pkgfs.inputs_sums
        if site.cluster_key is None:
            site.blocked.append(Finding(address=f"package.{site.state.package.name}", host=holder, message=f"the package filesystem on {holder} holds no usable cluster key ({dsau.PACKAGE_CLUSTER_KEY_DIR}/{dsau.OWN_PUBLIC_KEY})"))
        return
    # Package down (or its filesystem out of reach): the members that were configured hold
    # the cluster key as their own. That key is unconfirmed: only a start planned here
    # confirms it (apply reads the package filesystem before any key action).
    fp, holders = infer_cluster_key(site.state, {m.name: v.own for m in site.state.members if (v := site.views.get(m.name))})
    if fp is not None:
        site.cluster_key = site.views[holders[0]].keys[dsau.OWN_PUBLIC_KEY]
        site.cluster_key_inferred = True
        site.cluster_key_source = f"the own key of {', '.join(holders)} (the package filesystem is not mounted)"
    else:
        site.blocked.append(Finding(address="site.keys", message="cannot tell the cluster key: the package filesystem is not mounted and the members do not agree on one key; start the package and plan again"))


# --- members -----------------------------------------------------------------------------


def plan_members(site: PredictedSite) -> None:
    """Dispatch (csync_dispatcher MEMBER_ADDED) only a member that is not configured; a member
    whose inputs merely differ from the master's is a notice: they lag the master until
    cfagent's next run, and differ for good where update.conf excludes files."""
    if site.cluster_key is None:
        return
    ck = site.cluster_key.fingerprint
    blocked_members = {f.address for f in site.blocked}
    owner = site.state.host(site.package_node) if site.package_node else None
    owner_view = site.views.get(owner.name) if owner else None
    for m in site.state.members:
        address = f"member.{m.name}"
        view = site.views.get(m.name)
        if view is None or address in blocked_members:
            continue
        problems = member_problems(view.own, view.facts, ck)
        if not problems:
            lag = inputs_lag(view.facts.inputs_sums, site.master_inputs_sums)
            if lag:
                site.notices.append(Finding(address=address, host=m.name, message=f"{m.name}'s inputs differ from the master's ({lag}): "
                                            f"they lag until cfagent's next run, or update.conf excludes them; not an action"))
            continue
        what = " and ".join(problems)
        if owner is None or site.decision is None or not site.decision.runs_after:
            site.notices.append(Finding(address=address, host=m.name, message=f"{m.name} is not configured ({what}); dispatching it "
                                        f"waits for the package to run on a declared member (state: {site.state.package.state})"))
            continue
        if m.name == owner.name:
            site.blocked.append(Finding(address=address, host=m.name, message=f"{m.name} runs the package but {what}; fix it by hand or move the package"))
            continue
        if owner_view is None:
            site.unknown.append(Finding(address=address, host=m.name, message=f"needs dispatching, but {owner.name}, which runs the package, is unreachable"))
            continue
        precondition = kinds.dispatch_precondition(view.facts, owner.name, ck)
        action = site.add(
            kinds.DISPATCH_MEMBER, address, owner, kinds.DispatchParams(member=m.name),
            f"{m.name} {what} (not configured as an adoptive node)",
            precondition=precondition,
            expected={"member": {"own_key": ck, "configured": True}},
            depends_on=[site.package_action] if site.package_action else [],
        )
        site.dispatched[m.name] = action.id
        site.after_dispatch(m, owner_view)


# --- keys --------------------------------------------------------------------------------


def desired_keys(site: PredictedSite) -> dict[str, dict[str, tuple[str | None, str]]]:
    """host -> file -> (desired fingerprint or None when unknown, whose key it is).

    Computed once, after the member phase (it reads the members' predicted state)."""
    if site.desired_cache is None:
        site.desired_cache = compute_desired_keys(site)
    return site.desired_cache


def compute_desired_keys(site: PredictedSite) -> dict[str, dict[str, tuple[str | None, str]]]:
    s = site.state
    ck = site.cluster_key.fingerprint if site.cluster_key else None
    master_addresses = [h.address for h in s.master_hosts]
    own_name = "the cluster key" if s.is_cluster else f"the key of master {s.standalone_host.name}"
    server = s.package.address if s.is_cluster else s.standalone_host.address
    want: dict[str, dict[str, tuple[str | None, str]]] = {}
    client_files = {}
    for c in s.clients:
        cv = site.views.get(c.name)
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

def key_source(site: PredictedSite, fp: str) -> KeyFile | None:
    """Where the content of a key to install comes from: the cluster key, or a client's own."""
    if site.cluster_key and fp == site.cluster_key.fingerprint:
        return site.cluster_key
    return site.client_keys.get(fp)

def plan_keys(site: PredictedSite) -> None:
    if site.state.keys.distribution == "regenerate":
        plan_regenerate(site)
        return
    want = desired_keys(site)
    site.client_keys = {v.own: v.keys[dsau.OWN_PUBLIC_KEY] for c in site.state.clients if (v := site.views.get(c.name)) and v.own}
    for host in site.state.all_hosts:
        view = site.views.get(host.name)
        if view is None:
            continue
        if key_store_refused(site, host, view):
            continue
        for file, (fp, whose) in sorted(want[host.name].items()):
            current = view.keys.get(file)
            if fp is None:
                if whose.startswith("the key of client") or site.cluster_key is None:
                    site.unknown.append(Finding(address=site.key_address(host.name, file), host=host.name, message=f"should hold {whose}, which is unknown ({'client unreachable or without a key' if whose.startswith('the key of client') else 'cluster key unknown'})"))
                continue
            problem = key_problem(current, fp)
            if problem is None:
                continue
            address = site.key_address(host.name, file)
            if site.cluster_key_inferred and not site.package_action and site.cluster_key and fp == site.cluster_key.fingerprint:
                # Never spread a key read from the members' own keys: only the package
                # filesystem confirms the cluster key, and this plan does not start it.
                site.notices.append(Finding(address=address, host=host.name, message=(
                    f"{file} {problem}; it should hold the cluster key, which waits for the package to run "
                    f"(state: {site.state.package.state}): csync writes the cluster key only once the package filesystem confirms it")))
                continue
            plan_key_fix(site, host, view, file, fp, whose, current, problem, address)

def key_store_refused(site: PredictedSite, host: Host, view: HostView) -> bool:
    """A ppkeys that exists but is not a directory (a symbolic link, a file) is neither
    read nor written through (commands refuse it): blocked, with what to do, rather than
    planning key actions that can only fail."""
    kind = view.facts.ppkeys_dir
    if kind not in ("symlink", "file", "other"):
        return False
    what = {"symlink": "a symbolic link", "file": "a file", "other": "not a directory"}[kind]
    site.blocked.append(Finding(
        address=site.host_address(host.name), host=host.name,
        message=f"{site.state.paths.cfengine_dir}/{dsau.PPKEYS_SUBDIR} is {what}; csync neither reads nor writes keys through it: "
                f"make it a directory (mode 700) holding the keys, then plan again",
    ))
    return True

def plan_key_fix(site: PredictedSite, host: Host, view: HostView, file: str, fp: str, whose: str, current: KeyFile | None, problem: str, address: str) -> None:
    depends = []
    if host.name in site.dispatched:
        depends.append(site.dispatched[host.name])
    if site.package_action and site.cluster_key and fp == site.cluster_key.fingerprint and site.cluster_key_inferred:
        # the key was inferred while the package is down: confirm it by starting first
        depends.append(site.package_action)
    replaces = current is not None
    reason = f"{file} {problem}; should hold {whose} ({fp})"
    # A verified copy already on the host (checked by content, never by name), as the
    # manual does for the cluster key; other keys are installed from their source.
    source = None
    if site.cluster_key and fp == site.cluster_key.fingerprint:
        source = next((n for n in view.cluster_key_copies(fp) if n != file), None)
    if source is not None:
        precondition = kinds.key_precondition(file, current, fp, view.keys[source], source)
        site.add(kinds.COPY_KEY, address, host, kinds.CopyKeyParams(file=file, source=source), reason,
                  precondition=precondition,
                  expected={"file": file, "fingerprint": fp}, depends_on=depends, replaces=replaces)
    else:
        precondition = kinds.key_precondition(file, current, fp)
        key = key_source(site, fp)
        if key is None or not key.pem:
            site.unknown.append(Finding(address=address, host=host.name, message=f"{reason}, but csync has no copy of that key to install"))
            return
        site.add(kinds.INSTALL_KEY, address, host, kinds.InstallKeyParams(file=file, pem=key.pem, fingerprint=fp), reason,
                  precondition=precondition,
                  expected={"file": file, "fingerprint": fp}, depends_on=depends, replaces=replaces)
    view.after_write(file, fp)


# --- regenerate --------------------------------------------------------------------------


def regeneration_drift(site: PredictedSite) -> list[str]:
    """Addresses of the key files that differ from what they should hold."""
    want = desired_keys(site)
    drift = []
    for host in site.state.all_hosts:
        view = site.views.get(host.name)
        if view is None:
            continue
        for file, (fp, _) in sorted(want[host.name].items()):
            if fp is None or key_problem(view.keys.get(file), fp):
                drift.append(site.key_address(host.name, file))
    return drift

def plan_regenerate(site: PredictedSite) -> None:
    s = site.state
    drift = regeneration_drift(site)
    if not drift:
        return
    unreachable = [c.name for c in s.clients if c.name not in site.views]
    runner = site.state.host(site.package_node) if s.is_cluster and site.package_node else (s.standalone_host if not s.is_cluster else None)
    address = "site.keys"
    if unreachable:
        site.blocked.append(Finding(address=address, message=f"key regeneration needs every client reachable; unreachable: {', '.join(unreachable)}"))
        return
    if runner is None or runner.name not in site.views:
        site.blocked.append(Finding(address=address, message="key regeneration needs the master (the node running the package) reachable"))
        return
    master_keys = {k.fingerprint: k for h in s.master_hosts if h.name in site.views for k in site.views[h.name].facts.ssh_public_keys}
    depends = [d for d in [site.package_action, *site.dispatched.values()] if d]
    if not master_keys:
        site.blocked.append(Finding(address=address, message="key regeneration needs root ssh from the master to every client, but no master host has a root ssh key"))
        return
    for c in s.clients:
        missing = sorted(fp for fp in master_keys if fp not in site.views[c.name].facts.ssh_authorized)
        if missing:
            lines = [master_keys[fp].line for fp in missing]
            action = site.add(kinds.AUTHORIZE_SSH, f"client.{c.name}.ssh", c, kinds.AuthorizeSshParams(lines=lines),
                               f"root on {c.name} does not accept ssh from the master's key(s) {', '.join(missing)} (key regeneration needs it)",
                               precondition=kinds.authorized_precondition(site.views[c.name].facts),
                               expected={"authorized": missing})
            depends.append(action.id)
    addresses = [c.address for c in s.clients]
    site.add(kinds.REGENERATE_KEYS, address, runner, kinds.RegenerateParams(clients=addresses),
              f"{len(drift)} key file(s) differ ({', '.join(drift[:3])}{', ...' if len(drift) > 3 else ''}); distribution is 'regenerate'",
              precondition={"drift": drift, "cluster_key": site.cluster_key.fingerprint if site.cluster_key else None},
              expected={"consistent": True}, depends_on=depends)


# --- prune -------------------------------------------------------------------------------


def plan_prune(site: PredictedSite) -> None:
    s = site.state
    want = desired_keys(site)
    owned = inventory(site)
    ck = site.cluster_key.fingerprint if site.cluster_key else None
    for host in s.all_hosts:
        view = site.views.get(host.name)
        if view is None:
            continue
        wanted = want[host.name]
        for file, key in sorted(view.keys.items()):
            if file in wanted:
                continue
            ip = peer_address(file)
            if ip is None:
                continue
            address = site.key_address(host.name, file)
            managed = ip in owned or (ck is not None and key.fingerprint == ck)
            if not s.keys.prune:
                continue
            if not managed:
                site.notices.append(Finding(address=address, host=host.name, message=f"{file} is for an address not declared, and csync cannot prove it manages it; left alone"))
                continue
            why = "in the site's inventory" if ip in owned else "holds the cluster key"
            site.add(kinds.REMOVE_KEY, address, host, kinds.RemoveKeyParams(file=file),
                      f"{ip} is no longer declared ({why})",
                      precondition=kinds.removal_precondition(file, key), expected={"file": file, "absent": True})

def inventory(site: PredictedSite) -> set[str]:
    if site.state.is_cluster:
        v = site.views.get(site.package_node or "")
        pkgfs = v.facts.package_fs if v else None
        return set(pkgfs.inventory or ()) if pkgfs else set()
    v = site.views.get(site.state.standalone_host.name)
    mf = v.facts.master_files if v else None
    return set(mf.inventory or ()) if mf else set()


# --- csync's probe program -----------------------------------------------------------------


def plan_probe_program(site: PredictedSite) -> None:
    """Where the plan identity is configured: install csync's probe program (its forced
    command) where it is missing, and replace it where it differs from this csync's and is
    not newer. A host whose program is known but not its other facts (the plan identity
    could not probe it) gets the action too: that is how such a host becomes readable."""
    want = (PROGRAM_VERSION, program_digest())
    for host in site.state.all_hosts:
        facts = site.facts.get(host.name)
        found = facts.probe_program if facts is not None else None
        if facts is None or found is None or site.state.access.for_host(host.name).plan_identity_file is None:
            continue
        if found.kind == "file" and (found.version, found.digest) == want:
            continue
        address = f"{site.host_address(host.name)}.probe"
        where = dsau.PROBE_PROGRAM
        if found.version is not None and found.version > PROGRAM_VERSION:
            site.notices.append(Finding(address=address, host=host.name, message=f"{where} is version {found.version}, newer than this "
                                        f"csync's ({PROGRAM_VERSION}): left alone; plan with the csync that installed it"))
            continue
        if found.kind in ("dir", "other"):
            site.blocked.append(Finding(address=address, host=host.name, message=f"{where} is {'a directory' if found.kind == 'dir' else 'not a file'}: "
                                        "csync does not replace it; remove it, then plan again"))
            continue
        what = ("missing" if found.kind == "missing" else "a symbolic link" if found.kind == "symlink"
                else f"version {found.version} ({found.digest})" if found.version is not None else "a file without a version line")
        site.add(kinds.INSTALL_PROBE, address, host, kinds.ProbeProgramParams(version=want[0], digest=want[1]),
                 f"csync's probe program (the plan identity's forced command) is {what}; this csync's is version {want[0]} ({want[1]})",
                 precondition=kinds.program_precondition(facts), expected={"program": {"version": want[0], "digest": want[1]}})
