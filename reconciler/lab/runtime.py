"""The lab: an emulated DSAU site of real sshd hosts on 127.0.0.0/8, run from a lab directory.

One host = one OpenSSH ``sshd -D`` in its own mount and UTS namespace (see hostinit.py),
with its own hostname, its own /run, /root, /var/opt/dsau, /opt/dsau, /etc/cmcluster,
/usr/local/sbin and package mount point, listening on its own loopback address.

Lab directory (default ``.csync/lab``)::

    .csync-lab            marks the directory as a lab's (``up`` wipes only such a directory)
    admin/id_ed25519      the key csync logs in with (authorised for root on every host)
    known_hosts           every host's host key, by address ([addr]:port off port 22)
    desired-state.yaml    the converged intent of this lab (absolute paths)
    keys.json             the lab's key material, so that reseed restores the same keys
    hosts/<name>/         per-host trees: run/ root/ var_opt_dsau/ opt_dsau/ etc_cmcluster/
                          usr_local_sbin/ (bind-mounted at /run, /root, ...), scratch/ (the
                          mount point of the host's private tmpfs; always empty on disk)
    state/                shared emulator state, at /run/csync-lab in every host (labhost.py)
    state/runtime.json    per host: sshd PID, start time, mount and UTS namespaces; ``down``
                          kills every process in those namespaces, so it cleans up even after
                          the process that ran ``up`` crashed
    logs/<name>.log       each host's sshd log (and setup errors)

Lab traffic stays on 127.0.0.0/8. Processes are only ever killed by PID, and only when they
are in one of the lab's recorded namespaces (both its mount and UTS namespace must match).
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.domain import dsau
from reconciler.errors import CsyncError
from reconciler.lab import keys as keymod
from reconciler.lab import scenarios, topology
from reconciler.lab import userland as userland_mod
from reconciler.lab.emulators import labhost, sgcluster
from reconciler.lab.keys import rsa_pair  # noqa: F401 - part of this module's API for tests
from reconciler.lab.topology import (
    CLUSTER,
    LAB_MOUNT,
    PACKAGE,
    PACKAGE_ADDRESS,
    PACKAGE_EXTRA_ADDRESS,
    LabHost,
    SgLayout,
)

SSHD = "/usr/sbin/sshd"
SYSTEM_PYTHON = "/usr/bin/python3"  # what the emulated commands run with, inside the hosts
NEEDED_TOOLS = ("/usr/bin/nsenter", "/usr/bin/ssh", "/usr/bin/tar")
EMULATORS = Path(__file__).parent / "emulators"
HOSTINIT = Path(__file__).parent / "hostinit.py"
DEFAULT_DIR = ".csync/lab"
MARKER = ".csync-lab"

# Per-host directories and where they are mounted inside the host; /run comes first, since
# the lab's state directory is mounted inside it. The Serviceguard layout adds its own tree
# (topology.SG_LAYOUTS: /etc/cmcluster, or /usr/local/cmcluster with --sg-layout linux).
HOST_DIRS = (
    ("run", "/run"),
    ("root", "/root"),
    ("var_opt_dsau", "/var/opt/dsau"),
    ("opt_dsau", "/opt/dsau"),
    ("usr_local_sbin", "/usr/local/sbin"),
)
RESET_DIRS = ("root", "var_opt_dsau", "opt_dsau", "usr_local_sbin")  # what reseed rewrites (and the layout's tree)
HOST_RUN = "/run/csync-host"  # the host's own sshd config, host key, PID file
PORT_CANDIDATES = (22, 2222, *range(22000, 22100))
READY_TIMEOUT = 30.0
# Starting a host costs about 10-20 ms of CPU (its namespaces and mounts, then sshd's own
# start): a 2,000-host lab on 2 cores shared with other work needs more than the fixed 30 s,
# so the limits grow with the hosts started at once.
START_SECONDS_PER_HOST = 0.05
START_ATTEMPTS = 3  # a host killed as it started is started again (Lab._start_hosts)


class LabError(CsyncError):
    """The lab cannot do what was asked; ``str()`` says why and what to do."""


class Hosts(Sequence[LabHost]):
    """The lab's hosts in site order (members or master, then clients); ``hosts["node1"]``
    looks one up by name, ``"node1" in hosts`` tests a name."""

    def __init__(self, hosts: list[LabHost]):
        self._list = list(hosts)
        self._by_name = {h.name: h for h in hosts}

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return self._by_name[key]
            except KeyError:
                raise LabError(f"no host {key!r} in the lab (hosts: {', '.join(self._by_name)})") from None
        return self._list[key]

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self) -> Iterator[LabHost]:
        return iter(self._list)

    def __contains__(self, item) -> bool:
        return item in self._by_name if isinstance(item, str) else item in self._list

    def names(self) -> list[str]:
        return list(self._by_name)

    def by_role(self, *roles: str) -> list[LabHost]:
        return [h for h in self._list if h.role in roles]


@dataclass
class HostStatus:
    name: str
    address: str
    role: str
    state: str  # up | down | isolated
    pid: int | None
    extra_addresses: tuple[str, ...] = ()


@dataclass
class LabStatus:
    directory: Path
    scenario: str
    port: int
    hosts: list[HostStatus]
    cluster: dict | None  # cluster.json, or None for a standalone master
    timings: dict[str, float] = field(default_factory=dict)
    package: dict | None = None  # {name, address, extra_addresses, mount}, None for a standalone master

    @property
    def up(self) -> bool:
        return any(h.state != "down" for h in self.hosts)


def check_machine() -> None:
    """Raise LabError naming what is missing for the lab to run on this machine."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it starts sshd hosts in mount and UTS namespaces (run as root)")
    if not os.access(SSHD, os.X_OK):
        raise LabError(f"{SSHD} not found; install OpenSSH's server: apt-get install openssh-server")
    for tool in NEEDED_TOOLS:
        if not os.access(tool, os.X_OK):
            package = {"nsenter": "util-linux", "ssh": "openssh-client", "tar": "tar"}[os.path.basename(tool)]
            raise LabError(f"{tool} not found; install it: apt-get install {package}")
    done = (
        subprocess.run([SYSTEM_PYTHON, "-Es", "-c", "import cryptography.hazmat.primitives.asymmetric.rsa"], capture_output=True)
        if os.access(SYSTEM_PYTHON, os.X_OK)
        else None
    )
    if done is None or done.returncode != 0:
        raise LabError(f"the lab's emulated commands run with {SYSTEM_PYTHON} and need its cryptography module: apt-get install python3-cryptography")


class Lab:
    """A lab directory and the hosts running from it."""

    def __init__(self, directory: str | os.PathLike = DEFAULT_DIR):
        self.dir = Path(directory).absolute()
        self.state = labhost.LabState(str(self.dir / "state"))
        self.timings: dict[str, float] = {}
        # lab.json parsed once per version of the file: a 2,000-host lab reads it for every
        # host it starts, and parsing it each time made starting quadratic
        self._topology: tuple[tuple[int, int, int], dict, Hosts] | None = None

    def __repr__(self) -> str:
        return f"Lab({str(self.dir)!r})"

    # --- layout ------------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def desired_state_path(self) -> Path:
        return self.dir / "desired-state.yaml"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    def host_dir(self, name: str) -> Path:
        return self.dir / "hosts" / name

    # --- what the lab is ---------------------------------------------------------------------
    @property
    def topology(self) -> dict:
        """lab.json (the caller that changes it writes it back: set_sg_release)."""
        return self._read_topology()[1]

    @property
    def hosts(self) -> Hosts:
        return self._read_topology()[2]

    def _read_topology(self) -> tuple[tuple[int, int, int], dict, Hosts]:
        """(the file's identity, lab.json, its hosts), parsed again only when the file was
        replaced (every write renames a new file into place: a new inode) or changed."""
        try:
            st = os.stat(self.state_dir / "lab.json")
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = (0, 0, 0)
        if self._topology is not None and self._topology[0] == key:
            return self._topology
        try:
            data = self.state.topology
        except labhost.LabStateError:
            raise LabError(f"no lab in {self.dir}; start one with: csync lab up --dir {self.dir}") from None
        if data.get("format") != 1:
            raise LabError(f"{self.dir} holds a lab of an older csync; remove it or run csync lab up there again")
        hosts = Hosts([LabHost(h["name"], h["address"], h["role"], tuple(h.get("extra_addresses", ()))) for h in data["hosts"]])
        self._topology = (key, data, hosts)
        return self._topology

    @property
    def package(self) -> dict | None:
        """{name, address, extra_addresses, mount} of the csync package; None for a standalone master."""
        package = self.topology.get("package")
        return None if package is None else {"extra_addresses": [], **package}

    @property
    def addresses(self) -> list[str]:
        """Every address of the lab's hosts and package, extra addresses included."""
        out = [a for h in self.hosts for a in h.addresses]
        if self.package:
            out += [self.package["address"], *self.package["extra_addresses"]]
        return out

    @property
    def port(self) -> int:
        return int(self.topology["port"])

    @property
    def scenario(self) -> str:
        return self.topology["scenario"]

    @property
    def sg_release(self) -> str:
        """The emulated Serviceguard's release (what ``cmversion`` prints)."""
        return self.topology.get("sg_release") or sgcluster.DEFAULT_RELEASE

    @property
    def sg_layout(self) -> SgLayout:
        """Where the members keep Serviceguard (topology.SG_LAYOUTS; `lab up --sg-layout`)."""
        return topology.sg_layout(self.topology.get("sg_layout") or "default")

    @property
    def host_dirs(self) -> tuple[tuple[str, str], ...]:
        """The per-host directories (HOST_DIRS and the Serviceguard layout's tree)."""
        return (*HOST_DIRS, self.sg_layout.host_dir)

    @property
    def userland(self) -> str:
        """The hosts' userland: default (the machine's) or hpux (reconciler/lab/userland.py)."""
        return self.topology.get("userland") or "default"

    def set_sg_release(self, release: str) -> str:
        """[ours] Change the emulated Serviceguard's release of a running lab (as an upgrade
        or a downgrade would, without its rolling steps); the next command sees it. Returns
        the release as cmversion prints it."""
        try:
            release = sgcluster.normalize_release(release)
        except ValueError as e:
            raise LabError(str(e)) from None
        topo = self.topology
        topo["sg_release"] = release
        self.state.write_json("lab.json", topo)
        return release

    def known_hosts_name(self, address: str) -> str:
        """The name ``address`` has in this lab's known_hosts (``[addr]:port`` off port 22)."""
        return topology.known_hosts_name(address, self.port)

    def _runtime(self) -> dict:
        try:
            return self.state.read_json("runtime.json")
        except labhost.LabStateError:
            return {"hosts": {}}

    def _save_runtime(self, runtime: dict) -> None:
        self.state.write_json("runtime.json", runtime)

    @contextlib.contextmanager
    def _runtime_edit(self):
        """Read, change and write back runtime.json under its lock (Lab calls may come from
        several threads or processes: a test isolating a host while an apply runs)."""
        with self.state.locked("runtime"):
            runtime = self._runtime()
            yield runtime
            self._save_runtime(runtime)

    # --- lifecycle ---------------------------------------------------------------------------
    def up(
        self,
        members: int = 3,
        clients: int = 10,
        scenario: str = "fresh",
        sg_release: str | None = None,
        extra_addresses: bool = False,
        userland: str = "default",
        sg_layout: str = "default",
    ) -> float:
        """Start the lab; returns the seconds until every host's sshd listened. ``sg_release``
        is the emulated Serviceguard's release (default A.11.20.00; e.g. A.11.19, A.11.18):
        it decides which options the Serviceguard commands know (docs/LAB.md). ``sg_layout``
        is where the members keep Serviceguard (topology.SG_LAYOUTS: default, or linux:
        Serviceguard for Linux's /usr/local/cmcluster and /etc/cmcluster.conf). With
        ``extra_addresses``, each member (or the standalone master) and the package have a
        second address on 127.0.20.0/24 (topology.EXTRA_NET), and members listen there too.

        Raises LabError when the machine lacks something, a lab already runs in this
        directory, or a host does not start (then nothing is left running)."""
        start = time.monotonic()
        check_machine()
        if userland not in userland_mod.USERLANDS:
            raise LabError(f"unknown userland {userland!r}; choose one of {', '.join(userland_mod.USERLANDS)}")
        lacking = userland_mod.check_userland(userland)
        if lacking:
            raise LabError(lacking)
        try:
            hosts = topology.lab_hosts(members, clients, scenario, extra_addresses)
            release = sgcluster.normalize_release(sg_release or sgcluster.DEFAULT_RELEASE)
            topology.sg_layout(sg_layout)
        except ValueError as e:
            raise LabError(str(e)) from None
        if scenario == "standalone" and sg_layout != "default":
            raise LabError("a standalone master has no Serviceguard: --sg-layout is for a cluster lab")
        if self.running():
            raise LabError(f"a lab is already up in {self.dir}; stop it first: csync lab down --dir {self.dir}")
        self._wipe()
        self.timings = {}
        t = time.monotonic()
        lab_keys = self._make_keys(hosts)
        self.timings["keys"] = time.monotonic() - t
        excluded: set[int] = set()
        for attempt in range(3):
            self.timings["attempts"] = attempt + 1  # a port another lab took meanwhile costs one more
            package_addresses = [] if scenario == "standalone" else [PACKAGE_ADDRESS] + ([PACKAGE_EXTRA_ADDRESS] if extra_addresses else [])
            port = self._choose_port([a for h in hosts for a in h.addresses] + package_addresses, excluded)
            t = time.monotonic()
            self._write_static(hosts, scenario, port, lab_keys, release, extra_addresses, userland, sg_layout)
            built = self._write_scenario(scenario, lab_keys)
            self.timings["files"] = time.monotonic() - t
            t = time.monotonic()
            try:
                self._start_hosts(hosts, owner=built.package_owner)
                break
            except _PortTaken:
                # Another lab (or sshd) took the port between our check and sshd's bind.
                self.down()
                excluded.add(port)
        else:
            raise LabError("no free port on the lab's addresses after 3 attempts; see csync lab status")
        self.timings["start"] = time.monotonic() - t
        self._write_desired_state()
        self.timings["total"] = time.monotonic() - start
        return self.timings["total"]

    def down(self) -> None:
        """Stop every host: no process, mount or listener of the lab is left.

        Works from the record in state/runtime.json alone, so it also cleans up after the
        process that ran ``up`` died; a directory without a lab is left alone."""
        hosts = self._runtime().get("hosts", {})
        entries = list(hosts.values())
        # and any process whose /run is one of this lab's host directories, recorded or not:
        # a lab of the suite once left a host's sshd running after its first start lost a port
        # race and was stopped (not reproduced; the record is the usual way, this the proof)
        owned = self._owned_runs()
        if entries or (owned and _processes_in(set(), set(), owned=owned)):
            self._kill({e["mnt"] for e in entries}, {e["uts"] for e in entries}, self._marks(hosts), owned=owned)
            with self._runtime_edit() as runtime:
                runtime["hosts"] = {}
            self._wait_listeners_closed()

    def _owned_runs(self) -> set[tuple[int, int]]:
        """(device, inode) of every host's own /run directory of this lab (none without lab.json)."""
        try:
            names = [h.name for h in self.hosts]
        except (LabError, OSError, KeyError, ValueError):
            return set()
        return {mark for name in names if (mark := _dir_id(self.host_dir(name) / "run")) is not None}

    def _wait_listeners_closed(self, timeout: float = 5.0) -> None:
        """An exiting process leaves its namespaces before the kernel runs the deferred
        close of its files (task work after exit_task_namespaces), so a listener can outlive
        the last process by a moment; wait for the lab's listeners to be gone."""
        try:
            port, addresses = self.port, {a for h in self.hosts for a in h.addresses}
        except (LabError, OSError, KeyError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while _listening(port).keys() & addresses and time.monotonic() < deadline:
            time.sleep(0.01)

    def running(self) -> bool:
        """True if any process of the lab's recorded namespaces is alive."""
        hosts = self._runtime().get("hosts", {})
        if not hosts:
            return False
        entries = list(hosts.values())
        return bool(_processes_in({e["mnt"] for e in entries}, {e["uts"] for e in entries}, self._marks(hosts)))

    def status(self) -> LabStatus:
        topo = self.topology
        runtime = self._runtime().get("hosts", {})
        out = []
        for h in self.hosts:
            entry = runtime.get(h.name)
            pid = entry["pid"] if _alive(entry) else None  # one read of runtime.json for every host
            state = "down" if pid is None else ("isolated" if entry.get("isolated") else "up")
            out.append(HostStatus(h.name, h.address, h.role, state, pid, h.extra_addresses))
        cluster = None
        if topo.get("package"):
            try:
                cluster = self.state.read_json(sgcluster.STATE_FILE)
            except labhost.LabStateError:
                cluster = None
        return LabStatus(self.dir, topo["scenario"], topo["port"], out, cluster, dict(self.timings), self.package)

    def reseed(self, scenario: str | None = None) -> float:
        """Reset every host's files and the cluster to ``scenario`` (default: the lab's own)
        without restarting the running sshds: fast, for tests. Hosts that are down are
        started, isolated hosts restored. The overlay scratch of the hosts (files written
        outside their own directories) is not reset. Returns the seconds it took."""
        start = time.monotonic()
        topo = self.topology
        scenario = scenario or topo["scenario"]
        if scenario not in topology.SCENARIOS:
            raise LabError(f"unknown scenario {scenario!r}; choose one of {', '.join(topology.SCENARIOS)}")
        if (scenario == "standalone") != (topo["scenario"] == "standalone"):
            raise LabError(
                f"this lab runs a {'standalone master' if topo['scenario'] == 'standalone' else 'cluster'}; "
                f"scenario {scenario} needs a new lab: csync lab down, then csync lab up --scenario {scenario}"
            )
        runtime = self._runtime().get("hosts", {})
        for h in self.hosts:
            if h.name in runtime and runtime[h.name].get("isolated"):
                self.restore(h.name)
        runtime = self._runtime().get("hosts", {})
        down = [h for h in self.hosts if not _alive(runtime.get(h.name))]
        if down:
            self._start_hosts(down, owner=None)
        lab_keys = self._load_keys()
        self._install_programs()  # a reseed also picks up edited emulators: handy while developing them
        with self.state.locked("cluster"):
            for m in self.hosts.by_role(topology.ROLE_MEMBER):
                pid = self.state.pid_of(m.name)
                if pid is not None:
                    labhost.in_mount_ns(pid, ["/bin/sh", "-c", f"! mountpoint -q {LAB_MOUNT} || umount -l {LAB_MOUNT}"])
            self._write_known_hosts(self.port)
            built = self._write_scenario(scenario, lab_keys, locked=True)
            if built.package_owner:
                cluster = sgcluster.Cluster.read(self.state)
                cluster._mount(cluster.packages[0], built.package_owner)
        self._write_desired_state()
        return time.monotonic() - start

    # --- disturbances ------------------------------------------------------------------------
    def node_down(self, name: str) -> None:
        """The host dies: every process in it is killed (its files stay). A cluster member
        fails: the package fails over to the next adoptive node if it ran there."""
        host = self.hosts[name]
        runtime = self._runtime()
        entry = runtime["hosts"].get(name)
        marks = self._marks({name: entry} if entry else {})
        if entry is None or self.state.pid_of(name) is None and not _processes_in({entry["mnt"]}, {entry["uts"]}, marks):
            raise LabError(f"{name} is already down")
        self._kill({entry["mnt"]}, {e["uts"] for e in runtime["hosts"].values()}, marks)
        with self._runtime_edit() as runtime:
            runtime["hosts"].pop(name, None)
        if host.role == topology.ROLE_MEMBER:
            with sgcluster.Cluster.edit(self.state) as cluster:
                cluster.node_failed(name)

    stop_host = node_down  # the name the first lab tests used

    def node_up(self, name: str) -> None:
        """The host boots again with its files as they were; a member rejoins the cluster
        (and the package starts there if it is halted with AUTO_RUN enabled)."""
        host = self.hosts[name]
        if self.state.pid_of(name) is not None:
            raise LabError(f"{name} is already up")
        self._start_hosts([host], owner=None)
        if host.role == topology.ROLE_MEMBER:
            with sgcluster.Cluster.edit(self.state) as cluster:
                cluster.node_booted(name)

    def isolate(self, name: str) -> None:
        """The host stops answering (every process in it is frozen with SIGSTOP): connections
        are accepted by the kernel but never answered, as with a hung host. Files and the
        cluster are untouched; ``exec`` still works. ``restore`` undoes it."""
        self._signal(name, signal.SIGSTOP, isolated=True)

    def restore(self, name: str) -> None:
        """Undo ``isolate``."""
        self._signal(name, signal.SIGCONT, isolated=False)

    def pkg_state(self, package: str, state: str, node: str | None = None) -> None:
        """[ours] Hold ``package`` in a transitory state, as a run or halt script that has not
        finished would: ``starting`` (a halted package, on ``node``, default its first eligible
        node; not mounted yet) or ``halting`` (a running package; still mounted); ``release``
        finishes the transition (starting: mounted and running; halting: halted, AUTO_RUN
        disabled as after cmhaltpkg). cmrunpkg and cmhaltpkg refuse a package in transition."""
        if not self.topology.get("package"):
            raise LabError("a standalone lab has no Serviceguard package")
        if node is not None:
            self.hosts[node]
        try:
            with sgcluster.Cluster.edit(self.state) as cluster:
                cluster.freeze(package, state, node)
        except sgcluster.SgError as e:
            raise LabError(str(e).removeprefix("lab pkg-state: ")) from None

    def pkg_fail(self, package: str) -> str:
        """[ours] A service of the running ``package`` fails on its node (Cluster.package_failed):
        it halts there, switching to that node is disabled, and it fails over to the next
        eligible node if AUTO_RUN is enabled; else it stays down/failed. Returns where it is now
        ("failed", or the node it runs on)."""
        if not self.topology.get("package"):
            raise LabError("a standalone lab has no Serviceguard package")
        try:
            with sgcluster.Cluster.edit(self.state) as cluster:
                cluster.package_failed(package)
                pkg = cluster.package(package, "lab pkg-fail")
                return pkg["owner"] or pkg["state"]
        except sgcluster.SgError as e:
            raise LabError(str(e).removeprefix("lab pkg-fail: ")) from None

    def lag_inputs(self, member: str, file: str = "cf.motd") -> str:
        """[ours] A policy commit that ``member`` has not fetched yet (as before cfagent's hourly
        run): one line is appended to ``file`` of the master's inputs on the package filesystem,
        and every other host that holds ``inputs/<file>`` gets the new copy, as if its cfagent
        had already run; ``member``'s copy stays as it was. Returns the line added."""
        if not self.topology.get("package"):
            raise LabError("lag-inputs needs a cluster lab (the master inputs are on the package filesystem)")
        if self.hosts[member].role != topology.ROLE_MEMBER:
            raise LabError(f"{member} is not a cluster member")
        if "/" in file or file in ("", ".", ".."):
            raise LabError(f"{file!r} is not a file name of the inputs directory")
        master = self.state_dir / sgcluster.PKGFS / dsau.PACKAGE_MASTER_INPUTS / file
        if not master.is_file():
            raise LabError(f"the master inputs have no file {file}")
        line = f"# policy commit {time.strftime('%Y-%m-%dT%H:%M:%S')} (not yet fetched by {member})\n"
        text = master.read_text() + line
        labhost.write_atomic(str(master), text.encode(), 0o644)
        inputs = f"{dsau.CFENGINE_DIR}/{dsau.INPUTS_SUBDIR}/{file}"
        for h in self.hosts:
            if h.name == member or h.role == topology.ROLE_MASTER:
                continue
            copy = self.host_path(h.name, inputs)
            if copy.is_file():
                labhost.write_atomic(str(copy), text.encode(), copy.stat().st_mode & 0o7777)
        return line.rstrip("\n")

    def desired_state_text(self, without: Sequence[str] = ()) -> str:
        """The lab's desired state (as in desired-state.yaml), less the members named in
        ``without``: the site as an administrator who no longer declares them would write it."""
        hosts = list(self.hosts)
        for name in without:
            if self.hosts[name].role != topology.ROLE_MEMBER:
                raise LabError(f"{name} is not a cluster member")
        header = f"# The desired state of the csync lab in {self.dir}" + (f", without member(s) {', '.join(without)}" if without else "") + "."
        try:
            return self._desired_yaml([h for h in hosts if h.name not in without], header)
        except ValueError as e:
            raise LabError(str(e)) from None

    def exec(
        self, name: str, command: str | Sequence[str], *, timeout: float = 60, input: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess:
        """Run ``command`` in host ``name`` (its mount and UTS namespaces), as root, without
        ssh: a string goes to /bin/sh -c, a sequence is an argv. Text in and out."""
        self.hosts[name]
        pid = self.state.pid_of(name)
        if pid is None:
            raise LabError(f"{name} is down; start it with: csync lab node-up {name}")
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "USER": "root",
            "LOGNAME": "root",
            "SHELL": "/bin/sh",
            "LANG": "C.UTF-8",
        }
        done = subprocess.run(
            ["/usr/bin/nsenter", f"--target={pid}", "--mount", "--uts", "--", *argv], env=env, input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise LabError(f"{name}: {command!r} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
        return done

    def processes(self, name: str) -> dict[int, str]:
        """Every process running in host ``name`` (its mount namespace), by PID, with its
        command line (arguments joined by spaces): sshd's listener, sessions and whatever
        they started. Empty when the host is down."""
        self.hosts[name]
        runtime = self._runtime().get("hosts", {})
        entry = runtime.get(name)
        if entry is None:
            return {}
        found = {}
        for pid in _processes_in({entry["mnt"]}, {e["uts"] for e in runtime.values()}, self._marks({name: entry})):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    found[pid] = f.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue  # ended meanwhile
        return found

    def host_path(self, name: str, path: str) -> Path:
        """The real file behind in-host ``path`` of host ``name`` (for tests that plant files)."""
        host = self.hosts[name]
        path = posixpath.normpath(path)
        if path == labhost.IN_HOST_STATE or path.startswith(labhost.IN_HOST_STATE + "/"):
            return self.state_dir / path[len(labhost.IN_HOST_STATE) :].lstrip("/")
        if self.topology.get("package") and (path == LAB_MOUNT or path.startswith(LAB_MOUNT + "/")):
            owner = next((p.get("owner") for p in self.state.read_json(sgcluster.STATE_FILE)["packages"]), None)
            if owner != host.name:
                raise LabError(f"the package filesystem is not mounted on {name} (it is on {owner or 'no node'})")
            return self.state_dir / sgcluster.PKGFS / path[len(LAB_MOUNT) :].lstrip("/")
        for sub, inside in sorted(self.host_dirs, key=lambda d: -len(d[1])):
            if path == inside or path.startswith(inside + "/"):
                return self.host_dir(name) / sub / path[len(inside) :].lstrip("/")
        raise LabError(f"{path} is not in a per-host directory of the lab ({', '.join(i for _, i in self.host_dirs)})")

    # --- building ----------------------------------------------------------------------------
    def _wipe(self) -> None:
        """Make the lab directory empty, refusing to touch a directory that is not a lab's."""
        if self.dir.exists():
            entries = list(self.dir.iterdir())
            ours = (self.dir / MARKER).exists() or ((self.dir / "state" / "lab.json").exists() and (self.dir / "hosts").is_dir())
            if entries and not ours:
                raise LabError(f"refusing to use {self.dir}: it is not empty and not a lab directory")
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        (self.dir / MARKER).write_text("a csync lab directory: `csync lab up` may wipe it\n")
        for d in ("admin", "hosts", "state", "logs"):
            (self.dir / d).mkdir(mode=0o700 if d == "admin" else 0o755)
        self.state_dir.chmod(0o755)

    def _make_keys(self, hosts: list[LabHost]) -> scenarios.LabKeys:
        clients = [h for h in hosts if h.role == topology.ROLE_CLIENT]
        pool = keymod.RsaPool().pairs(3 + len(clients))
        pair = lambda p: (p.private_pem, p.public_pem)
        lab_keys = scenarios.LabKeys(
            master=pair(pool[0]),
            late=pair(pool[1]),
            stale=pair(pool[2]),
            clients={c.name: pair(pool[3 + i]) for i, c in enumerate(clients)},
            root_ssh={h.name: keymod.ssh_ed25519(f"root@{h.name}") for h in hosts},
        )
        admin_priv, admin_pub = keymod.ssh_ed25519("csync-lab-admin")
        _write(self.admin_key, admin_priv, 0o600)
        _write(self.admin_key.with_suffix(".pub"), admin_pub, 0o644)
        lab_keys.admin_public = admin_pub
        data = {
            "master": lab_keys.master,
            "late": lab_keys.late,
            "stale": lab_keys.stale,
            "clients": lab_keys.clients,
            "root_ssh": lab_keys.root_ssh,
            "admin_public": lab_keys.admin_public,
        }
        _write(self.dir / "keys.json", json.dumps(_text(data), indent=1), 0o600)
        return lab_keys

    def _load_keys(self) -> scenarios.LabKeys:
        data = json.loads((self.dir / "keys.json").read_text())
        pair = lambda p: (p[0].encode(), p[1].encode())
        return scenarios.LabKeys(
            master=pair(data["master"]),
            late=pair(data["late"]),
            stale=pair(data["stale"]),
            clients={k: pair(v) for k, v in data["clients"].items()},
            root_ssh={k: pair(v) for k, v in data["root_ssh"].items()},
            admin_public=data["admin_public"].encode(),
        )

    def _write_static(
        self,
        hosts: list[LabHost],
        scenario: str,
        port: int,
        lab_keys: scenarios.LabKeys,
        release: str = sgcluster.DEFAULT_RELEASE,
        extra_addresses: bool = False,
        userland: str = "default",
        sg_layout: str = "default",
    ) -> None:
        """Everything that does not change while the lab runs: topology, programs, host keys,
        sshd configs, the emulated cfengine network's key."""
        package = (
            None
            if scenario == "standalone"
            else {"name": PACKAGE, "address": PACKAGE_ADDRESS, "mount": LAB_MOUNT, "extra_addresses": [PACKAGE_EXTRA_ADDRESS] if extra_addresses else []}
        )
        topo = {
            "format": 1,
            "scenario": scenario,
            "port": port,
            "cluster": None if package is None else CLUSTER,
            "package": package,
            "hosts": [{"name": h.name, "address": h.address, "role": h.role, "extra_addresses": list(h.extra_addresses)} for h in hosts],
            "sg_release": release,
            "userland": userland,
            "sg_layout": sg_layout,
        }
        self.state.write_json("lab.json", topo)
        self._save_runtime({"hosts": {}})
        self._install_programs()

        cfnet = self.state_dir / "cfnet"
        cfnet_priv, cfnet_pub = keymod.ssh_ed25519("csync-lab-cfengine-network")
        _write(cfnet / "id_ed25519", cfnet_priv, 0o600)
        _write(cfnet / "ssh_config", _cfnet_ssh_config(port), 0o644)
        cfservd_keys = b'restrict,command="/usr/local/sbin/cfservd" ' + cfnet_pub

        for h in hosts:
            d = self.host_dir(h.name)
            for sub, _ in self.host_dirs:
                (d / sub).mkdir(parents=True, exist_ok=True)
            (d / "scratch").mkdir(exist_ok=True)
            (d / "run").chmod(0o755)
            (d / "root").chmod(0o700)
            run = d / "run" / HOST_RUN.removeprefix("/run/")
            run.mkdir(mode=0o755, exist_ok=True)
            (d / "run" / "sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
            (d / "run" / labhost.IN_HOST_STATE.removeprefix("/run/")).mkdir(exist_ok=True)
            host_priv, host_pub = keymod.ssh_ed25519(f"root@{h.name}")
            _write(run / "ssh_host_ed25519_key", host_priv, 0o600)
            _write(run / "ssh_host_ed25519_key.pub", host_pub, 0o644)
            _write(run / "sshd_config", _sshd_config(h, port), 0o644)
            _write(run / "cfservd_authorized_keys", cfservd_keys, 0o644)
        self._write_known_hosts(port)

    def _install_programs(self) -> None:
        """The emulated commands, in state/bin (/run/csync-lab/bin inside the hosts)."""
        bin_dir = self.state_dir / "bin"
        bin_dir.mkdir(exist_ok=True)
        for program in sorted(EMULATORS.glob("*.py")):
            if program.name != "__init__.py":
                _write(bin_dir / program.name, program.read_bytes(), 0o755)

    def _known_hosts_text(self, port: int, names: bool) -> str:
        """One line per host from its host key file; ``names`` adds the host name next to the
        address (inside the hosts, where ``ssh node1`` should work too)."""
        lines = []
        for h in self.hosts:
            key = (self.host_dir(h.name) / "run" / HOST_RUN.removeprefix("/run/") / "ssh_host_ed25519_key.pub").read_text().split()
            aliases = list(h.addresses)
            if names:  # the names /etc/hosts gives them (extra addresses: H-lan2, ...)
                aliases += [h.name] + [f"{h.name}-lan{i}" for i, _ in enumerate(h.extra_addresses, start=2)]
            who = ",".join(topology.known_hosts_name(w, port) for w in aliases)
            lines.append(f"{who} {key[0]} {key[1]}\n")
        return "".join(lines)

    def _write_known_hosts(self, port: int) -> None:
        """known_hosts for csync (by address, as csync looks hosts up) and for the hosts."""
        _write(self.known_hosts, self._known_hosts_text(port, names=False), 0o644)
        _write(self.state_dir / "known_hosts", self._known_hosts_text(port, names=True), 0o644)

    def _write_scenario(self, scenario: str, lab_keys: scenarios.LabKeys, locked: bool = False) -> scenarios.Scenario:
        """Every host's files, the package filesystem and the cluster for ``scenario``. The
        caller holds the cluster lock when hosts run (``locked``); the package filesystem is
        not mounted here."""
        hosts = list(self.hosts)
        built = scenarios.build(scenario, hosts, lab_keys, (self.state_dir / "known_hosts").read_text(), self.port, self.sg_layout)

        def write_host(h: LabHost) -> None:
            for sub in (*RESET_DIRS, self.sg_layout.host_dir[0]):
                scenarios.empty_dir(self.host_dir(h.name) / sub)
            scenarios.write_tree(built.hosts[h.name], lambda p: self._tree_path(h.name, p), atomic=locked)

        # File creation is a slow metadata operation on some disks; the kernel work of several
        # threads overlaps (the GIL is released around each system call).
        with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
            list(pool.map(write_host, hosts))
        pkgfs = self.state_dir / sgcluster.PKGFS
        scenarios.empty_dir(pkgfs)
        pkgfs.chmod(0o755)
        scenarios.write_tree(built.pkgfs, lambda p: pkgfs / p, atomic=locked)
        if scenario != "standalone":
            members = [h.name for h in hosts if h.role == topology.ROLE_MEMBER]
            package = {"name": PACKAGE, "address": PACKAGE_ADDRESS, "mount": LAB_MOUNT, "owner": built.package_owner, "autorun": built.autorun}
            data = sgcluster.new_cluster(CLUSTER, members, package)
            self.state.write_json(sgcluster.STATE_FILE, data)
        return built

    def _tree_path(self, name: str, path: str) -> Path:
        """Like host_path for the per-host directories, without reading the lab's state."""
        for sub, inside in sorted(self.host_dirs, key=lambda d: -len(d[1])):
            if path == inside or path.startswith(inside + "/"):
                return self.host_dir(name) / sub / path[len(inside) :].lstrip("/")
        raise LabError(f"{path} is not in a per-host directory of the lab")

    def _write_desired_state(self) -> None:
        header = (
            f"# The desired state of the csync lab in {self.dir}: the converged site, whatever\n"
            f"# scenario the lab runs (written by `csync lab up`; regenerated by reseed)."
        )
        _write(self.desired_state_path, self._desired_yaml(list(self.hosts), header), 0o644)

    def _desired_yaml(self, hosts: list, header: str) -> str:
        """The lab's desired state for ``hosts``: its scenario, access, port and layout."""
        return scenarios.desired_state_yaml(
            hosts,
            self.scenario,
            identity_file=str(self.admin_key),
            known_hosts=str(self.known_hosts),
            port=self.port,
            header=header,
            package_extra=self._package_extra(),
            layout=self.sg_layout,
        )

    def _package_extra(self) -> list[str]:
        package = self.package
        return list(package["extra_addresses"]) if package else []

    # --- processes ---------------------------------------------------------------------------
    def _etc_hosts(self) -> str:
        """/etc/hosts of every host: the machine's loopback names and the lab's hosts (and the
        package's address under the package's name), so that host names resolve as on a site."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{h.address}\t{h.name}" for h in self.hosts]
        package = self.package
        if package:
            lines.append(f"{package['address']}\t{PACKAGE}")
        # extra addresses [ours]: H-lan2 (H-lan3, ... if a host ever has more)
        for name, extra in [(h.name, h.extra_addresses) for h in self.hosts] + ([(PACKAGE, package["extra_addresses"])] if package else []):
            lines += [f"{a}\t{name}-lan{i}" for i, a in enumerate(extra, start=2)]
        return "\n".join(lines) + "\n"

    def _spec(self, host: LabHost, owner: str | None, cluster: bool, etc_hosts: str) -> dict:
        d = self.host_dir(host.name)
        layout, member = self.sg_layout, host.role == topology.ROLE_MEMBER
        binds = [[str(d / sub), inside] for sub, inside in self.host_dirs]
        binds.insert(1, [str(self.state_dir), labhost.IN_HOST_STATE])  # inside /run, before /root hides the lab dir
        if owner == host.name:
            binds.append([str(self.state_dir / sgcluster.PKGFS), LAB_MOUNT])
        return {
            "name": host.name,
            "log": str(self.logs_dir / f"{host.name}.log"),
            "scratch": str(d / "scratch"),
            "binds": binds,
            "mkdirs": [LAB_MOUNT] if cluster and host.role == topology.ROLE_MEMBER else [],
            "files": {"/etc/hosts": etc_hosts, **({"/etc/cmcluster.conf": layout.cmcluster_conf} if member and layout.cmcluster_conf else {})},
            "userland": userland_mod.spec(self.userland),
            "argv": [SSHD, "-D", "-e", "-f", f"{HOST_RUN}/sshd_config"],
        }

    def _start_hosts(self, hosts: list[LabHost], owner: str | None) -> None:
        """Start ``hosts`` and wait until each listens; on failure stop them all and raise.

        A host whose sshd dies as it starts, for no reason of its own (not a port taken), is
        started again, START_ATTEMPTS times in all: a lab of an older csync stopping on the
        same machine kills by namespace numbers alone, and the kernel hands the numbers of
        its stopped hosts to the next ones started (_processes_in). A 2,000-host start lost
        8 to 23 hosts so among other helpers' test labs."""
        pending = list(hosts)
        for attempt in range(1, START_ATTEMPTS + 1):
            pending = self._start_once(pending, owner, every=hosts, retry=attempt < START_ATTEMPTS)
            if not pending:
                return
            self.timings["restarted"] = self.timings.get("restarted", 0) + len(pending)
            # a killed sshd's listening socket can outlive it by a moment (_wait_listeners_closed):
            # started again before it closes, the host would find its address taken
            addresses = {a for h in pending for a in h.addresses}
            deadline = time.monotonic() + 5.0
            while _listening(self.port).keys() & addresses and time.monotonic() < deadline:
                time.sleep(0.01)

    def _start_once(self, hosts: list[LabHost], owner: str | None, *, every: list[LabHost], retry: bool) -> list[LabHost]:
        """Start ``hosts``; the ones that died as they started (with ``retry``), else raise
        after stopping ``every`` host being started."""
        cluster = self.topology.get("package") is not None
        etc_hosts = self._etc_hosts()
        specs = [self._spec(h, owner, cluster, etc_hosts) for h in hosts]
        limit = 120 + START_SECONDS_PER_HOST * len(specs)
        done = subprocess.run([sys.executable, "-E", "-S", str(HOSTINIT)], input=json.dumps(specs), capture_output=True, text=True, timeout=limit)
        if done.returncode != 0:
            raise LabError(f"starting the hosts failed: {done.stderr.strip()[-2000:]}")
        results = json.loads(done.stdout)
        with self._runtime_edit() as runtime:
            for r in results:
                if not r["error"]:
                    runtime["hosts"][r["name"]] = {k: r[k] for k in ("pid", "start", "mnt", "uts")} | {"isolated": False}
        failed = [r for r in results if r["error"]]
        logs = [_tail(self.logs_dir / f"{r['name']}.log") for r in failed]
        died = [r for r, log in zip(failed, logs) if r["error"].startswith("sshd exited as soon as it started") and "Address already in use" not in log]
        if failed and not (retry and len(died) == len(failed)):
            self._stop_starting(every)
            if any("Address already in use" in log for log in logs):
                raise _PortTaken(logs[0])
            raise LabError(f"{len(failed)} host(s) failed to start; {failed[0]['name']}: {failed[0]['error']}: {logs[0] or 'no log'}")
        names = {r["name"] for r in died}
        dead = self._wait_listening([h for h in hosts if h.name not in names], every=every, retry=retry)
        return [h for h in hosts if h.name in names] + dead

    def _stop_starting(self, every: list[LabHost]) -> None:
        self.down() if len(every) == len(self.hosts) else self._stop(every)

    def _wait_listening(self, hosts: list[LabHost], *, every: list[LabHost] | None = None, retry: bool = False) -> list[LabHost]:
        """Wait until every host listens; the hosts whose sshd died meanwhile (with ``retry``:
        stopped and forgotten, for the caller to start again), else raise after stopping
        ``every`` host being started."""
        every = every if every is not None else hosts
        port = self.port
        pending = {a: h for h in hosts for a in h.addresses}
        ready_timeout = READY_TIMEOUT + START_SECONDS_PER_HOST * len(hosts)
        deadline = time.monotonic() + ready_timeout
        while pending:
            # Ready = a listening socket on the host's address that belongs to the host's own
            # sshd (another process may listen there: an old lab, a port taken meanwhile).
            listening = _listening(port)
            runtime = self._runtime()["hosts"]
            for address in list(pending.keys() & listening.keys()):
                entry = runtime.get(pending[address].name)
                if entry and listening[address] & _socket_inodes(entry["pid"]):
                    del pending[address]
            if not pending:
                return []
            dead = list({h.name: h for h in pending.values() if not _alive(runtime.get(h.name))}.values())
            logs = {h.name: _tail(self.logs_dir / f"{h.name}.log") for h in dead}
            if dead and retry and not any("Address already in use" in log for log in logs.values()):
                self._stop(dead)
                names = {h.name for h in dead}
                # the others are waited for by the next attempt's own wait
                rest = [h for h in {h.name: h for h in pending.values()}.values() if h.name not in names]
                return dead + self._wait_listening(rest, every=every, retry=retry) if rest else dead
            if dead or time.monotonic() > deadline:
                h = (dead or list(pending.values()))[0]
                log = logs.get(h.name) or _tail(self.logs_dir / f"{h.name}.log")
                self._stop_starting(every)
                if "Address already in use" in log:
                    raise _PortTaken(log)
                reason = "exited" if dead else f"did not listen within {ready_timeout:g}s"
                raise LabError(f"{len(dead) or len(pending)} host(s) did not start; {h.name} {reason}: {log or 'no log'}")
            time.sleep(0.01)
        return []

    def _stop(self, hosts: list[LabHost]) -> None:
        runtime = self._runtime()
        ours = {h.name: runtime["hosts"][h.name] for h in hosts if h.name in runtime["hosts"]}
        if ours:
            self._kill({e["mnt"] for e in ours.values()}, {e["uts"] for e in runtime["hosts"].values()}, self._marks(ours))
        with self._runtime_edit() as runtime:
            for h in hosts:
                runtime["hosts"].pop(h.name, None)

    def _marks(self, hosts: dict[str, dict]) -> dict[str, tuple[int, int]]:
        """Mount namespace -> (device, inode) of the host's own /run directory, for the hosts
        of ``hosts`` (runtime entries by name) whose directory is there (_processes_in)."""
        marks = {}
        for name, entry in hosts.items():
            mark = _dir_id(self.host_dir(name) / "run")
            if mark is not None:
                marks[entry["mnt"]] = mark
        return marks

    def _kill(self, mnts: set[str], utss: set[str], marks: dict[str, tuple[int, int]], *, owned: set[tuple[int, int]] | None = None) -> None:
        """SIGKILL every process in these namespaces (and, with ``owned``, every process whose
        /run is one of those directories) until none is left (sshd may be forking a session
        while we scan)."""
        for attempt in range(200):
            victims = _processes_in(mnts, utss, marks, owned=owned)
            if not victims:
                return
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.002 * min(attempt + 1, 25))
        raise LabError(f"processes of the lab survived SIGKILL: {sorted(_processes_in(mnts, utss, marks, owned=owned))}")

    def _signal(self, name: str, sig: int, isolated: bool) -> None:
        self.hosts[name]
        with self._runtime_edit() as runtime:
            entry = runtime["hosts"].get(name)
            if entry is None or not _alive(entry):
                raise LabError(f"{name} is down")
            utss = {e["uts"] for e in runtime["hosts"].values()}
            marks = self._marks({name: entry})
            # Repeat until a scan finds nothing new: a process forked during the first pass
            # must not escape the freeze.
            seen: set[int] = set()
            while found := _processes_in({entry["mnt"]}, utss, marks) - seen:
                for pid in found:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                seen |= found
            entry["isolated"] = isolated

    @staticmethod
    def _wait(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise LabError(f"timed out waiting for {what}")
            time.sleep(0.01)

    @staticmethod
    def _choose_port(addresses: list[str], excluded: set[int]) -> int:
        """22 if it is free on every address, else the first candidate port that is; after a
        lost race (``excluded``), a free one at random: labs that start together (the suite's
        workers) lost the race for 22 together and took 2222 together, and raced again."""
        candidates = [p for p in PORT_CANDIDATES if p not in excluded]
        if excluded:
            random.shuffle(candidates)
        for port in candidates:
            if all(_can_bind(a, port) for a in addresses):
                return port
        raise LabError("no free ssh port on the lab's addresses")


class _PortTaken(LabError):
    pass


# --- helpers ---------------------------------------------------------------------------------


def _write(path: Path, data: bytes | str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    labhost.write_atomic(str(path), data.encode() if isinstance(data, str) else data, mode)


def _text(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _text(v) for k, v in value.items()}
    return value


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def _can_bind(address: str, port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as sshd does: TIME_WAIT is no obstacle
        s.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _listening(port: int) -> dict[str, set[str]]:
    """IPv4 address -> inodes of the sockets listening there on ``port`` (from /proc/net/tcp:
    no connection is made, so checking costs the sshds nothing)."""
    found: dict[str, set[str]] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, _, hexport = fields[1].partition(":")
            if int(hexport, 16) == port:
                found.setdefault(socket.inet_ntoa(bytes.fromhex(address)[::-1]), set()).add(fields[9])
    return found


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _alive(entry: dict | None) -> bool:
    """Whether the sshd recorded in ``entry`` still runs (same PID *and* start time)."""
    if not entry:
        return False
    try:
        with open(f"/proc/{entry['pid']}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == entry["start"]


def _dir_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _processes_in(mnts: set[str], utss: set[str], marks: dict[str, tuple[int, int]] | None = None, *, owned: set[tuple[int, int]] | None = None) -> set[int]:
    """PIDs whose mount namespace is in ``mnts`` and UTS namespace in ``utss``, and, for a
    namespace in ``marks``, whose /run is that host's own directory ((device, inode)); with
    ``owned``, also every PID whose /run is one of those directories, whatever its namespaces
    (only a lab host's processes have a lab host's directory as /run: it is a bind mount of it).

    The namespaces alone do not prove a process is the lab's: the kernel gives a new
    namespace the lowest free number, so the pair of numbers a stopped host freed goes at once
    to the next host any lab starts on the machine, and a stop still scanning for our
    host's last processes would kill that host (seen: another lab's hosts "exited as soon as
    they started" while a lab stopped). A host's /run is the bind mount of its own directory."""
    found = set()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            mnt = os.readlink(f"/proc/{entry}/ns/mnt")
            if owned and _dir_id(Path(f"/proc/{entry}/root/run")) in owned:
                found.add(int(entry))
                continue
            if mnt in mnts and os.readlink(f"/proc/{entry}/ns/uts") in utss:
                mark = marks.get(mnt) if marks else None
                if mark is not None and _dir_id(Path(f"/proc/{entry}/root/run")) != mark:
                    continue  # another lab's host in a recycled namespace (or one on its way out)
                found.add(int(entry))
        except OSError:
            continue  # gone, or a zombie (no namespaces any more)
    return found


def _sshd_config(host: LabHost, port: int) -> str:
    return "\n".join(
        [
            f"# sshd of lab host {host.name} ({host.role}); written by csync lab",
            *[f"ListenAddress {a}" for a in host.addresses],
            f"Port {port}",
            f"HostKey {HOST_RUN}/ssh_host_ed25519_key",
            f"PidFile {HOST_RUN}/sshd.pid",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes yes",
            # root's own keys, then the emulated cfengine network's key (forced command cfservd)
            f"AuthorizedKeysFile .ssh/authorized_keys {HOST_RUN}/cfservd_authorized_keys",
            "MaxStartups 200:30:400",
            "MaxSessions 64",
            "Subsystem sftp internal-sftp",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel INFO",
            "",
        ]
    )


def _cfnet_ssh_config(port: int) -> str:
    return (
        "# The emulated cfengine network (TCP 5308 in real life): ssh to the peer's cfservd\n"
        "Host *\n"
        "    User root\n"
        f"    Port {port}\n"
        f"    IdentityFile {labhost.IN_HOST_STATE}/cfnet/id_ed25519\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {labhost.IN_HOST_STATE}/known_hosts\n"
        "    StrictHostKeyChecking yes\n"
        "    BatchMode yes\n"
        "    ConnectTimeout 5\n"
        "    LogLevel ERROR\n"
    )


def key_dir(lab: Lab, name: str) -> Path:
    """The real directory behind host ``name``'s /var/opt/dsau/cfengine/ppkeys."""
    return lab.host_path(name, f"{dsau.CFENGINE_DIR}/{dsau.PPKEYS_SUBDIR}")
