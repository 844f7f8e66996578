"""The lab: an emulated DSAU site of real sshd hosts on 127.0.10.0/24.

One host = one OpenSSH `sshd -D` in its own mount and UTS namespace, with its own
hostname and its own /root, /run, /var/opt/dsau, /opt/dsau, /etc/cmcluster,
/usr/local/sbin and package mount point. Directories missing on the machine are made
inside a per-host overlay of their parent, so nothing is created on the real filesystem.
Stopping a host ends every process in its mount namespace, by PID; its mounts vanish with
the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reconciler import dsau

EMULATORS = Path(__file__).parent / "emulators"
SSHD = "/usr/sbin/sshd"
# The lab's package mount point [ours]: a directory under /srv, which exists on Debian, so
# the overlay that creates it never touches the real root directory.
LAB_MOUNT = "/srv/csync"
CLUSTER = "lab-cluster"
PACKAGE = "csync"
PACKAGE_ADDRESS = "127.0.10.10"


class LabError(Exception):
    pass


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    role: str  # member | master | client


def member_address(i: int) -> str:
    return f"127.0.10.{i}"


def client_address(i: int) -> str:
    n = 20 + i
    return f"127.0.{10 + n // 255}.{n % 255 or 1}"


def rsa_pair() -> tuple[bytes, bytes]:
    """A cfengine 2 key pair: PKCS#1 PEM, 1024 bits as cfkey made them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return private, public


def ssh_pair() -> tuple[bytes, bytes]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


class Lab:
    """A lab directory and the hosts running from it."""

    def __init__(self, directory: str | Path = ".csync/lab"):
        self.dir = Path(directory).absolute()

    # --- layout ----------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state" / "lab.json"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def desired_state_path(self) -> Path:
        return self.dir / "desired-state.yaml"

    def host_dir(self, name: str) -> Path:
        return self.dir / "hosts" / name

    def host_path(self, name: str, path: str) -> Path:
        """The real file behind ``path`` inside host ``name``."""
        for inside, real in self._mounts(name):
            if path == inside or path.startswith(inside + "/"):
                return Path(real + path[len(inside):])
        raise LabError(f"{path} is not a per-host path of the lab")

    def _mounts(self, name: str) -> list[tuple[str, str]]:
        h = self.host_dir(name)
        return [
            ("/var/opt/dsau", f"{h}/var_opt_dsau"),
            ("/opt/dsau", f"{h}/opt_dsau"),
            ("/etc/cmcluster", f"{h}/etc_cmcluster"),
            ("/usr/local/sbin", f"{h}/usr_local_sbin"),
            ("/root", f"{h}/root"),
            (LAB_MOUNT, f"{h}/mount"),
        ]

    def load(self) -> dict:
        if not self.state_file.exists():
            raise LabError(f"no lab in {self.dir}; start one with: csync lab up")
        return json.loads(self.state_file.read_text())

    def save(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.state_file)

    @property
    def hosts(self) -> list[LabHost]:
        return [LabHost(**h) for h in self.load()["hosts"]]

    # --- lifecycle -------------------------------------------------------------------
    def up(self, members: int = 3, clients: int = 10, scenario: str = "fresh") -> float:
        """Start the lab; returns seconds until every sshd accepts connections."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root (it uses mount and UTS namespaces)")
        if not Path(SSHD).exists():
            raise LabError("sshd not found; install it: apt-get install openssh-server")
        if self.state_file.exists() and self.running():
            raise LabError(f"a lab is already up in {self.dir}; stop it with: csync lab down")
        if scenario not in ("fresh", "seed", "standalone"):
            raise LabError(f"unknown scenario {scenario!r}; choose fresh, seed or standalone")
        if not 1 <= members <= 9 or not 0 <= clients <= 230:
            raise LabError("the lab has 1-9 members and 0-230 clients")
        start = time.monotonic()
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "state").mkdir(parents=True)
        (self.dir / "logs").mkdir()
        if scenario == "standalone":
            hosts = [LabHost("master", member_address(1), "master")]
        else:
            hosts = [LabHost(f"node{i}", member_address(i), "member") for i in range(1, members + 1)]
        hosts += [LabHost(f"client{i}", client_address(i), "client") for i in range(1, clients + 1)]
        admin_priv, admin_pub = ssh_pair()
        _write(self.admin_key, admin_priv, 0o600)
        _write(self.admin_key.with_suffix(".pub"), admin_pub)
        known = []
        for h in hosts:
            known.append(self._make_host(h, admin_pub))
        _write(self.known_hosts, "".join(known))
        state = {"scenario": scenario, "hosts": [h.__dict__ for h in hosts], "pids": {}, "cluster": None}
        self.save(state)
        from reconciler.lab.scenarios import seed_scenario

        seed_scenario(self, scenario)
        state = self.load()
        for h in hosts:
            state["pids"][h.name] = self._start(h)
        self.save(state)
        self._wait_listening(hosts)
        from reconciler.lab.scenarios import desired_state_yaml

        _write(self.desired_state_path, desired_state_yaml(self))
        return time.monotonic() - start

    def _make_host(self, h: LabHost, admin_pub: bytes) -> str:
        d = self.host_dir(h.name)
        for sub in ("run", "root/.ssh", "var_opt_dsau", "opt_dsau/bin", "opt_dsau/sbin", "etc_cmcluster", "usr_local_sbin", "mount", "upper", "work"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "root").chmod(0o700)
        (d / "root/.ssh").chmod(0o700)
        _write(d / "root/.ssh/authorized_keys", admin_pub, 0o600)
        host_priv, host_pub = ssh_pair()
        _write(d / "ssh_host_ed25519_key", host_priv, 0o600)
        _write(d / "sshd_config", "\n".join([
            f"ListenAddress {h.address}", "Port 22", f"HostKey {d}/ssh_host_ed25519_key",
            f"PidFile /run/sshd-{h.name}.pid", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes yes", "AuthorizedKeysFile .ssh/authorized_keys",
            "MaxStartups 200:30:400", "Subsystem sftp internal-sftp", "UseDNS no", "",
        ]))
        if h.role == "member":
            for tool in ("cmviewcl", "cmrunpkg", "cmhaltpkg", "cmmodpkg"):
                shutil.copy(EMULATORS / "serviceguard.py", d / "usr_local_sbin" / tool)
                (d / "usr_local_sbin" / tool).chmod(0o755)
        return f"{h.address} {host_pub.decode().strip()}\n"

    def _start(self, h: LabHost) -> int:
        d = self.host_dir(h.name)
        binds = "\n".join(f"mount --bind {real} {inside}" for inside, real in self._mounts(h.name))
        init = f"""#!/bin/sh
set -e
hostname {h.name}
mount --bind {d}/run /run
mkdir -p /run/csync-lab /run/sshd
mount --bind {self.dir}/state /run/csync-lab
# overlays give each host the mount points the machine lacks, without creating them on it
for parent in /var/opt /opt /etc /srv; do
  tag=$(echo $parent | tr / _)
  mkdir -p {d}/upper/$tag {d}/work/$tag
  mount -t overlay overlay -o lowerdir=$parent,upperdir={d}/upper/$tag,workdir={d}/work/$tag $parent
done
mkdir -p /var/opt/dsau /opt/dsau /etc/cmcluster {LAB_MOUNT}
{binds}
if [ -f /run/csync-lab/pkgfs-owner ] && [ "$(cat /run/csync-lab/pkgfs-owner)" = {h.name} ]; then
  mount --bind /run/csync-lab/pkgfs {LAB_MOUNT}
fi
exec {SSHD} -D -f {d}/sshd_config -E {self.dir}/logs/{h.name}.log
"""
        _write(d / "init.sh", init, 0o755)
        proc = subprocess.Popen(
            ["unshare", "--mount", "--uts", "--propagation", "private", str(d / "init.sh")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.dir / "logs" / f"{h.name}.init.log", "wb"),
            start_new_session=True,
        )
        return proc.pid

    def _wait_listening(self, hosts: list[LabHost], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        pending = list(hosts)
        while pending:
            still = []
            for h in pending:
                try:
                    socket.create_connection((h.address, 22), timeout=0.2).close()
                except OSError:
                    still.append(h)
            pending = still
            if pending and time.monotonic() > deadline:
                log = (self.dir / "logs" / f"{pending[0].name}.init.log").read_text(errors="replace")[-500:]
                self.down()
                raise LabError(f"{len(pending)} host(s) did not start ({pending[0].name}: {log.strip() or 'no output'})")
            if pending:
                time.sleep(0.05)

    def _namespace_pids(self, pid: int) -> list[int]:
        """Every process in the mount namespace of ``pid`` (sshd and its sessions)."""
        try:
            target = os.readlink(f"/proc/{pid}/ns/mnt")
        except OSError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/mnt") == target:
                        found.append(int(entry))
                except OSError:
                    continue
        return found

    def running(self) -> bool:
        try:
            pids = self.load()["pids"]
        except (LabError, json.JSONDecodeError):
            return False
        return any(Path(f"/proc/{p}").exists() for p in pids.values())

    def stop_host(self, name: str) -> None:
        state = self.load()
        pid = state["pids"].get(name)
        if pid is None:
            return
        if Path(f"/proc/{pid}").exists() and os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
            for p in self._namespace_pids(pid):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.01)

    def down(self) -> None:
        """Stop every host; leaves no process, mount or listener."""
        try:
            state = self.load()
        except LabError:
            return
        for name in list(state["pids"]):
            self.stop_host(name)
        state["pids"] = {}
        self.save(state)

    def exec(self, name: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a shell command inside host ``name`` (its namespaces), as root, not via ssh."""
        pid = self.load()["pids"].get(name)
        if pid is None:
            raise LabError(f"no running host {name!r}")
        return subprocess.run(
            ["nsenter", f"--target={pid}", "--mount", "--uts", "/bin/sh", "-c", command],
            capture_output=True, text=True, timeout=timeout,
        )

    def isolate(self, name: str) -> None:
        """The host stops answering ssh (its processes are frozen); files are kept."""
        self._signal_host(name, signal.SIGSTOP)

    def restore(self, name: str) -> None:
        self._signal_host(name, signal.SIGCONT)

    def _signal_host(self, name: str, sig: int) -> None:
        pid = self.load()["pids"].get(name)
        if pid is None:
            raise LabError(f"no running host {name!r}")
        for p in self._namespace_pids(pid):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass


def key_dir(lab: Lab, name: str) -> Path:
    return lab.host_path(name, f"{dsau.CFENGINE_DIR}/{dsau.PPKEYS_SUBDIR}")
