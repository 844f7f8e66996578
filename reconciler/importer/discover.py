"""`csync import`: the desired state that describes a live site as it is today.

Starting from one host (the standalone master, or any member of the Serviceguard cluster
that runs the csync package), import finds:

- from the host itself (`driver.discovery.discover`): its name, `cmviewcl -v -f line` (cluster,
  nodes, the package, its owner and node order), the package's ASCII file in the csync
  package directory (relocatable address, mount point) and /etc/hosts, where Serviceguard
  wants every node named (the members' addresses); and where it keeps things: the
  directories cmviewcl, cfagent and cfrun are found in (Serviceguard's SGSBIN of
  /etc/cmcluster.conf searched too) and the package directory ($SGCONF/csync on Serviceguard
  for Linux). What csync would not find with the settings in force is written under
  `platform:` (serviceguard_path, cfengine_path) and `paths:` (package_files_dir);
- from the master's key store (the `root-<IP>.pub` files in the members' or the standalone
  master's ppkeys): the clients' addresses;
- from a probe of every client: its name (`uname -n`), and whether the clients hold the
  members' keys (`keys.cfrun`).

What cannot be seen on the hosts is not invented: `keys.distribution` is `copy` and
`keys.prune` is `false` (import never turns on deleting keys); the output says so in a
comment. Importing into an existing file updates it in place (ruamel.yaml round trip):
comments, order and the choices it already holds (site, keys, paths, platform, access) are kept
(a platform or paths key is only changed where csync would not find a command or the package
files with it);
hosts are updated by name, new ones appended, vanished ones removed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from reconciler.desired.model import Access, DesiredState, Host, MasterHost, Paths, Platform
from reconciler.desired.values import is_host_name, is_ipv4
from reconciler.domain import dsau
from reconciler.domain.keys import peer_address
from reconciler.domain.serviceguard import (
    ClusterView,
    CmviewclParseError,
    PackageView,
    parse_cmviewcl_line,
    parse_cmviewcl_table,
)
from reconciler.driver import discovery
from reconciler.driver.discovery import Discovery, parse_discovery
from reconciler.driver.transport import Pool, TransportError
from reconciler.errors import CsyncError
from reconciler.observe.facts import HostFacts
from reconciler.observe.probe import probe_site


class ImportFailed(CsyncError):
    """The site could not be described: a host unreachable, not a master or member, ..."""


def short_name(hostname: str | None) -> str | None:
    """The unqualified host name of `uname -n` output, if it is a valid one."""
    if not hostname:
        return None
    name = hostname.strip().split(".")[0]
    return name if is_host_name(name) else None


def resolve(entry: str) -> str:
    if is_ipv4(entry):
        return entry
    try:
        infos = socket.getaddrinfo(entry, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ImportFailed(f"--from {entry}: cannot resolve the name ({e}); give the host's IPv4 address") from None
    address = str(infos[0][4][0])
    if not is_ipv4(address):
        raise ImportFailed(f"--from {entry}: resolves to {address}, which csync cannot use; give the host's IPv4 address")
    return address


def _label(prefix: str, address: str) -> str:
    return f"{prefix}-{address.replace('.', '-')}"


def _key_addresses(facts: HostFacts) -> set[str]:
    """The addresses of the root-<IP>.pub files in a host's key store."""
    out = set()
    for name in facts.keys:
        ip = peer_address(name)
        if ip is not None and is_ipv4(ip):
            out.add(ip)
    return out


def _ip_key(address: str) -> tuple[int, ...]:
    return tuple(int(o) for o in address.split("."))


@dataclass
class Found:
    """The site as import found it: plain desired-state data (ordered) and notes for the user."""

    data: dict[str, Any]
    notes: list[str]


class Importer:
    def __init__(
        self,
        entry: str,
        access: Access,
        *,
        accept_new_host_keys: bool = False,
        paths: Paths | None = None,
        platform: Platform | None = None,
        known: dict[str, str] | None = None,
        on_note: Callable[[str], None] | None = None,
    ):
        self.entry = entry
        self.access = access
        self.accept_new = accept_new_host_keys
        self.paths = paths or Paths()
        self.platform = platform or Platform()
        self.layout: dict[str, dict[str, str]] = {}  # platform: and paths: keys found on the entry host
        self.known = known or {}  # name -> address already declared (an existing output file)
        self.notes: list[str] = []
        self.on_note = on_note

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self.on_note:
            self.on_note(text)

    def _state(self, master: dict, clients: Sequence[Host] = ()) -> DesiredState:
        """A provisional desired state, to probe with (overrides of undeclared names dropped)."""
        names = {h.name for h in clients}
        if master["mode"] == "serviceguard":
            names |= {m.name for m in master["members"]}
        else:
            names.add(master["host"].name)
        access = self.access.model_copy(update={"hosts": {n: o for n, o in self.access.hosts.items() if n in names}})
        return DesiredState.model_validate(
            {"version": 1, "site": "import", "master": master, "clients": list(clients), "access": access, "paths": self.paths, "platform": self.platform}
        )

    def run(self) -> Found:
        address = resolve(self.entry)
        with Pool(self.access, accept_new_host_keys=self.accept_new) as pool:
            found = self._discover(pool, address)
            self._layout(found)
            if found.cmviewcl_rc == 0:
                return self._cluster(pool, address, found)
            if found.standalone:
                return self._standalone(pool, address, found)
        why = next((line for line in reversed(found.cmviewcl) if line.strip()), "no output")
        raise ImportFailed(
            f"{self.entry} ({address}) is neither a member of a Serviceguard cluster (cmviewcl: {why[:200]}) nor a "
            f"standalone master (no {self.paths.standalone_master_inputs}); start from the master or a cluster member"
        )

    def _discover(self, pool: Pool, address: str, name: str | None = None) -> Discovery:
        host = Host(name=name or _label("entry", address), address=address)
        what = name or self.entry
        try:
            session = pool.connect(host)
            result = session.run_script(
                discovery.discover(
                    package_files_dir=self.paths.package_files_dir, standalone_master_inputs=self.paths.standalone_master_inputs, platform=self.platform
                ),
                timeout=self.access.command_timeout,
            )
        except TransportError as e:
            hint = " (first contact? pass --accept-new-host-keys)" if e.kind == "host-key" and "CHANGED" not in e.reason else ""
            raise ImportFailed(
                f"cannot probe {what} ({address}): {e.reason}{hint}; check the connection settings (--access FILE: user, port, identity_file, known_hosts)"
            ) from None
        found = parse_discovery(result.stdout.decode("utf-8", "replace"))
        if not found.complete:
            err = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ImportFailed(f"{what} ({address}): the discovery script did not finish (exit {result.exit_code})" + (f": {err[-1][:200]}" if err else ""))
        if found.failures:
            raise ImportFailed(f"{what} ({address}): the discovery script could not read everything: " + "; ".join(found.failures[:3]))
        return found

    def _layout(self, found: Discovery) -> None:
        """Where the entry host keeps Serviceguard's and cfengine's commands and the package's
        files, where csync would not find them with the settings in force: kept in
        ``self.layout`` (written under platform: and paths:) and used from now on."""
        platform: dict[str, str] = {}
        paths: dict[str, str] = {}
        for key, tools, what in (("serviceguard_path", ("cmviewcl",), "Serviceguard"), ("cfengine_path", ("cfagent", "cfrun"), "cfengine")):
            searched = getattr(self.platform, key).split(":")
            where = next((found.where[t] for t in tools if t in found.where), None)
            if where is not None and where not in searched:
                platform[key] = where
                self.note(
                    f"{what}'s commands are in {where} on {self.entry}, outside the search path in force ({':'.join(searched)}): written as platform.{key}"
                )
        if found.package_dir and found.package_dir != self.paths.package_files_dir and found.package_files:
            paths["package_files_dir"] = found.package_dir
            self.note(
                f"the package's files are in {found.package_dir} on {self.entry} (SGCONF of /etc/cmcluster.conf), not in "
                f"{self.paths.package_files_dir}: written as paths.package_files_dir"
            )
        try:
            self.platform = Platform.model_validate({**self.platform.model_dump(), **platform})
            self.paths = Paths.model_validate({**self.paths.model_dump(), **paths})
        except ValidationError as e:
            raise ImportFailed(f"{self.entry}: where it keeps Serviceguard or cfengine is not a path csync accepts: {_first_error(e)}") from None
        self.layout = {k: v for k, v in (("platform", platform), ("paths", paths)) if v}

    # --- a Serviceguard cluster ----------------------------------------------------------------
    def _cluster(self, pool: Pool, address: str, found: Discovery) -> Found:
        try:
            parse = parse_cmviewcl_table if found.cmviewcl_format == "table" else parse_cmviewcl_line
            cluster = parse(found.cmviewcl)
        except CmviewclParseError as e:
            raise ImportFailed(f"{self.entry}: cmviewcl output not understood: {e}") from None
        if not cluster.name:
            raise ImportFailed(f"{self.entry}: cmviewcl names no cluster")
        package = self._package(cluster, found)
        view = cluster.packages[package]
        conf = dict(found.package_files)  # last value of each key
        member_names = list(cluster.nodes) or [n.name for n in view.nodes]
        entry_name = short_name(found.hostname)
        members = []
        for name in member_names:
            where = self.known.get(name) or found.etc_hosts.get(name) or (address if name == entry_name else None)
            if where is None:
                raise ImportFailed(
                    f"cannot tell the address of member {name}: it is not in /etc/hosts on {self.entry}; "
                    f"add it there (Serviceguard wants every node there), or declare it in the output file and import again"
                )
            if not is_host_name(name):
                raise ImportFailed(f"member {name!r} of cluster {cluster.name} is not a host name csync accepts")
            members.append(MasterHost(name=name, address=where))
        if not ("ip_address" in conf and "fs_directory" in conf):
            # a member not configured yet (added while the package was down) lacks the
            # package's file: ask the others
            for m in members:
                if m.address == address:
                    continue
                try:
                    other = self._discover(pool, m.address, name=m.name)
                except ImportFailed as e:
                    self.note(f"could not read the package's file on member {m.name}: {e}")
                    continue
                if other.cmviewcl_rc == 0:
                    more = dict(other.package_files)
                    if more.get("package_name", package) == package and "ip_address" in more:
                        conf = {**more, **conf}
                        break
        # a modular package has an ip_address line per relocatable address: the first is its address
        listed = found.package_files if "ip_address" in dict(found.package_files) else list(conf.items())
        ips = list(dict.fromkeys(v for k, v in listed if k == "ip_address" and is_ipv4(v)))
        pkg_address = ips[0] if ips else self.known.get("@package")
        if pkg_address is None:
            raise ImportFailed(
                f"cannot tell the relocatable address of package {package}: no ip_address in {self.paths.package_files_dir}/*.conf "
                f"on {self.entry}; declare master.package.address in the output file and import again"
            )
        mount = conf.get("fs_directory") or self.known.get("@mount")
        if not mount:
            mount = "/csync"
            self.note(f"no fs_directory in the package's file on {self.entry}: the mount point is assumed to be {mount}; check it")
        order = view.node_order() if any(n.order for n in view.nodes) else []
        node = order[0] if order else view.owner
        package_data: dict[str, Any] = {"name": package, "address": pkg_address, "mount": mount}
        if ips[1:]:
            package_data["extra_addresses"] = ips[1:]
        if node in member_names:
            package_data["node"] = node
        master = {"mode": "serviceguard", "cluster": cluster.name, "package": package_data, "members": members}
        try:
            state = self._state(master)
        except ValidationError as e:
            raise ImportFailed(f"the cluster as found does not make a valid desired state: {_first_error(e)}") from None
        facts = probe_site(state, pool).hosts
        for f in facts.values():
            if not f.reachable:
                self.note(f"member {f.name} ({f.address}) did not answer ({f.reason}); its key store was not read")
        declared = {m.address for m in members} | {pkg_address, *ips[1:]}
        in_store = set().union(*(_key_addresses(f) for f in facts.values() if f.reachable)) if facts else set()
        if not any(f.reachable for f in facts.values()):
            raise ImportFailed("no member answered: the master's key store (the clients) cannot be read")
        if view.running and not any(f.package_fs and f.package_fs.mounted for f in facts.values()):
            self.note(f"package {package} runs on {view.owner}, but its filesystem was not found mounted at {mount}")
        clients, cfrun, extra = self._clients(
            pool, state, sorted(in_store - declared, key=_ip_key), [m.address for m in members], found, masters=[m.name for m in members]
        )
        site = cluster.name if is_host_name(cluster.name) else "site"
        intent = self._intent(package, view)
        if intent != "running":
            package_data["state"] = intent
        data = {
            "version": 1,
            "site": site,
            "master": {
                "mode": "serviceguard",
                "cluster": cluster.name,
                "package": dict(package_data),
                "members": [{"name": m.name, "address": m.address, **({"extra_addresses": extra[m.name]} if m.name in extra else {})} for m in members],
            },
            "clients": clients,
            "keys": {"distribution": "copy", "cfrun": cfrun, "prune": False},
            **self.layout,
        }
        return Found(data, self.notes)

    def _intent(self, package: str, view: PackageView) -> str:
        """The package's state as found, written as the administrator's intent: csync must not
        undo on its first plan what someone did on purpose (a halt, switching disabled)."""
        if view.running and view.autorun == "enabled":
            return "running"
        if view.running:
            self.note(
                f"package {package} runs with switching (AUTO_RUN) {view.autorun}: written as state: unmanaged, so "
                f"csync does not re-enable it; set state: running to have csync keep switching enabled"
            )
            return "unmanaged"
        if view.status == "down" and view.state == "halted":
            self.note(
                f"package {package} is halted: written as state: halted (maintenance), so csync does not start it; set state: running to have csync start it"
            )
            return "halted"
        self.note(
            f"package {package} is {view.status} ({view.state}): written as state: unmanaged, so csync leaves it "
            f"alone; set state: running or halted once it is back in service"
        )
        return "unmanaged"

    def _package(self, cluster: ClusterView, found: Discovery) -> str:
        configured = [v for k, v in found.package_files if k == "package_name" and v in cluster.packages]
        if configured:
            return configured[0]
        if "csync" in cluster.packages:
            return "csync"
        if len(cluster.packages) == 1:
            return next(iter(cluster.packages))
        names = ", ".join(sorted(cluster.packages)) or "none"
        raise ImportFailed(
            f"{self.entry} is a member of cluster {cluster.name}, but which package is the csync master cannot be told "
            f"(packages: {names}; no package file in {self.paths.package_files_dir})"
        )

    # --- a standalone master --------------------------------------------------------------------
    def _standalone(self, pool: Pool, address: str, found: Discovery) -> Found:
        name = short_name(found.hostname)
        if name is None:
            raise ImportFailed(f"{self.entry}: its name {found.hostname!r} (uname -n) is not a host name csync accepts")
        master = {"mode": "standalone", "host": MasterHost(name=name, address=address)}
        state = self._state(master)
        facts = probe_site(state, pool).hosts[name]
        if not facts.reachable:
            raise ImportFailed(f"cannot probe {name} ({address}): {facts.reason}")
        clients, cfrun, extra = self._clients(pool, state, sorted(_key_addresses(facts) - {address}, key=_ip_key), [address], found, masters=[name])
        data = {
            "version": 1,
            "site": name,
            "master": {"mode": "standalone", "host": {"name": name, "address": address, **({"extra_addresses": extra[name]} if name in extra else {})}},
            "clients": clients,
            "keys": {"distribution": "copy", "cfrun": cfrun, "prune": False},
            **self.layout,
        }
        return Found(data, self.notes)

    # --- the clients ----------------------------------------------------------------------------
    def _clients(
        self, pool: Pool, state: DesiredState, addresses: list[str], master_addresses: list[str], found: Discovery, masters: Sequence[str] = ()
    ) -> tuple[list[dict], str, dict[str, list[str]]]:
        """The clients at ``addresses`` (the key store's), named by their own `uname -n`; an
        address that answers with the name of a master host (a member, the standalone master)
        is that host's extra address (another LAN), not a client."""
        extra: dict[str, list[str]] = {}
        if not addresses:
            return [], "all-members", extra
        provisional = [Host(name=_label("client", a), address=a) for a in addresses]
        probe_state = state.model_copy(update={"clients": provisional})
        facts = probe_site(probe_state, pool, only=[h.name for h in provisional]).hosts
        by_address_known = {a: n for n, a in self.known.items() if not n.startswith("@")}
        by_address_hosts: dict[str, str] = {}
        for n, a in found.etc_hosts.items():
            if is_host_name(n):
                by_address_hosts.setdefault(a, n)
        clients: list[dict] = []
        names: dict[str, str] = {}
        with_member_keys = answered = 0
        for host in provisional:
            f = facts[host.name]
            name = short_name(f.hostname) if f.reachable else None
            name = name or by_address_known.get(host.address) or by_address_hosts.get(host.address)
            master = next((m for m in masters if f.reachable and name and m.lower() == name.lower()), None)
            if master is not None:
                extra.setdefault(master, []).append(host.address)
                self.note(f"{host.address} answers as {master}: declared as an extra address of {master}")
                continue
            if f.reachable:
                answered += 1
                held = _key_addresses(f)
                with_member_keys += any(a in held for a in master_addresses)
            elif name:
                self.note(f"client {name} ({host.address}) did not answer ({f.reason}); declared from the key store")
            if name is None:
                self.note(
                    f"{dsau.peer_key_name(host.address)} is in the master's key store, but {host.address} did not answer "
                    f"({f.reason}) and has no name in /etc/hosts: not declared"
                )
                continue
            if name.lower() in names:
                raise ImportFailed(
                    f"clients {names[name.lower()]} and {host.address} both call themselves {name}; fix the host names (or the key store) and import again"
                )
            names[name.lower()] = host.address
            clients.append({"name": name, "address": host.address})
        cfrun = "all-members" if answered == 0 or with_member_keys * 2 >= answered else "none"
        return clients, cfrun, extra


def _first_error(error: ValidationError) -> str:
    e = error.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"


# --- writing the YAML -----------------------------------------------------------------------------
