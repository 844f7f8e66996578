"""The lab's Serviceguard cluster: its state and the rules its commands follow.

One module for both sides: the emulated commands inside the hosts (serviceguard.py) and the
Lab on the machine (node-down, node-up, reseed) change the cluster through these methods,
under the lock of ``cluster.json``, so the two can never disagree on what a failover does.
Standard library only (see labhost.py).

The rules [doc] where HP documents them, [ours] where the lab chooses:
- ``cmrunpkg``: the package must be halted; the node must be a cluster node that is up and
  in the package's node list. It mounts the package filesystem on that node; global
  switching (AUTO_RUN) stays as it was [doc: csync enables it afterwards with cmmodpkg -e].
- ``cmhaltpkg``: unmounts, and disables global switching [doc].
- ``cmmodpkg -e pkg``: enables global switching; a halted package then starts on the first
  eligible node, as Serviceguard does for AUTO_RUN packages. ``-n node``: per-node switching.
- Failover [ours: failover_policy configured_node, failback_policy manual]: when the node
  running the package fails (lab node-down) or is halted with ``cmhaltnode -f``, the package
  moves to the next node *after* it in the package's node list (wrapping round) that is up
  and has switching enabled, if AUTO_RUN is enabled; otherwise it stays halted.
- A node that fails is ``down``/``failed``; one halted by cmhaltnode is ``down``/``halted``;
  a node whose host boots again rejoins at once (AUTOSTART_CMCLD=1) [ours].
- The cluster is ``up`` while any node is up, ``down`` otherwise.
"""

from __future__ import annotations

import contextlib

try:  # imported as reconciler.lab.emulators.sgcluster on the machine ...
    from . import labhost
except ImportError:  # ... and as a top-level module next to it inside the hosts
    import labhost  # type: ignore[no-redef]

STATE_FILE = "cluster.json"
PKGFS = "pkgfs"


class SgError(Exception):
    """A command refused or failed; ``str()`` is the message Serviceguard would print."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def new_cluster(name: str, nodes: list[str], package: dict | None) -> dict:
    """A cluster with every node up and running; ``package`` is
    {name, address, mount, owner (None = halted), autorun}."""
    data = {"name": name, "status": "up", "nodes": [{"name": n, "status": "up", "state": "running"} for n in nodes],
            "packages": []}
    if package is not None:
        running = package.get("owner") is not None
        data["packages"].append({
            "name": package["name"], "address": package["address"], "mount": package["mount"],
            "status": "up" if running else "down", "state": "running" if running else "halted",
            "owner": package.get("owner"), "autorun": package.get("autorun", "enabled" if running else "disabled"),
            "nodes": [{"name": n, "switching": "enabled"} for n in nodes],
        })
    return data


class Cluster:
    """The cluster as a command sees it. Change it only inside ``Cluster.edit(lab)``."""

    def __init__(self, data: dict, lab: labhost.LabState):
        self.data = data
        self.lab = lab
        self.log: list[str] = []  # what the command prints on success

    @classmethod
    def read(cls, lab: labhost.LabState) -> Cluster:
        return cls(lab.read_json(STATE_FILE), lab)

    @classmethod
    @contextlib.contextmanager
    def edit(cls, lab: labhost.LabState):
        """Read, change and write back the cluster under its lock; nothing is written if the
        block raises (a refused command changes nothing)."""
        with lab.locked("cluster"):
            cluster = cls.read(lab)
            yield cluster
            cluster._refresh_status()
            lab.write_json(STATE_FILE, cluster.data)

    # --- lookups -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def status(self) -> str:
        return "up" if any(n["status"] == "up" for n in self.nodes) else "down"

    @property
    def nodes(self) -> list[dict]:
        return self.data["nodes"]

    @property
    def packages(self) -> list[dict]:
        return self.data["packages"]

    def node(self, name: str, cmd: str) -> dict:
        for n in self.nodes:
            if n["name"] == name:
                return n
        raise SgError(f"{cmd}: Unable to find node {name} in cluster {self.name}.")

    def package(self, name: str, cmd: str) -> dict:
        for p in self.packages:
            if p["name"] == name:
                return p
        raise SgError(f"{cmd}: Unable to find package {name}.")

    @staticmethod
    def switching(pkg: dict, node: str) -> str | None:
        for entry in pkg["nodes"]:
            if entry["name"] == node:
                return entry["switching"]
        return None

    def _eligible(self, pkg: dict, node: str) -> bool:
        n = next((x for x in self.nodes if x["name"] == node), None)
        return (n is not None and n["status"] == "up" and self.switching(pkg, node) == "enabled"
                and self.lab.alive(node))

    def _adoptive(self, pkg: dict, after: str | None) -> str | None:
        """The node the package goes to: the first eligible node of its list, starting after
        ``after`` (a failover) or at the primary node (a start), wrapping round."""
        order = [e["name"] for e in pkg["nodes"]]
        if after in order:
            i = order.index(after)
            order = order[i + 1:] + order[:i]
        return next((n for n in order if self._eligible(pkg, n)), None)

    # --- the package filesystem ----------------------------------------------------------
    def _mount(self, pkg: dict, node: str) -> None:
        pid = self.lab.pid_of(node)
        if pid is None:
            raise SgError(f"Unable to mount the filesystem of package {pkg['name']} on node {node}: node is not reachable.")
        mount, source = pkg["mount"], f"{labhost.IN_HOST_STATE}/{PKGFS}"
        done = labhost.in_mount_ns(pid, ["/bin/sh", "-c", f"mountpoint -q {mount} || mount --bind {source} {mount}"])
        if done.returncode != 0:
            raise SgError(f"Unable to mount {mount} on node {node}: {done.stderr.decode(errors='replace').strip()}")

    def _unmount(self, pkg: dict, node: str) -> None:
        pid = self.lab.pid_of(node)
        if pid is None:
            return  # the node's namespace died with it, and its mounts with it
        # Lazy: a shell whose working directory is in the filesystem must not block a halt.
        labhost.in_mount_ns(pid, ["/bin/sh", "-c", f"! mountpoint -q {pkg['mount']} || umount -l {pkg['mount']}"])

    def _start(self, pkg: dict, node: str) -> None:
        self._mount(pkg, node)
        pkg.update(status="up", state="running", owner=node)

    def _halt(self, pkg: dict) -> None:
        if pkg.get("owner"):
            self._unmount(pkg, pkg["owner"])
        pkg.update(status="down", state="halted", owner=None)

    def _fail_over(self, pkg: dict, failed: str) -> None:
        """The package's node went away: restart it on the next adoptive node, if allowed."""
        pkg.update(status="down", state="halted", owner=None)
        if pkg["autorun"] != "enabled":
            return
        target = self._adoptive(pkg, after=failed)
        if target is not None:
            self._start(pkg, target)
            self.log.append(f"Package {pkg['name']} failed over from node {failed} to node {target}.")
        else:
            self.log.append(f"Package {pkg['name']} halted: no adoptive node is available.")

    def _settle(self) -> None:
        """Start every halted package whose global switching is enabled, as Serviceguard does."""
        for pkg in self.packages:
            if pkg["status"] != "up" and pkg["autorun"] == "enabled":
                target = self._adoptive(pkg, after=None)
                if target is not None:
                    self._start(pkg, target)
                    self.log.append(f"Package {pkg['name']} started on node {target}.")

    def _refresh_status(self) -> None:
        self.data["status"] = self.status

    # --- commands ------------------------------------------------------------------------
    def run_package(self, pkg_name: str, node_name: str, cmd: str = "cmrunpkg") -> None:
        pkg = self.package(pkg_name, cmd)
        node = self.node(node_name, cmd)
        if pkg["status"] == "up":
            raise SgError(f"{cmd}: Unable to run package {pkg_name}: package is already running on node {pkg['owner']}.")
        if self.switching(pkg, node_name) is None:
            raise SgError(f"{cmd}: Unable to run package {pkg_name} on node {node_name}: node is not configured to run the package.")
        if node["status"] != "up":
            raise SgError(f"{cmd}: Unable to run package {pkg_name} on node {node_name}: node is not running (status {node['status']}, state {node['state']}).")
        self.log.append(f"Running package {pkg_name} on node {node_name}")
        try:
            self._start(pkg, node_name)
        except SgError as e:
            raise SgError(f"{cmd}: Unable to run package {pkg_name} on node {node_name}: {e}") from None
        self.log += [f"Successfully started package {pkg_name} on node {node_name}", f"{cmd}: All specified packages are running"]

    def halt_package(self, pkg_name: str, cmd: str = "cmhaltpkg") -> None:
        pkg = self.package(pkg_name, cmd)
        if pkg["status"] != "up":
            raise SgError(f"{cmd}: Unable to halt package {pkg_name}: package is not running.")
        self.log.append(f"Halting package {pkg_name}")
        self._halt(pkg)
        pkg["autorun"] = "disabled"  # [doc] cmhaltpkg disables global switching
        self.log += [f"Successfully halted package {pkg_name}", f"{cmd}: All specified packages are halted"]

    def modify_package(self, pkg_name: str, enable: bool, node_name: str | None = None, cmd: str = "cmmodpkg") -> None:
        pkg = self.package(pkg_name, cmd)
        value = "enabled" if enable else "disabled"
        if node_name is not None:
            self.node(node_name, cmd)
            entry = next((e for e in pkg["nodes"] if e["name"] == node_name), None)
            if entry is None:
                raise SgError(f"{cmd}: Node {node_name} is not configured to run package {pkg_name}.")
            entry["switching"] = value
        else:
            pkg["autorun"] = value
        if enable:
            self._settle()
        self.log.append(f"{cmd}: Completed successfully on all packages specified")

    def run_nodes(self, names: list[str], cmd: str = "cmrunnode") -> None:
        for name in names:
            node = self.node(name, cmd)
            if not self.lab.alive(name):
                raise SgError(f"{cmd}: Unable to start node {name}: node is not reachable.")
            if node["status"] == "up":
                self.log.append(f"{cmd}: Node {name} is already running in cluster {self.name}.")
                continue
            node.update(status="up", state="running")
            self.log.append(f"Node {name} joined cluster {self.name}.")
        self._settle()
        self.log.append(f"{cmd}: Completed successfully on all nodes specified")

    def halt_nodes(self, names: list[str], force: bool, cmd: str = "cmhaltnode") -> None:
        for name in names:
            self.node(name, cmd)
        running = [(p, p["owner"]) for p in self.packages if p["status"] == "up" and p["owner"] in names]
        if running and not force:
            pkg, owner = running[0]
            raise SgError(f"{cmd}: Unable to halt node {owner}: package {pkg['name']} is running on it. "
                          f"Use -f to halt the node and fail its packages over.")
        halted = []
        for name in names:
            node = self.node(name, cmd)
            if node["status"] != "up":
                self.log.append(f"{cmd}: Node {name} is not running.")
                continue
            for pkg, owner in running:
                if owner == name:
                    self.log.append(f"Halting package {pkg['name']} on node {name}")
                    self._unmount(pkg, name)
            node.update(status="down", state="halted")
            halted.append(name)
            self.log.append(f"Node {name} halted.")
        # Only once every named node is down, so no package fails over to one of them.
        for pkg, owner in running:
            if owner in halted:
                self._fail_over(pkg, owner)
        self.log.append(f"{cmd}: Completed successfully on all nodes specified")

    # --- events that come from the machine, not from a command ---------------------------
    def node_failed(self, name: str) -> None:
        """The node's host died (lab node-down): its packages fail over."""
        node = self.node(name, "cmcld")
        node.update(status="down", state="failed")
        for pkg in self.packages:
            if pkg["owner"] == name:
                self._fail_over(pkg, name)

    def node_booted(self, name: str) -> None:
        """The node's host is back (lab node-up): it rejoins the cluster at boot."""
        node = self.node(name, "cmcld")
        node.update(status="up", state="running")
        for pkg in self.packages:
            if pkg["owner"] == name:  # never left it: mount again in the new namespace
                self._mount(pkg, name)
        self._settle()
