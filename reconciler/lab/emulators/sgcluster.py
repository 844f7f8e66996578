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
- ``cmrunpkg`` refuses a node whose switching is disabled for the package [doc: a package may
  be run on a new node "provided that the package is enabled for the new node"].
- Live Application Detach (A.11.20) [doc]: ``cmhaltnode -d`` / ``cmhaltcl -d`` halt the node(s)
  and leave their packages running, unmonitored: status and state ``detached``. A detached
  package cannot be run; it can be halted from a node still in the cluster, not while the
  cluster is down; ``cmrunnode`` / ``cmruncl`` re-attach it. A package in maintenance mode
  cannot be detached. A detached package whose node died (lab node-down) stays ``detached``
  until the node rejoins; then Serviceguard finds it failed, halts it and restarts it on
  another eligible node.
- Maintenance mode (A.11.19) [doc]: ``cmmodpkg -m on [-n node] pkg`` needs AUTO_RUN disabled;
  a running package only on its own node, a halted one only with ``-n`` (an up node of its
  list). A running package in maintenance is ``up``/``maintenance``; it runs only on its
  maintenance node; ``cmhaltpkg`` leaves it in maintenance; its node halting or failing takes
  it out of maintenance, halted and not restarted. A halted package in maintenance shows
  ``down``/``maintenance`` [ours].
- Transitory states ``starting`` / ``halting`` are made only by the lab (``Cluster.freeze``,
  ``csync lab pkg-state``) [ours]; ``cmrunpkg`` / ``cmhaltpkg`` refuse such a package [doc].
- A package failure (``Cluster.package_failed``, ``csync lab pkg-fail``: a service of the
  package failed on its node) [ours, after HP]: the package halts on that node ("failing"),
  switching for the package is disabled on that node (it is re-enabled with cmmodpkg -e -n),
  and with AUTO_RUN enabled it starts on the next eligible node; with none, or AUTO_RUN
  disabled, it stays ``down``/``failed`` [doc: state failed, "The package is down and failed"].
- Preview (``-t``, A.11.19) [doc]: the command is run on a copy of the cluster that is never
  written, and the actions it would take are printed in HP's format
  ``package:P|node:N|action:starting``; refused on a package in maintenance mode [doc].
"""

from __future__ import annotations

import contextlib

try:  # imported as reconciler.lab.emulators.sgcluster on the machine ...
    from . import labhost
except ImportError:  # ... and as a top-level module next to it inside the hosts
    import labhost  # type: ignore[no-redef]

STATE_FILE = "cluster.json"
PKGFS = "pkgfs"

# Serviceguard releases [doc: "Managing Serviceguard", 15th edition (A.11.18, 2008) documents
# cmviewcl -f line; 16th edition (A.11.19, March 2009) adds maintenance mode and the -t preview;
# 18th edition (A.11.20, September 2010) adds Live Application Detach].
DEFAULT_RELEASE = "A.11.20.00"  # [ours] the lab's default
LINE_FORMAT_SINCE = (11, 18)
PREVIEW_SINCE = (11, 19)
MAINTENANCE_SINCE = (11, 19)
DETACH_SINCE = (11, 20)
TRANSITORY = ("starting", "halting")


def normalize_release(text: str) -> str:
    """``A.11.19`` -> ``A.11.19.00``; ValueError for anything that is not ``A.NN.NN[.NN]``."""
    parts = text.strip().split(".")
    if len(parts) not in (3, 4) or parts[0] != "A" or not all(p.isdigit() and len(p) == 2 for p in parts[1:]):
        raise ValueError(f"{text!r} is not a Serviceguard release (A.11.20 or A.11.20.00)")
    return ".".join(parts + ["00"] * (4 - len(parts)))


def release_tuple(release: str) -> tuple[int, int]:
    parts = release.split(".")
    return int(parts[1]), int(parts[2])


class SgError(Exception):
    """A command refused or failed; ``str()`` is the message Serviceguard would print."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def new_cluster(name: str, nodes: list[str], package: dict | None) -> dict:
    """A cluster with every node up and running; ``package`` is
    {name, address, mount, owner (None = halted), autorun}."""
    data = {"name": name, "status": "up", "nodes": [{"name": n, "status": "up", "state": "running"} for n in nodes], "packages": []}
    if package is not None:
        running = package.get("owner") is not None
        data["packages"].append(
            {
                "name": package["name"],
                "address": package["address"],
                "mount": package["mount"],
                "status": "up" if running else "down",
                "state": "running" if running else "halted",
                "owner": package.get("owner"),
                "autorun": package.get("autorun", "enabled" if running else "disabled"),
                "nodes": [{"name": n, "switching": "enabled"} for n in nodes],
            }
        )
    return data


class Cluster:
    """The cluster as a command sees it. Change it only inside ``Cluster.edit(lab)``."""

    def __init__(self, data: dict, lab: labhost.LabState, preview: bool = False):
        self.data = data
        self.lab = lab
        self.log: list[str] = []  # what the command prints on success
        # preview (-t): mounts are not touched and nothing is written; the actions the
        # command would take are recorded in HP's preview format instead.
        self.preview = preview
        self.actions: list[str] = []

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

    @classmethod
    def previewing(cls, lab: labhost.LabState) -> Cluster:
        """A copy of the cluster to run a command on with ``-t``: never written back."""
        return cls(lab.read_json(STATE_FILE), lab, preview=True)

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
        return n is not None and n["status"] == "up" and self.switching(pkg, node) == "enabled" and self.lab.alive(node)

    def _adoptive(self, pkg: dict, after: str | None) -> str | None:
        """The node the package goes to: the first eligible node of its list, starting after
        ``after`` (a failover) or at the primary node (a start), wrapping round."""
        order = [e["name"] for e in pkg["nodes"]]
        if after in order:
            i = order.index(after)
            order = order[i + 1 :] + order[:i]
        return next((n for n in order if self._eligible(pkg, n)), None)

    # --- the package filesystem ----------------------------------------------------------
    def _mount(self, pkg: dict, node: str) -> None:
        if self.preview:
            return
        pid = self.lab.pid_of(node)
        if pid is None:
            raise SgError(f"Unable to mount the filesystem of package {pkg['name']} on node {node}: node is not reachable.")
        mount, source = pkg["mount"], f"{labhost.IN_HOST_STATE}/{PKGFS}"
        done = labhost.in_mount_ns(pid, ["/bin/sh", "-c", f"mountpoint -q {mount} || mount --bind {source} {mount}"])
        if done.returncode != 0:
            raise SgError(f"Unable to mount {mount} on node {node}: {done.stderr.decode(errors='replace').strip()}")

    def _unmount(self, pkg: dict, node: str) -> None:
        if self.preview:
            return
        pid = self.lab.pid_of(node)
        if pid is None:
            return  # the node's namespace died with it, and its mounts with it
        # Lazy: a shell whose working directory is in the filesystem must not block a halt.
        labhost.in_mount_ns(pid, ["/bin/sh", "-c", f"! mountpoint -q {pkg['mount']} || umount -l {pkg['mount']}"])

    def _action(self, pkg: dict, node: str, action: str) -> None:
        self.actions.append(f"package:{pkg['name']}|node:{node}|action:{action}")

    def _start(self, pkg: dict, node: str) -> None:
        self._mount(pkg, node)
        self._action(pkg, node, "starting")
        in_maintenance = pkg.get("maintenance") == node
        pkg.update(status="up", state="maintenance" if in_maintenance else "running", owner=node)

    def _halt(self, pkg: dict) -> None:
        if pkg.get("owner"):
            self._unmount(pkg, pkg["owner"])
            self._action(pkg, pkg["owner"], "halting")
        pkg.update(status="down", state="maintenance" if pkg.get("maintenance") else "halted", owner=None)

    def _fail_over(self, pkg: dict, failed: str) -> None:
        """The package's node went away: restart it on the next adoptive node, if allowed."""
        self._action(pkg, failed, "failing")
        if pkg.get("maintenance"):
            # [doc] "If the node the package is running on is halted or crashes, the package
            # will no longer be in maintenance mode but will not be automatically started."
            pkg.pop("maintenance", None)
            pkg.update(status="down", state="halted", owner=None)
            self.log.append(f"Package {pkg['name']} halted and taken out of maintenance mode: its node {failed} left the cluster.")
            return
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
            if pkg["status"] == "down" and pkg["state"] in ("halted", "failed") and not pkg.get("maintenance") and pkg["autorun"] == "enabled":
                target = self._adoptive(pkg, after=None)
                if target is not None:
                    self._start(pkg, target)
                    self.log.append(f"Package {pkg['name']} started on node {target}.")

    def _refresh_status(self) -> None:
        self.data["status"] = self.status

    # --- commands ------------------------------------------------------------------------
    def _not_transitory(self, pkg: dict, what: str, cmd: str) -> None:
        if pkg["status"] in TRANSITORY:
            raise SgError(
                f"{cmd}: Unable to {what} package {pkg['name']}: package is {pkg['status']} on node "
                f"{pkg.get('owner')}; try again when it is no longer in a transitory state."
            )

    def no_preview_in_maintenance(self, pkg_name: str, cmd: str) -> None:
        """[doc] "You cannot use the -t option with any command operating on a package in
        maintenance mode"."""
        pkg = self.package(pkg_name, cmd)
        if pkg.get("maintenance"):
            raise SgError(f"{cmd}: Unable to preview: package {pkg_name} is in maintenance mode on node {pkg['maintenance']}.")

    def run_package(self, pkg_name: str, node_name: str, cmd: str = "cmrunpkg") -> None:
        pkg = self.package(pkg_name, cmd)
        node = self.node(node_name, cmd)
        if pkg["status"] == "up":
            raise SgError(f"{cmd}: Unable to run package {pkg_name}: package is already running on node {pkg['owner']}.")
        if pkg["status"] == "detached":
            # [doc] "You cannot run a package that has been detached": halt it first.
            raise SgError(f"{cmd}: Unable to run package {pkg_name}: package is detached on node {pkg['owner']}. Halt it first (cmhaltpkg {pkg_name}).")
        self._not_transitory(pkg, "run", cmd)
        if self.switching(pkg, node_name) is None:
            raise SgError(f"{cmd}: Unable to run package {pkg_name} on node {node_name}: node is not configured to run the package.")
        if node["status"] != "up":
            raise SgError(f"{cmd}: Unable to run package {pkg_name} on node {node_name}: node is not running (status {node['status']}, state {node['state']}).")
        if self.switching(pkg, node_name) != "enabled":
            raise SgError(
                f"{cmd}: Unable to run package {pkg_name} on node {node_name}: node switching is disabled for the "
                f"package on this node (enable it with cmmodpkg -e -n {node_name} {pkg_name})."
            )
        if pkg.get("maintenance") and pkg["maintenance"] != node_name:
            # [doc] "While the package is in maintenance mode on a node, you can run the package only on that node."
            raise SgError(
                f"{cmd}: Unable to run package {pkg_name} on node {node_name}: package is in maintenance mode "
                f"on node {pkg['maintenance']} and can run only there."
            )
        self.log.append(f"Running package {pkg_name} on node {node_name}")
        try:
            self._start(pkg, node_name)
        except SgError as e:
            raise SgError(f"{cmd}: Unable to run package {pkg_name} on node {node_name}: {e}") from None
        self.log += [f"Successfully started package {pkg_name} on node {node_name}", f"{cmd}: All specified packages are running"]

    def halt_package(self, pkg_name: str, cmd: str = "cmhaltpkg") -> None:
        pkg = self.package(pkg_name, cmd)
        self._not_transitory(pkg, "halt", cmd)
        if pkg["status"] == "detached" and self.status != "up":
            # [doc] "You cannot halt detached packages while the cluster is down."
            raise SgError(
                f"{cmd}: Unable to halt package {pkg_name}: package is detached and the cluster is down; start the cluster (cmruncl) to re-attach it first."
            )
        if pkg["status"] not in ("up", "detached"):
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
            if enable and pkg.get("maintenance"):
                # [ours] a package in maintenance mode is never started or failed over by
                # Serviceguard [doc]; the lab refuses to enable its global switching.
                raise SgError(
                    f"{cmd}: Unable to enable switching of package {pkg_name}: package is in maintenance mode "
                    f"on node {pkg['maintenance']}; take it out first (cmmodpkg -m off {pkg_name})."
                )
            if enable and pkg["status"] == "detached" and self.preview:
                raise SgError(f"{cmd}: Unable to preview: cmmodpkg -e -t is not supported for detached package {pkg_name}.")
            pkg["autorun"] = value
        if enable:
            self._settle()
        self.log.append(f"{cmd}: Completed successfully on all packages specified")

    def maintenance(self, pkg_name: str, on: bool, node_name: str | None, cmd: str = "cmmodpkg") -> None:
        """``cmmodpkg -m on|off [-n node] pkg`` [doc: Managing Serviceguard, "Maintaining a
        Package: Maintenance Mode", rules for a package in maintenance mode]."""
        pkg = self.package(pkg_name, cmd)
        if node_name is not None:
            self.node(node_name, cmd)
        if not on:
            if pkg.get("maintenance"):  # [ours] -m off of a package not in maintenance succeeds
                pkg.pop("maintenance")
                pkg["state"] = {"up": "running", "down": "halted"}.get(pkg["status"], pkg["state"])
            self.log.append(f"{cmd}: Completed successfully on all packages specified")
            return
        where = f"{cmd}: Unable to place package {pkg_name} in maintenance mode"
        if pkg["status"] == "detached":
            raise SgError(f"{where}: package is detached on node {pkg['owner']}.")
        self._not_transitory(pkg, "place in maintenance mode", cmd)
        if pkg["autorun"] == "enabled":
            raise SgError(f"{where}: package switching is enabled; disable it first (cmmodpkg -d {pkg_name}).")
        if pkg["status"] == "up":
            if node_name is not None and node_name != pkg["owner"]:
                raise SgError(
                    f"{where} on node {node_name}: package is running on node {pkg['owner']}; "
                    f"a running package can be placed in maintenance mode only on its own node."
                )
            node_name = pkg["owner"]
        elif node_name is None:
            raise SgError(f"{where}: package is not running; name the node with -n.")
        if pkg.get("maintenance") and pkg["maintenance"] != node_name:
            raise SgError(f"{where} on node {node_name}: package is already in maintenance mode on node {pkg['maintenance']}.")
        if self.switching(pkg, node_name) is None:
            raise SgError(f"{where} on node {node_name}: node is not configured to run the package.")
        node = self.node(node_name, cmd)
        if node["status"] != "up":
            raise SgError(f"{where} on node {node_name}: node is not running (status {node['status']}, state {node['state']}).")
        pkg["maintenance"] = node_name
        pkg["state"] = "maintenance"
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
            self._reattach(name)
        self._settle()
        self.log.append(f"{cmd}: Completed successfully on all nodes specified")

    def _reattach(self, name: str) -> None:
        """[doc] Restarting a node re-attaches its detached packages: Serviceguard monitors
        them again (it does not check mount points, so the lab does not either)."""
        for pkg in self.packages:
            if pkg["status"] == "detached" and pkg.get("owner") == name:
                pkg.update(status="up", state="running")
                self.log.append(f"Package {pkg['name']} re-attached on node {name}.")

    def halt_nodes(self, names: list[str], force: bool, cmd: str = "cmhaltnode", detach: bool = False) -> None:
        for name in names:
            self.node(name, cmd)
        running = [(p, p["owner"]) for p in self.packages if p["status"] in ("up", *TRANSITORY) and p["owner"] in names]
        if detach:
            for pkg, owner in running:
                if pkg.get("maintenance"):  # [doc] a package in maintenance mode cannot be detached
                    raise SgError(f"{cmd}: Unable to halt node {owner} with -d: package {pkg['name']} is in maintenance mode and cannot be detached.")
                if pkg["status"] in TRANSITORY:  # [ours] like halt_aborted [doc]: no detach mid-transition
                    raise SgError(f"{cmd}: Unable to halt node {owner} with -d: package {pkg['name']} is {pkg['status']}.")
        elif running and not force:
            pkg, owner = running[0]
            raise SgError(f"{cmd}: Unable to halt node {owner}: package {pkg['name']} is running on it. Use -f to halt the node and fail its packages over.")
        halted = []
        for name in names:
            node = self.node(name, cmd)
            if node["status"] != "up":
                self.log.append(f"{cmd}: Node {name} is not running.")
                continue
            for pkg, owner in running:
                if owner == name and detach:
                    pkg.update(status="detached", state="detached")  # still running, mount kept
                    self._action(pkg, name, "detaching")
                    self.log.append(f"Package {pkg['name']} detached on node {name}.")
                elif owner == name:
                    self.log.append(f"Halting package {pkg['name']} on node {name}")
                    self._unmount(pkg, name)
            node.update(status="down", state="halted")
            halted.append(name)
            self.log.append(f"Node {name} halted.")
        # Only once every named node is down, so no package fails over to one of them.
        if not detach:
            for pkg, owner in running:
                if owner in halted:
                    self._fail_over(pkg, owner)
        self.log.append(f"{cmd}: Completed successfully on all nodes specified")

    def halt_cluster(self, force: bool, detach: bool, cmd: str = "cmhaltcl") -> None:
        """``cmhaltcl [-f|-d]``: every node halts [doc]; without -f or -d a running package
        refuses it [ours, as cmhaltnode]."""
        up = [n["name"] for n in self.nodes if n["status"] == "up"]
        running = [p for p in self.packages if p["status"] in ("up", *TRANSITORY)]
        if running and not (force or detach):
            raise SgError(
                f"{cmd}: Unable to halt cluster {self.name}: package {running[0]['name']} is running. Use -f to halt its packages, or -d to detach them."
            )
        self.halt_nodes(up, force=force, cmd=cmd, detach=detach)
        self.log[-1] = f"{cmd}: Completed successfully"

    def run_cluster(self, cmd: str = "cmruncl") -> None:
        """``cmruncl``: every node whose host runs joins; detached packages are re-attached."""
        names = [n["name"] for n in self.nodes if n["status"] != "up" and self.lab.alive(n["name"])]
        self.run_nodes(names, cmd=cmd)
        self.log[-1] = f"{cmd}: Completed successfully"

    # --- the lab's own controls [ours] ----------------------------------------------------
    def freeze(self, pkg_name: str, state: str, node_name: str | None = None) -> None:
        """Hold a package in a transitory state, as a run or halt script that has not finished:
        ``starting`` (a halted package; on ``node_name``, default its first eligible node; the
        filesystem is not mounted yet) or ``halting`` (an up package; its filesystem stays
        mounted). ``release`` finishes the transition."""
        cmd = "lab pkg-state"
        pkg = self.package(pkg_name, cmd)
        if state == "starting":
            if pkg["status"] != "down":
                raise SgError(f"{cmd}: package {pkg_name} is {pkg['status']}; only a halted package can be starting.")
            node_name = node_name or self._adoptive(pkg, after=None) or pkg["nodes"][0]["name"]
            if self.switching(pkg, node_name) is None:
                raise SgError(f"{cmd}: node {node_name} is not configured to run package {pkg_name}.")
            pkg.update(status="starting", state="starting", owner=node_name)
        elif state == "halting":
            if pkg["status"] != "up":
                raise SgError(f"{cmd}: package {pkg_name} is {pkg['status']}; only a running package can be halting.")
            pkg.update(status="halting", state="halting")
        elif state == "release":
            if pkg["status"] == "starting":
                self._start(pkg, pkg["owner"])
                self.log.append(f"Package {pkg_name} started on node {pkg['owner']}.")
            elif pkg["status"] == "halting":
                self._halt(pkg)
                pkg["autorun"] = "disabled"  # it was a cmhaltpkg [doc: halting]
                self.log.append(f"Package {pkg_name} halted.")
            else:
                raise SgError(f"{cmd}: package {pkg_name} is {pkg['status']}, not starting or halting.")
        else:
            raise SgError(f"{cmd}: the state is starting, halting or release, not {state!r}.", code=2)

    # --- events that come from the machine, not from a command ---------------------------
    def package_failed(self, pkg_name: str) -> None:
        """A service of the running package failed on its node (lab pkg-fail): see the module's
        rules. A package in maintenance, detached, in transition or halted cannot fail so."""
        cmd = "lab pkg-fail"
        pkg = self.package(pkg_name, cmd)
        if pkg["status"] != "up" or pkg["state"] != "running":
            raise SgError(f"{cmd}: package {pkg_name} is {pkg['status']}/{pkg['state']}; only a running package (not in maintenance) can fail.")
        node = pkg["owner"]
        self._unmount(pkg, node)
        self._action(pkg, node, "failing")
        for entry in pkg["nodes"]:
            if entry["name"] == node:
                entry["switching"] = "disabled"
        pkg.update(status="down", state="failed", owner=None)
        self.log.append(f"Package {pkg_name} failed on node {node}; switching to node {node} disabled.")
        target = self._adoptive(pkg, after=node) if pkg["autorun"] == "enabled" else None
        if target is not None:
            self._start(pkg, target)
            self.log.append(f"Package {pkg_name} failed over from node {node} to node {target}.")

    def node_failed(self, name: str) -> None:
        """The node's host died (lab node-down): its packages fail over. A detached package
        is not monitored [doc]: it stays ``detached`` until its node rejoins."""
        node = self.node(name, "cmcld")
        node.update(status="down", state="failed")
        for pkg in self.packages:
            if pkg["owner"] == name and pkg["status"] != "detached":
                self._fail_over(pkg, name)

    def node_booted(self, name: str) -> None:
        """The node's host is back (lab node-up): it rejoins the cluster at boot. A package
        that was detached there died with the host: on re-attaching, Serviceguard finds it
        failed, halts it and restarts it on another eligible node [doc]."""
        node = self.node(name, "cmcld")
        node.update(status="up", state="running")
        for pkg in self.packages:
            if pkg["owner"] == name and pkg["status"] == "detached":
                self.log.append(f"Package {pkg['name']} failed while detached on node {name}.")
                self._fail_over(pkg, name)
            elif pkg["owner"] == name:  # never left it: mount again in the new namespace
                self._mount(pkg, name)
        self._settle()
