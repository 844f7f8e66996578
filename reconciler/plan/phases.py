"""The planner's phases, in DSAU's order: the package, the cluster key, the members, the keys
(copy/install, or the wizard's regeneration), the removals. Each is a function over the
`PredictedSite`: it reads the site as the earlier phases leave it and plans into it.
"""

from __future__ import annotations

from reconciler.desired.model import Host
from reconciler.domain import dsau
from reconciler.domain.inventory import KeyInventory, parse_inventory
from reconciler.domain.keys import KeyFile, key_problem, peer_address, peer_hostname, peer_ip
from reconciler.domain.package import decide_package, infer_cluster_key, inputs_lag, member_problems
from reconciler.driver.probeprogram import PROGRAM_VERSION, program_digest
from reconciler.plan import kinds
from reconciler.plan.artefact import Finding
from reconciler.plan.site import HostView, PredictedSite

# --- package -----------------------------------------------------------------------------


def plan_package(site: PredictedSite) -> None:
    pkg = site.state.package
    address = f"package.{pkg.name}"
    d = decide_package(site.state, {name: v.facts for name, v in site.views.items()}, site.refused)
    site.decision = d
    for note in d.notes:
        site.find(note.level, note.address, note.message, note.host)
    site.package_node = d.node
    if d.view is None:
        return
    precondition = kinds.package_precondition(d.view)
    if d.halt and d.owner in site.views:
        site.add(
            kinds.HALT_PACKAGE,
            address,
            site.state.host(d.owner),
            kinds.StartPackageParams(package=pkg.name, node=d.owner),
            d.why,
            precondition=precondition,
            expected={"package": {"running": False}},
        )
    if d.node is None:
        return
    if d.enable_switching and d.node in site.views:
        site.add(
            kinds.ENABLE_SWITCHING,
            address,
            site.state.host(d.node),
            kinds.PackageParams(package=pkg.name),
            d.why,
            precondition=precondition,
            expected={"package": {"autorun": "enabled"}},
        )
    if d.start:
        action = site.add(
            kinds.START_PACKAGE,
            address,
            site.state.host(d.node),
            kinds.StartPackageParams(package=pkg.name, node=d.node),
            d.why,
            precondition=precondition,
            expected={"package": {"owner": d.node, "running": True, "autorun": "enabled"}},
        )
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
            site.blocked.append(
                Finding(
                    address=f"master.{master.name}",
                    host=master.name,
                    message=f"master {master.name} has no usable {dsau.OWN_PUBLIC_KEY}: {key.problem if key else 'missing'}; run cfkey there",
                )
            )
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
            site.blocked.append(
                Finding(
                    address=f"package.{site.state.package.name}",
                    host=holder,
                    message=f"the package filesystem on {holder} holds no usable cluster key ({dsau.PACKAGE_CLUSTER_KEY_DIR}/{dsau.OWN_PUBLIC_KEY})",
                )
            )
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
        site.blocked.append(
            Finding(
                address="site.keys",
                message="cannot tell the cluster key: the package filesystem is not mounted and the members do not agree on one key; start the package and plan again",
            )
        )


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
                site.notices.append(
                    Finding(
                        address=address,
                        host=m.name,
                        message=f"{m.name}'s inputs differ from the master's ({lag}): "
                        f"they lag until cfagent's next run, or update.conf excludes them; not an action",
                    )
                )
            continue
        what = " and ".join(problems)
        if owner is None or site.decision is None or not site.decision.runs_after:
            site.notices.append(
                Finding(
                    address=address,
                    host=m.name,
                    message=f"{m.name} is not configured ({what}); dispatching it "
                    f"waits for the package to run on a declared member (state: {site.state.package.state})",
                )
            )
            continue
        if m.name == owner.name:
            site.blocked.append(Finding(address=address, host=m.name, message=f"{m.name} runs the package but {what}; fix it by hand or move the package"))
            continue
        if owner_view is None:
            site.unknown.append(Finding(address=address, host=m.name, message=f"needs dispatching, but {owner.name}, which runs the package, is unreachable"))
            continue
        precondition = kinds.dispatch_precondition(view.facts, owner.name, ck)
        action = site.add(
            kinds.DISPATCH_MEMBER,
            address,
            owner,
            kinds.DispatchParams(member=m.name),
            f"{m.name} {what} (not configured as an adoptive node)",
            precondition=precondition,
            expected={"member": {"own_key": ck, "configured": True}},
            depends_on=[site.package_action] if site.package_action else [],
        )
        site.dispatched[m.name] = action.id
        site.after_dispatch(m, owner_view)


# --- keys --------------------------------------------------------------------------------

Want = dict[str, dict[str, tuple[str | None, str]]]  # host -> key file -> (desired fingerprint or None, whose key)


def desired_keys(site: PredictedSite) -> Want:
    """host -> file -> (desired fingerprint or None when unknown, whose key it is).

    Computed once, after the member phase (it reads the members' predicted state)."""
    if site.desired_cache is None:
        site.desired_cache = compute_desired_keys(site)
    return site.desired_cache


def compute_desired_keys(site: PredictedSite) -> Want:
    """Every key file each declared host should hold, by cfengine 2's rules (DOMAIN.md):

    - a client: root-<a>.pub (the cluster key) for every address of the master (the package's
      addresses; a standalone master's), and with keys.cfrun all-members for every address of
      every member (cfrun leaves from whichever address routing picks);
    - a member: the same master-side files, and root-<client>.pub (the client's own key) for
      every client; a standalone master: root-<a>.pub for each of its own addresses (its own
      cfagent is trusted by its own cfservd so) and every client's key;
    - the key files named by host name that cfengine will read (see `add_name_keys`)."""
    s = site.state
    ck = site.cluster_key.fingerprint if site.cluster_key else None
    own_name = "the cluster key" if s.is_cluster else f"the key of master {s.standalone_host.name}"
    server_files = {dsau.peer_key_name(a): (ck, own_name) for a in s.server_addresses}
    master_files = {dsau.peer_key_name(a): (ck, own_name) for m in s.master_hosts for a in m.addresses}
    client_files: dict[str, tuple[str | None, str]] = {}
    for c in s.clients:
        cv = site.views.get(c.name)
        client_files[dsau.peer_key_name(c.address)] = (cv.own if cv else None, f"the key of client {c.name}")
    want: Want = {}
    client_side = {**server_files, **master_files} if s.keys.cfrun == "all-members" else server_files
    for c in s.clients:
        want[c.name] = dict(client_side)
    for m in s.master_hosts:
        want[m.name] = {**server_files, **master_files, **client_files}
    add_name_keys(site, want, ck, own_name)
    return want


def declared_peers(site: PredictedSite, ck: str | None, own_name: str) -> dict[str, tuple[str | None, str, str]]:
    """Lower-case host name -> (its key's fingerprint or None, whose key, root-<its address>.pub)."""
    if site.peers_cache is not None:
        return site.peers_cache
    s = site.state
    peers: dict[str, tuple[str | None, str, str]] = {}
    for h in s.master_hosts:
        peers[h.name.lower()] = (ck, own_name, dsau.peer_key_name(h.address))
    for c in s.clients:
        cv = site.views.get(c.name)
        peers[c.name.lower()] = (cv.own if cv else None, f"the key of client {c.name}", dsau.peer_key_name(c.address))
    site.peers_cache = peers
    return peers


def peer_named(peers: dict, name: str) -> str | None:
    """The declared host a key file named ``name`` is for: the same name ignoring case, or a
    qualified name whose first label is it (cfrun appends its hosts file's domain); or None."""
    low = name.lower()
    if low in peers:
        return low
    first = low.split(".", 1)[0]
    return first if "." in low and first in peers else None


def add_name_keys(site: PredictedSite, want: Want, ck: str | None, own_name: str) -> None:
    """The key files named by host name a host should hold, besides root-<address>.pub:

    - its cfservd authenticates callers by name (HostnameKeys = ( on ) in inputs/cfservd.conf):
      root-<name>.pub of every declared host whose key it holds, the name lower case as cfservd
      looks it up [ours: the name a caller asserts is its resolver's for its source address,
      taken to be its declared name];
    - its cfrun authenticates by name (hostnamekeys in its inputs/cfrun.hosts): root-<host as
      written>.pub for every declared client its hosts file names by name;
    - a root-<name>.pub already there for a declared host whose key it holds: cfrun looks it up
      before root-<address>.pub, so it must hold that host's key too (a right one is left as is,
      a wrong one replaced)."""
    peers = declared_peers(site, ck, own_name)
    clients = {c.name.lower() for c in site.state.clients}
    for host in site.state.all_hosts:
        view = site.views.get(host.name)
        if view is None:
            continue
        files = want[host.name]
        facts = view.facts
        extra: dict[str, tuple[str | None, str]] = {}
        if facts.hostname_keys:
            for peer, (fp, whose, primary) in peers.items():
                if primary in files:
                    extra[dsau.peer_key_name(peer)] = (fp, f"{whose}, by name (its cfservd uses HostnameKeys)")
        cfrun_hosts = facts.cfrun_hosts
        if cfrun_hosts is not None and cfrun_hosts.hostnamekeys and host.name in site.roles and site.roles[host.name] != "client":
            for as_written in cfrun_hosts.hosts:
                written = peer_named(peers, as_written) if peer_hostname(dsau.peer_key_name(as_written)) else None
                if written is not None and written in clients and peers[written][2] in files:
                    fp, whose, _ = peers[written]
                    extra[dsau.peer_key_name(as_written)] = (fp, f"{whose}, as its cfrun.hosts writes it (hostnamekeys)")
        for file in view.keys:
            if file in files:
                continue  # declared already (most of a host's files: checked first, it is the cheap test)
            by_name = peer_hostname(file)
            named = peer_named(peers, by_name) if by_name else None
            if named is not None and peers[named][2] in files:
                fp, whose, _ = peers[named]
                extra.setdefault(file, (fp, f"{whose}, by name (cfrun looks up root-<name>.pub before root-<address>.pub)"))
        for file, value in extra.items():
            files.setdefault(file, value)


def key_source(site: PredictedSite, fp: str) -> KeyFile | None:
    """Where the content of a key to install comes from: the cluster key, or a client's own."""
    if site.cluster_key and fp == site.cluster_key.fingerprint:
        return site.cluster_key
    return site.client_keys.get(fp)


def shown(site: PredictedSite, fp: str) -> str:
    """A key as plans show it: its SHA256 fingerprint and cfengine's MD5 digest."""
    key = key_source(site, fp)
    return key.shown() if key is not None and key.fingerprint == fp else fp


def plan_keys(site: PredictedSite) -> None:
    """Drift is repaired by copy and install, whatever keys.distribution says; the wizard's
    regeneration runs only as a rotation on purpose (`plan_rotation`), and then instead."""
    site.client_keys = {v.own: v.keys[dsau.OWN_PUBLIC_KEY] for c in site.state.clients if (v := site.views.get(c.name)) and v.own}
    if plan_rotation(site):
        return
    want = desired_keys(site)
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
                    site.unknown.append(
                        Finding(
                            address=site.key_address(host.name, file),
                            host=host.name,
                            message=f"should hold {whose}, which is unknown ({'client unreachable or without a key' if whose.startswith('the key of client') else 'cluster key unknown'})",
                        )
                    )
                continue
            problem = key_problem(current, fp)
            if problem is None:
                continue
            address = site.key_address(host.name, file)
            if site.cluster_key_inferred and not site.package_action and site.cluster_key and fp == site.cluster_key.fingerprint:
                # Never spread a key read from the members' own keys: only the package
                # filesystem confirms the cluster key, and this plan does not start it.
                site.notices.append(
                    Finding(
                        address=address,
                        host=host.name,
                        message=(
                            f"{file} {problem}; it should hold the cluster key, which waits for the package to run "
                            f"(state: {site.state.package.state}): csync writes the cluster key only once the package filesystem confirms it"
                        ),
                    )
                )
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
    site.blocked.append(
        Finding(
            address=site.host_address(host.name),
            host=host.name,
            message=f"{site.state.paths.cfengine_dir}/{dsau.PPKEYS_SUBDIR} is {what}; csync neither reads nor writes keys through it: "
            f"make it a directory (mode 700) holding the keys, then plan again",
        )
    )
    return True


def plan_key_fix(site: PredictedSite, host: Host, view: HostView, file: str, fp: str, whose: str, current: KeyFile | None, problem: str, address: str) -> None:
    depends = []
    if host.name in site.dispatched:
        depends.append(site.dispatched[host.name])
    if site.package_action and site.cluster_key and fp == site.cluster_key.fingerprint and site.cluster_key_inferred:
        # the key was inferred while the package is down: confirm it by starting first
        depends.append(site.package_action)
    replaces = current is not None
    reason = f"{file} {problem}; should hold {whose} ({shown(site, fp)})"
    # A verified copy already on the host (checked by content, never by name), as the
    # manual does for the cluster key; other keys are installed from their source.
    source = None
    if site.cluster_key and fp == site.cluster_key.fingerprint:
        source = next((n for n in view.cluster_key_copies(fp) if n != file), None)
    if source is not None:
        precondition = kinds.key_precondition(file, current, fp, view.keys[source], source)
        site.add(
            kinds.COPY_KEY,
            address,
            host,
            kinds.CopyKeyParams(file=file, source=source),
            reason,
            precondition=precondition,
            expected={"file": file, "fingerprint": fp},
            depends_on=depends,
            replaces=replaces,
        )
    else:
        precondition = kinds.key_precondition(file, current, fp)
        key = key_source(site, fp)
        if key is None or not key.pem:
            site.unknown.append(Finding(address=address, host=host.name, message=f"{reason}, but csync has no copy of that key to install"))
            return
        site.add(
            kinds.INSTALL_KEY,
            address,
            host,
            kinds.InstallKeyParams(file=file, pem=key.pem, fingerprint=fp),
            reason,
            precondition=precondition,
            expected={"file": file, "fingerprint": fp},
            depends_on=depends,
            replaces=replaces,
        )
    view.after_write(file, fp)


# --- rotation (the wizard's regeneration, on purpose) ---------------------------------------


def rotation_runner(site: PredictedSite) -> Host | None:
    """Where the wizard runs: the node running (or starting) the package, or the standalone master."""
    s = site.state
    if not s.is_cluster:
        return s.standalone_host
    return s.host(site.package_node) if site.package_node and site.decision is not None and site.decision.runs_after else None


def known_systems(site: PredictedSite, runner: Host) -> tuple[list[str], list[str]]:
    """(undeclared systems the master knows, as the wizard is given them; undeclared addresses
    whose key file on the master holds the cluster key). The master knows a system by a
    root-<address>.pub in its key store or a line of cfrun.hosts (its own and the master
    inputs' copy); the wizard regenerates keys for every system it knows [doc: "Manage keys
    for cfengine clients" regenerates for all systems]."""
    s = site.state
    view = site.views[runner.name]
    declared_addresses = {a for h in s.master_hosts for a in h.addresses} | set(s.server_addresses) | {c.address for c in s.clients}
    declared_names = {h.name.lower() for h in s.all_hosts}
    ck = site.cluster_key.fingerprint if site.cluster_key else None
    others: dict[str, None] = {}
    master_side: list[str] = []
    for file, key in sorted(view.keys.items()):
        ip = peer_ip(file)
        if ip is None or ip in declared_addresses:
            continue
        if ck is not None and key.fingerprint == ck:
            master_side.append(ip)
        else:
            others.setdefault(ip)
    lists = [view.facts.cfrun_hosts]
    pkgfs, mf = view.facts.package_fs, view.facts.master_files
    lists.append(pkgfs.cfrun_hosts if pkgfs is not None else mf.cfrun_hosts if mf is not None else None)
    for hosts in lists:
        for written in hosts.hosts if hosts is not None else ():
            if written in declared_addresses or written.lower() in declared_names or written.lower().split(".", 1)[0] in declared_names:
                continue
            others.setdefault(written)
    return list(others), master_side


def plan_rotation(site: PredictedSite) -> bool:
    """Plan the wizard's key regeneration when keys.generation is higher than the generation
    recorded in the site's inventory; True when it is planned (then it replaces copy and
    install). Its preflight covers every system the wizard changes: every member, every
    declared client, and every client the master knows that is not declared; any one that is
    unreachable or does not trust the master's root ssh key blocks it, all of them named."""
    s = site.state
    wanted = s.keys.generation
    address = "site.keys"
    inv = site.inventory
    if wanted == 0 and (inv is None or inv.generation == 0):
        return False
    if inv is None and site.inventory_error:
        site.unknown.append(
            Finding(
                address=address,
                message=f"keys.generation is {wanted}, but the generation recorded in the site's "
                f"inventory is unknown ({site.inventory_error}): no rotation until it can be read",
            )
        )
        return False
    recorded = inv.generation if inv is not None else 0
    if wanted < recorded:
        site.notices.append(
            Finding(
                address=address,
                message=f"keys.generation is {wanted}, lower than the generation {recorded} recorded "
                f"in the site's inventory: no rotation (raise it to {recorded + 1} to rotate again)",
            )
        )
        return False
    if wanted == recorded:
        return False
    if s.keys.distribution != "regenerate":
        site.blocked.append(
            Finding(
                address=address,
                message=f"keys.generation is {wanted} and the inventory records {recorded}: a rotation "
                f"runs the wizard's key regeneration, which keys.distribution: copy never does; set keys.distribution: "
                f"regenerate to rotate, or keys.generation back to {recorded}",
            )
        )
        return False
    runner = rotation_runner(site)
    if runner is None or runner.name not in site.views:
        where = "the node running the package" if s.is_cluster else f"master {s.standalone_host.name}"
        site.blocked.append(
            Finding(
                address=address,
                message=f"key rotation (generation {recorded} -> {wanted}) runs the wizard on {where}, "
                f"which is {'not running' if runner is None else 'unreachable'}",
            )
        )
        return False
    if site.cluster_key is None:
        site.blocked.append(Finding(address=address, message="key rotation needs the current cluster key known (to verify it changed)"))
        return False
    unreachable = [h.name for h in s.all_hosts if h.name not in site.views]
    runner_keys = {k.fingerprint for k in site.views[runner.name].facts.ssh_public_keys}
    untrusted = [
        h.name for h in s.all_hosts if h.name in site.views and h.name != runner.name and not (runner_keys & set(site.views[h.name].facts.ssh_authorized))
    ]
    undeclared, master_side = known_systems(site, runner)
    problems = []
    if unreachable:
        problems.append(f"unreachable: {', '.join(unreachable)}")
    if not runner_keys:
        problems.append(f"{runner.name} has no root ssh key (the wizard reaches every system by root ssh)")
    elif untrusted:
        problems.append(f"root on {', '.join(untrusted)} does not accept ssh from {runner.name}'s root key (run csshsetup there)")
    if master_side:
        problems.append(
            f"the master holds the cluster key for {', '.join(master_side)}, which the desired state does not declare "
            f"(declare them as extra addresses, or remove their key files)"
        )
    if problems:
        site.blocked.append(
            Finding(
                address=address,
                message=f"key rotation (generation {recorded} -> {wanted}) needs every system the wizard "
                f"changes reachable and trusting the master: {'; '.join(problems)}; nothing is rotated",
            )
        )
        return False
    clients = [c.address for c in s.clients] + undeclared
    members = [m.address for m in s.master_hosts if m.name != runner.name]
    depends = [d for d in [site.package_action, *site.dispatched.values()] if d]
    also = (
        (
            f"; the master also knows {len(undeclared)} undeclared system(s), which the wizard regenerates too and csync checks "
            f"only for root ssh: {', '.join(undeclared[:5])}{', ...' if len(undeclared) > 5 else ''}"
        )
        if undeclared
        else ""
    )
    if undeclared:
        site.notices.append(
            Finding(
                address=address,
                message=f"the wizard regenerates the keys of every system the master knows; these are "
                f"not declared, so csync cannot verify them afterwards: {', '.join(undeclared)}",
            )
        )
    old = site.cluster_key.fingerprint
    assert old is not None  # a usable key has one
    rotation = site.add(
        kinds.REGENERATE_KEYS,
        address,
        runner,
        kinds.RegenerateParams(clients=clients, members=members),
        f"keys.generation is {wanted}, the inventory records {recorded}: rotate every key of the site through the wizard "
        f"(the cluster key {shown(site, old)} and {len(s.clients)} declared client(s)){also}",
        precondition=rotation_precondition(site, runner, clients, members),
        expected={"generation": wanted, "old_cluster_key": old},
        depends_on=depends,
    )
    plan_mirrors(site, rotation.id)
    return True


def wizard_files(site: PredictedSite, host: Host) -> set[str]:
    """The key files the wizard writes on a host [ours: the lab's csync_wizard; see docs/LAB.md]:
    the master-side hosts' and the master's first address, and on the master side every
    declared client's address."""
    s = site.state
    files = {dsau.peer_key_name(s.server_addresses[0])} | {dsau.peer_key_name(m.address) for m in s.master_hosts}
    if site.roles.get(host.name) != "client":
        files |= {dsau.peer_key_name(c.address) for c in s.clients}
    return files


def plan_mirrors(site: PredictedSite, rotation: str) -> None:
    """After a rotation, the key files the wizard does not write (extra addresses, host names)
    get the new key from a file it does write on the same host (mirror-key)."""
    s = site.state
    want = desired_keys(site)
    ck = site.cluster_key.fingerprint if site.cluster_key else None
    client_file = {v.own: dsau.peer_key_name(c.address) for c in s.clients if (v := site.views.get(c.name)) and v.own}
    for host in s.all_hosts:
        view = site.views.get(host.name)
        if view is None:
            continue
        written = wizard_files(site, host)
        for file, (fp, whose) in sorted(want[host.name].items()):
            if file in written:
                continue
            if fp is not None and fp == ck:
                source = dsau.peer_key_name(s.server_addresses[0])
            elif fp is not None and fp in client_file:
                source = client_file[fp]  # a client's key under its host name, on the master side
            else:
                continue
            site.add(
                kinds.MIRROR_KEY,
                site.key_address(host.name, file),
                host,
                kinds.MirrorKeyParams(file=file, source=source),
                f"{file} should hold {whose}, which the rotation changes and the wizard does not write here: copied from {source} after it",
                precondition={"file": file, "source": source, "after": "the rotation"},
                expected={"file": file, "source": source},
                depends_on=[rotation],
                replaces=file in view.keys,
            )


def rotation_precondition(site: PredictedSite, runner: Host, clients: list[str], members: list[str]) -> dict:
    """What a rotation is planned from: the generations, the cluster key, who runs the wizard and for whom."""
    inv = site.inventory
    return {
        "generation": {"recorded": inv.generation if inv is not None else 0, "wanted": site.state.keys.generation},
        "cluster_key": site.cluster_key.fingerprint if site.cluster_key else None,
        "runner": runner.name,
        "clients": clients,
        "members": members,
    }


def rotation_problems(site: PredictedSite, old_cluster_key: str | None) -> list[str]:
    """What shows that a rotation did not give every declared host the new keys: the cluster
    key unchanged, a member without it as its own, a client without it for the master's
    address (and every member's, with cfrun all-members), a member without a client's new key."""
    s = site.state
    ck = site.cluster_key.fingerprint if site.cluster_key else None
    out = []
    if ck is None:
        return ["the cluster key cannot be read"]
    if ck == old_cluster_key:
        out.append(f"the cluster key is unchanged ({ck})")
    for h in s.master_hosts:
        v = site.views.get(h.name)
        if v is None:
            out.append(f"{h.name} did not answer")
        elif v.own != ck:
            out.append(f"{h.name}'s own key is not the new cluster key")
    files = [dsau.peer_key_name(s.server_addresses[0])]
    if s.keys.cfrun == "all-members":
        files += [dsau.peer_key_name(m.address) for m in s.master_hosts]
    for c in s.clients:
        v = site.views.get(c.name)
        if v is None:
            out.append(f"{c.name} did not answer")
            continue
        out += [f"{c.name}: {f} {p}" for f in files if (p := key_problem(v.keys.get(f), ck))]
        client_file = dsau.peer_key_name(c.address)
        for m in s.master_hosts:
            mv = site.views.get(m.name)
            if mv is not None and v.own is not None and (p := key_problem(mv.keys.get(client_file), v.own)):
                out.append(f"{m.name}: {client_file} {p}")
    return out


# --- prune -------------------------------------------------------------------------------


def plan_prune(site: PredictedSite) -> None:
    """Remove only what csync owns (its inventory), once it is no longer declared for its host,
    and a key file named after a declared host that holds another key than that host's (cfrun
    and cfservd with hostname keys would use it). Never a host's key for one of its own
    addresses or its own name. Every other undeclared key file is left alone, as a notice."""
    s = site.state
    want = desired_keys(site)
    inv = site.inventory
    ck = site.cluster_key.fingerprint if site.cluster_key else None
    own_name = "the cluster key" if s.is_cluster else f"the key of master {s.standalone_host.name}"
    peers = declared_peers(site, ck, own_name)
    if not s.keys.prune:
        return
    for host in s.all_hosts:
        view = site.views.get(host.name)
        if view is None:
            continue
        own = {dsau.peer_key_name(a) for a in s.own_addresses(host.name)}
        wanted = want[host.name]
        for file, key in sorted(view.keys.items()):
            if file in wanted or file in own or file in view.planned:
                continue  # the common case first: a declared file
            peer = peer_address(file)
            if peer is None:
                continue
            if peer_named(peers, peer) == host.name.lower():
                continue  # its own name
            address = site.key_address(host.name, file)
            named = peer_named(peers, peer) if peer_hostname(file) else None
            source = site.package_node if host.name in site.dispatched else None  # the dispatcher copies its peer keys
            if inv is not None and (inv.owns(host.name, file) or (source is not None and inv.owns(source, file))):
                why = (
                    "recorded in the site's inventory"
                    if inv.owns(host.name, file)
                    else f"the dispatcher copies it from {source}, where the site's inventory records it"
                )
                site.add(
                    kinds.REMOVE_KEY,
                    address,
                    host,
                    kinds.RemoveKeyParams(file=file),
                    f"{file} is csync's ({why}) and no longer declared for {host.name}",
                    precondition=kinds.removal_precondition(file, key),
                    expected={"file": file, "absent": True},
                    depends_on=[site.dispatched[host.name]] if host.name in site.dispatched else [],
                )
            elif named is not None and (fp := peers[named][0]) is not None and key_problem(key, fp) is not None:
                site.add(
                    kinds.REMOVE_KEY,
                    address,
                    host,
                    kinds.RemoveKeyParams(file=file),
                    f"{file} is named after {named}, but {key_problem(key, fp)}; {host.name} does not need {named}'s key, and cfrun "
                    f"looks this file up before root-<address>.pub",
                    precondition=kinds.removal_precondition(file, key),
                    expected={"file": file, "absent": True},
                )
            elif named is not None:
                continue  # the right key (or one that cannot be checked), under a declared host's name
            elif inv is None:
                why = site.inventory_error or "the site has no inventory yet"
                site.notices.append(
                    Finding(
                        address=address,
                        host=host.name,
                        message=f"{file} is not declared for {host.name}, and whether csync owns it cannot be told ({why}); left alone",
                    )
                )
            else:
                site.notices.append(
                    Finding(
                        address=address,
                        host=host.name,
                        message=f"{file} is not declared for {host.name} and not "
                        f"csync's (not in the site's inventory): left alone (csync import --adopt-keys records it)",
                    )
                )


def read_inventory(site: PredictedSite) -> None:
    """The site's inventory, from the master: the package filesystem where it is mounted (a
    cluster), or the standalone master."""
    if site.state.is_cluster:
        d = site.decision
        holder = d.owner if d is not None and d.running else None
        v = site.views.get(holder or "")
        pkgfs = v.facts.package_fs if v else None
        if pkgfs is None or not pkgfs.mounted:
            site.inventory_error = "the package filesystem, which holds it, is not mounted on a reachable member"
            return
        lines = pkgfs.inventory
    else:
        v = site.views.get(site.state.standalone_host.name)
        if v is None or v.facts.master_files is None:
            site.inventory_error = f"master {site.state.standalone_host.name}, which holds it, did not answer"
            return
        lines = v.facts.master_files.inventory
    inv = parse_inventory(lines) if lines is not None else None
    site.inventory = inv if inv is not None else KeyInventory()
    if site.inventory.legacy:
        site.notices.append(
            Finding(
                address="site.inventory",
                message=(
                    f"the site's inventory has {site.inventory.legacy} address line(s) of csync's first format, which prove no key file's "
                    f"ownership and are ignored; the next apply rewrites it"
                ),
            )
        )


# --- csync's probe program -----------------------------------------------------------------


def plan_probe_program(site: PredictedSite) -> None:
    """Where the plan identity is configured: install csync's probe program (its forced
    command) where it is missing, and replace it where it differs from this csync's and is
    not newer. A host whose program is known but not its other facts (the plan identity
    could not probe it) gets the action too: that is how such a host becomes readable."""
    want = (PROGRAM_VERSION, program_digest(site.state.platform))
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
            site.notices.append(
                Finding(
                    address=address,
                    host=host.name,
                    message=f"{where} is version {found.version}, newer than this "
                    f"csync's ({PROGRAM_VERSION}): left alone; plan with the csync that installed it",
                )
            )
            continue
        if found.kind in ("dir", "other"):
            site.blocked.append(
                Finding(
                    address=address,
                    host=host.name,
                    message=f"{where} is {'a directory' if found.kind == 'dir' else 'not a file'}: csync does not replace it; remove it, then plan again",
                )
            )
            continue
        what = (
            "missing"
            if found.kind == "missing"
            else "a symbolic link"
            if found.kind == "symlink"
            else f"version {found.version} ({found.digest})"
            if found.version is not None
            else "a file without a version line"
        )
        site.add(
            kinds.INSTALL_PROBE,
            address,
            host,
            kinds.ProbeProgramParams(version=want[0], digest=want[1]),
            f"csync's probe program (the plan identity's forced command) is {what}; this csync's is version {want[0]} ({want[1]})",
            precondition=kinds.program_precondition(facts),
            expected={"program": {"version": want[0], "digest": want[1]}},
        )
