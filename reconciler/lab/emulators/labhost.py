"""Plumbing shared by the lab's emulated commands: the lab's state, locks, hosts, ssh.

The emulated commands (cmviewcl, cfrun, csync_dispatcher, ...) run *inside* lab hosts with
the system's /usr/bin/python3 (the project's python lives under /root, which every host
replaces with its own), so this module uses the standard library only. The lab's state
directory is bind-mounted in every host at ``/run/csync-lab``; on the machine, the Lab
class opens the same files at ``<lab dir>/state`` through this module.

Files of the state directory:
    lab.json       the lab's topology: hosts, port, package, scenario (written at `up`)
    runtime.json   per host: sshd PID, start time and namespaces (written by the Lab)
    cluster.json   the Serviceguard cluster (emulators/sgcluster.py), changed under cluster.lock
    pkgfs/         the package filesystem, bind-mounted at the package mount point of the
                   node that runs the package, and nowhere else
    known_hosts    every host's host key (for host-to-host ssh)
    cfnet/         the key and ssh config of the emulated cfengine network (see cfengine.py)
    bin/           these programs; /usr/local/sbin and /opt/dsau hold links to them
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess

IN_HOST_STATE = "/run/csync-lab"
CFENGINE_DIR = "/var/opt/dsau/cfengine"  # [doc] mirrors reconciler.domain.dsau.CFENGINE_DIR
PPKEYS = f"{CFENGINE_DIR}/ppkeys"
INPUTS = f"{CFENGINE_DIR}/inputs"
PACKAGE_MASTER_INPUTS = "dsau/cfengine_master/inputs"  # [doc] relative to the package mount
PACKAGE_CLUSTER_KEYS = "dsau/cfengine_master/ppkeys"  # [ours] mirrors reconciler.domain.dsau
STANDALONE_MASTER_INPUTS = "/var/opt/dsau/cfengine_master/inputs"  # [doc]
PACKAGE_FILES_DIR = "/etc/cmcluster/csync"  # [doc] HP-UX's $SGCONF/csync
CMCLUSTER_CONF = "/etc/cmcluster.conf"  # [doc] Serviceguard's file locations (SGCONF, SGSBIN, ...)
CFSERVD_MARKER = f"{CFENGINE_DIR}/cfservd.started"  # [ours] "cfservd runs here"
SSH = "/usr/bin/ssh"
NSENTER = "/usr/bin/nsenter"


def package_files_dir() -> str:
    """The csync package's files on this host: $SGCONF/csync, SGCONF as /etc/cmcluster.conf
    names it (Serviceguard for Linux, `lab up --sg-layout linux`), else /etc/cmcluster/csync
    [ours: where DSAU's dispatcher would look on Linux]."""
    try:
        with open(CMCLUSTER_CONF) as f:
            for line in f:
                key, sep, value = line.partition("=")
                words = value.split("#", 1)[0].split()
                if sep and key.strip() == "SGCONF" and words and words[0].startswith("/"):
                    return f"{words[0]}/csync"
    except FileNotFoundError:
        pass
    return PACKAGE_FILES_DIR


class LabStateError(Exception):
    """The lab's state is missing or unusable (the command is not run inside a lab host)."""


class LabState:
    """The lab's shared state directory (``/run/csync-lab`` inside hosts)."""

    def __init__(self, root: str = IN_HOST_STATE):
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # --- files ---------------------------------------------------------------------------
    def read_json(self, name: str) -> dict:
        try:
            with open(self.path(name)) as f:
                return json.load(f)
        except FileNotFoundError:
            raise LabStateError(f"{self.path(name)} is missing: not inside a csync lab host?") from None

    def write_json(self, name: str, data: dict) -> None:
        """Replace a state file atomically (temp file in the same directory, then rename), so
        a reader sees the old or the new content, never a partial one."""
        write_atomic(self.path(name), (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), 0o644)

    @contextlib.contextmanager
    def locked(self, name: str):
        """An exclusive flock on ``<name>.lock``, across hosts (one state directory) and
        processes on the machine."""
        with open(self.path(f"{name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- topology ------------------------------------------------------------------------
    @property
    def topology(self) -> dict:
        return self.read_json("lab.json")

    def hosts(self) -> list[dict]:
        return self.topology["hosts"]

    def host(self, name_or_address: str) -> dict | None:
        """The host with this name, address or extra address (``extra_addresses``)."""
        for h in self.hosts():
            if name_or_address in (h["name"], h["address"], *h.get("extra_addresses", ())):
                return h
        return None

    def own_host(self) -> dict:
        name = os.uname().nodename
        h = self.host(name)
        if h is None:
            raise LabStateError(f"this host ({name}) is not a host of the lab")
        return h

    @property
    def port(self) -> int:
        return int(self.topology["port"])

    def package(self) -> dict | None:
        """{name, address, mount, extra_addresses} of the csync package, or None for a
        standalone master."""
        return self.topology.get("package")

    # --- processes -----------------------------------------------------------------------
    def pid_of(self, name: str) -> int | None:
        """PID of host ``name``'s sshd if that very process still runs (start time checked,
        so a recycled PID is never taken for it)."""
        entry = self.read_json("runtime.json").get("hosts", {}).get(name)
        if not entry or not entry.get("pid"):
            return None
        pid = entry["pid"]
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        if fields[0] == "Z" or int(fields[19]) != entry.get("start"):
            return None
        return pid

    def alive(self, name: str) -> bool:
        return self.pid_of(name) is not None


def write_atomic(path: str, data: bytes, mode: int) -> None:
    tmp = f"{os.path.dirname(path) or '.'}/.{os.path.basename(path)}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)  # the umask must not decide a key file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def in_mount_ns(pid: int, argv: list[str], input: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``argv`` in the mount namespace of process ``pid`` (another lab host), as root.

    This is the lab's back door: it stands for what happens on a host without going through
    the network (a package filesystem mounted by the cluster, a password typed at a prompt).
    """
    return subprocess.run([NSENTER, f"--mount=/proc/{pid}/ns/mnt", "--", *argv], input=input, capture_output=True, timeout=timeout)


def root_ssh(address: str, command: str, input: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """Root ssh from this host to another one, as the host's own root (its ~/.ssh/config binds
    the host's own address, so the callee sees the caller in SSH_CLIENT)."""
    return subprocess.run([SSH, "-o", "BatchMode=yes", address, command], input=input, capture_output=True, timeout=timeout)


def ssh_error(done: subprocess.CompletedProcess) -> str:
    """The last line ssh (or the remote command) wrote on stderr, for one-line reports."""
    lines = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit status {done.returncode}"


def die(program: str, message: str, code: int = 1) -> None:
    import sys

    sys.stderr.write(f"{program}: {message}\n")
    sys.exit(code)
