#!/usr/bin/python3 -Es
"""Emulated DSAU tools of the csync lab, chosen by the name they are called by:

    /opt/dsau/bin/csync_dispatcher MEMBER_ADDED: HOST          [doc syntax, exactly]
    /opt/dsau/sbin/csync_wizard regenerate-keys ADDRESS...      [ours]
    /opt/dsau/bin/csshsetup HOST...                             [ours]

Installed as links on cluster members (and csshsetup, csync_wizard on a standalone master).
Files travel between hosts over host-to-host root ssh (``ssh HOST 'tar -xpf -'``), which
leaves from the calling host's own address. Exit codes: 0 done, 1 refused or failed (the
reason on stderr), 2 bad command line.

csync_dispatcher MEMBER_ADDED: HOST — on the node that runs the csync package only
(refused elsewhere, and while the package is halted). For cluster node HOST it copies the
configuration data to the new member's cfengine directories, as HP's add-member processing
does: the cluster key pair from the package filesystem as its localhost.priv/.pub, its
inputs from ``<mount>/dsau/cfengine_master/inputs`` (an exact copy), every root-*.pub key
file of this node (the clients' and members' keys the master holds), and the package files
of /etc/cmcluster/csync/ ($SGCONF/csync/ where /etc/cmcluster.conf names SGCONF); it "starts cfservd" there (writes cfservd.started), and installs
root-<HOST's address>.pub (the cluster key) on every member.

csync_wizard regenerate-keys CLIENT... — the non-interactive form of the wizard's "Manage
keys for cfengine clients" [ours]; a CLIENT is an address or a host name (resolved here). On the node running the package (or a standalone master).
It first checks that every listed client and every member answers root ssh, and changes
nothing at all if one does not. Then: a new cluster (master) key pair, on the package
filesystem and as every member's localhost.priv/.pub, root-<member>.pub and
root-<package>.pub; a new key pair per listed client, installed on the client and as
root-<client>.pub on every member; the cluster key as root-<package>.pub and
root-<member>.pub on every listed client. Clients not listed are left alone.

csshsetup HOST... — minimal [ours]: authorises this host's root ssh key (made if missing)
for root on each HOST, then checks that ``ssh HOST true`` works. The real tool asks for the
remote root password once; the lab stands for that step by writing into HOST's
authorized_keys through its mount namespace.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from . import labhost, sgcluster
except ImportError:
    import labhost  # type: ignore[no-redef]
    import sgcluster  # type: ignore[no-redef]

DISPATCHER_USAGE = "usage: csync_dispatcher MEMBER_ADDED: <member hostname>"
WIZARD_USAGE = "usage: csync_wizard regenerate-keys <client address or name>..."
CSSHSETUP_USAGE = "usage: csshsetup <host>..."


class Failed(Exception):
    pass


# --- moving files between hosts -----------------------------------------------------------------


class Bundle:
    """Files for one host, written in one ssh round trip (or directly on this host)."""

    def __init__(self):
        self.dirs: list[tuple[str, int]] = []
        self.files: list[tuple[str, bytes, int]] = []
        self.emptied: list[str] = []  # directories whose content is replaced

    def dir(self, path: str, mode: int) -> Bundle:
        self.dirs.append((path, mode))
        return self

    def file(self, path: str, data: bytes, mode: int = 0o644) -> Bundle:
        self.files.append((path, data, mode))
        return self

    def tar(self) -> bytes:
        buf = io.BytesIO()
        now = time.time()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, mode in self.dirs:
                info = tarfile.TarInfo(path.lstrip("/"))
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
                tar.addfile(info)
            for path, data, mode in self.files:
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size, info.mode, info.mtime = len(data), mode, now
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def script(self) -> str:
        lines = ["set -e", "umask 077"]
        lines += [f"mkdir -p {shlex.quote(d)}" for d, _ in self.dirs]
        # empty a directory with POSIX tools only (the hpux userland has no find -mindepth/-delete)
        lines += [
            f'for f in {shlex.quote(d)}/* {shlex.quote(d)}/.[!.]* {shlex.quote(d)}/..?*; do if [ -e "$f" ] || [ -L "$f" ]; then rm -rf "$f"; fi; done'
            for d in self.emptied
        ]
        lines.append("tar -C / -xpf -")
        return "\n".join(lines)

    def write_here(self) -> None:
        for d, mode in self.dirs:
            os.makedirs(d, mode=mode, exist_ok=True)
            os.chmod(d, mode)
        for d in self.emptied:
            for entry in os.scandir(d):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        for path, data, mode in self.files:
            labhost.write_atomic(path, data, mode)

    def send(self, address: str, own_address: str) -> str | None:
        """Write the bundle on ``address``; returns None on success, else the reason."""
        if address == own_address:
            try:
                self.write_here()
            except (OSError, subprocess.CalledProcessError) as e:
                return str(e)
            return None
        try:
            done = labhost.root_ssh(address, self.script(), input=self.tar(), timeout=60)
        except subprocess.TimeoutExpired:
            return "no answer within 60s"
        return None if done.returncode == 0 else labhost.ssh_error(done)


def answers_root_ssh(address: str) -> str | None:
    """None if ``address`` answers root ssh from this host, else why not."""
    try:
        done = labhost.root_ssh(address, "true", timeout=30)
    except subprocess.TimeoutExpired:
        return "no answer within 30s"
    return None if done.returncode == 0 else labhost.ssh_error(done)


def read_tree(directory: str) -> list[tuple[str, bytes, int]]:
    """(relative path, content, mode) of every regular file below ``directory``."""
    out = []
    for base, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    out.append((os.path.relpath(path, directory), f.read(), os.stat(path).st_mode & 0o777))
    return out


# --- checks shared by the dispatcher and the wizard ---------------------------------------------


def master_here(lab: labhost.LabState, program: str) -> tuple[str | None, dict | None]:
    """(package mount, cluster) if this node may act as the master; raises Failed otherwise.

    On a cluster: the csync package must be running on this node, its filesystem mounted
    here. On a standalone master: (None, None)."""
    package = lab.package()
    me = lab.own_host()["name"]
    if package is None:
        if lab.own_host()["role"] != "master":
            raise Failed(f"{program}: run this on the master server")
        return None, None
    cluster = sgcluster.Cluster.read(lab)
    pkg = next(p for p in cluster.packages if p["name"] == package["name"])
    if pkg["status"] != "up" or not pkg.get("owner"):
        raise Failed(f"{program}: package {pkg['name']} is not running; start it (cmrunpkg {pkg['name']}) and run this command on the node that runs it")
    if pkg["owner"] != me:
        raise Failed(f"{program}: package {pkg['name']} runs on node {pkg['owner']}, not on this node ({me}); run this command on {pkg['owner']}")
    if not os.path.isdir(os.path.join(package["mount"], "dsau", "cfengine_master")):
        raise Failed(f"{program}: the package filesystem is not mounted at {package['mount']}")
    return package["mount"], {"cluster": cluster, "package": pkg}


def cluster_key_pair(mount: str, program: str) -> tuple[bytes, bytes]:
    d = os.path.join(mount, labhost.PACKAGE_CLUSTER_KEYS)
    try:
        with open(f"{d}/localhost.priv", "rb") as f:
            private = f.read()
        with open(f"{d}/localhost.pub", "rb") as f:
            public = f.read()
    except OSError as e:
        raise Failed(f"{program}: the cluster key pair is missing on the package filesystem: {e}") from None
    return private, public


# --- csync_dispatcher ----------------------------------------------------------------------------


def csync_dispatcher(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "MEMBER_ADDED:":
        print(DISPATCHER_USAGE, file=sys.stderr)
        return 2
    member = argv[1]
    lab = labhost.LabState()
    cluster = sgcluster.Cluster.read(lab)
    if not any(n["name"] == member for n in cluster.nodes):
        raise Failed(f"csync_dispatcher: {member} is not a node of cluster {cluster.name}")
    mount, _ = master_here(lab, "csync_dispatcher")
    me = lab.own_host()
    target = lab.host(member)
    if target is None:
        raise Failed(f"csync_dispatcher: cannot resolve host name {member}")
    private, public = cluster_key_pair(mount, "csync_dispatcher")
    print(f"csync_dispatcher: MEMBER_ADDED: {member} ({target['address']})")

    ppkeys, inputs, pkgdir = labhost.PPKEYS, labhost.INPUTS, labhost.package_files_dir()
    bundle = Bundle().dir(labhost.CFENGINE_DIR, 0o755).dir(ppkeys, 0o700).dir(inputs, 0o755).dir(pkgdir, 0o755)
    bundle.emptied.append(inputs)
    bundle.file(f"{ppkeys}/localhost.priv", private, 0o600).file(f"{ppkeys}/localhost.pub", public)
    held = [name for name in sorted(os.listdir(ppkeys)) if name.startswith("root-") and name.endswith(".pub")]
    for name in held:
        with open(f"{ppkeys}/{name}", "rb") as f:
            bundle.file(f"{ppkeys}/{name}", f.read())
    new_key = f"root-{target['address']}.pub"
    bundle.file(f"{ppkeys}/{new_key}", public)
    master_inputs = read_tree(os.path.join(mount, labhost.PACKAGE_MASTER_INPUTS))
    for rel, data, _ in master_inputs:
        bundle.file(f"{inputs}/{rel}", data)
    package_files = read_tree(pkgdir) if os.path.isdir(pkgdir) else []
    for rel, data, mode in package_files:
        bundle.file(f"{pkgdir}/{rel}", data, mode)
    bundle.file(labhost.CFSERVD_MARKER, f"started by csync_dispatcher on {me['name']} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    problem = bundle.send(target["address"], me["address"])
    if problem:
        raise Failed(f"csync_dispatcher: cannot configure {member}: {problem}")
    print(f"{member}: cluster key pair installed as localhost.priv, localhost.pub")
    print(f"{member}: {len(master_inputs)} input files copied from {mount}/{labhost.PACKAGE_MASTER_INPUTS}")
    print(f"{member}: {len(held)} key files copied from {me['name']}")
    print(f"{member}: {len(package_files)} package files copied to {pkgdir}")
    print(f"{member}: cfservd started")

    # The new member's key (the cluster key) under its address, on every member.
    failures = []
    done = [member]
    for node in cluster.nodes:
        if node["name"] == member:
            continue
        host = lab.host(node["name"])
        if not lab.alive(node["name"]):
            failures.append(f"{node['name']}: host is down")
            continue
        problem = Bundle().file(f"{ppkeys}/{new_key}", public).send(host["address"], me["address"])
        if problem:
            failures.append(f"{node['name']}: {problem}")
        else:
            done.append(node["name"])
    print(f"{', '.join(done)}: {new_key} installed")
    if failures:
        raise Failed("csync_dispatcher: could not install " + new_key + " on " + "; ".join(failures))
    print(f"csync_dispatcher: member {member} configured")
    return 0


# --- csync_wizard regenerate-keys ----------------------------------------------------------------


def csync_wizard(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "regenerate-keys":
        print(WIZARD_USAGE, file=sys.stderr)
        return 2
    clients = []
    for given in dict.fromkeys(argv[1:]):  # an address, or a host name resolved as the host resolves it [ours]
        try:
            clients.append(socket.gethostbyname(given))
        except OSError:
            raise Failed(f"csync_wizard: cannot resolve {given}; no key was changed") from None
    clients = list(dict.fromkeys(clients))
    lab = labhost.LabState()
    mount, _ = master_here(lab, "csync_wizard")
    me = lab.own_host()
    package = lab.package()
    masters = [h for h in lab.hosts() if h["role"] in ("member", "master")]

    # Everything must answer before anything changes (the wizard's documented requirement).
    everyone = [h["address"] for h in masters] + clients
    with ThreadPoolExecutor(max_workers=min(32, len(everyone))) as pool:
        answers = dict(zip(everyone, pool.map(lambda a: None if a == me["address"] else answers_root_ssh(a), everyone)))
    silent = [f"{a} ({why})" for a, why in answers.items() if why]
    if silent:
        raise Failed("csync_wizard: every system must be reachable to regenerate keys; no answer from " + ", ".join(silent) + "; no key was changed")

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    def new_pair() -> tuple[bytes, bytes]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        return (
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        )

    master_priv, master_pub = new_pair()
    client_pairs = {a: new_pair() for a in clients}
    ppkeys = labhost.PPKEYS
    server = package["address"] if package else me["address"]
    bundles: dict[str, Bundle] = {}
    for m in masters:
        b = bundles[m["address"]] = Bundle().dir(ppkeys, 0o700)
        b.file(f"{ppkeys}/localhost.priv", master_priv, 0o600).file(f"{ppkeys}/localhost.pub", master_pub)
        for other in masters:
            b.file(f"{ppkeys}/root-{other['address']}.pub", master_pub)
        b.file(f"{ppkeys}/root-{server}.pub", master_pub)
        for a, (_, pub) in client_pairs.items():
            b.file(f"{ppkeys}/root-{a}.pub", pub)
    for a, (priv, pub) in client_pairs.items():
        b = bundles[a] = Bundle().dir(ppkeys, 0o700)
        b.file(f"{ppkeys}/localhost.priv", priv, 0o600).file(f"{ppkeys}/localhost.pub", pub)
        for m in masters:
            b.file(f"{ppkeys}/root-{m['address']}.pub", master_pub)
        b.file(f"{ppkeys}/root-{server}.pub", master_pub)
    if mount:
        keys = os.path.join(mount, labhost.PACKAGE_CLUSTER_KEYS)
        Bundle().dir(keys, 0o700).file(f"{keys}/localhost.priv", master_priv, 0o600).file(f"{keys}/localhost.pub", master_pub).write_here()
    with ThreadPoolExecutor(max_workers=min(32, len(bundles))) as pool:
        problems = dict(zip(bundles, pool.map(lambda a: bundles[a].send(a, me["address"]), bundles)))
    failed = [f"{a} ({why})" for a, why in problems.items() if why]
    if failed:
        raise Failed("csync_wizard: keys were regenerated but could not be installed on " + ", ".join(failed))
    print(f"csync_wizard: regenerated keys for {len(masters)} master systems and {len(clients)} clients")
    return 0


# --- csshsetup -----------------------------------------------------------------------------------


def csshsetup(argv: list[str]) -> int:
    if not argv or any(a.startswith("-") for a in argv):
        print(CSSHSETUP_USAGE, file=sys.stderr)
        return 2
    lab = labhost.LabState()
    me = lab.own_host()
    key = "/root/.ssh/id_ed25519"
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{me['name']}", "-f", key], check=True)
    with open(key + ".pub", "rb") as f:
        line = f.read().strip()
    failures = 0
    for name in argv:
        host = lab.host(name)
        if host is None:
            print(f"csshsetup: {name}: unknown host", file=sys.stderr)
            failures += 1
            continue
        pid = lab.pid_of(host["name"])
        if pid is None:
            print(f"csshsetup: {name}: host is down", file=sys.stderr)
            failures += 1
            continue
        # Stands for "type root's password on the remote host once".
        add = 'umask 077; mkdir -p /root/.ssh; f=/root/.ssh/authorized_keys; touch $f; read -r k; grep -qxF "$k" $f || printf \'%s\\n\' "$k" >> $f'
        done = labhost.in_mount_ns(pid, ["/bin/sh", "-c", add], input=line + b"\n")
        problem = labhost.ssh_error(done) if done.returncode else answers_root_ssh(host["address"])
        if problem:
            print(f"csshsetup: {name}: {problem}", file=sys.stderr)
            failures += 1
        else:
            print(f"csshsetup: root@{me['name']} -> root@{host['name']} ({host['address']}): ok")
    return 1 if failures else 0


COMMANDS = {"csync_dispatcher": csync_dispatcher, "csync_wizard": csync_wizard, "csshsetup": csshsetup}

if __name__ == "__main__":
    tool = os.path.basename(sys.argv[0])
    if tool not in COMMANDS:
        print(f"{tool}: not a DSAU tool of the lab ({', '.join(COMMANDS)})", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(COMMANDS[tool](sys.argv[1:]))
    except Failed as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)
    except labhost.LabStateError as e:
        print(f"{tool}: {e}", file=sys.stderr)
        sys.exit(1)
