"""Scenarios: what every lab host holds, and the cluster's state, when a lab starts or is reseeded.

``fresh`` is the converged site, the contract csync's planner is tested against:

- each member: /var/opt/dsau/cfengine/inputs/ (a copy of the master inputs, among them
  cfrun.hosts listing every client by name), ppkeys/
  localhost.priv/.pub = the cluster key, root-<client>.pub = that client's own key for every
  client, root-<member>.pub = the cluster key for every member, root-<package>.pub = the
  cluster key; /etc/cmcluster/csync/ (the package files; $SGCONF/csync/ with
  `--sg-layout linux`); cfservd.started;
- each client: inputs/ (a copy), ppkeys/localhost.priv/.pub = its own key,
  root-<package>.pub and root-<member>.pub for every member = the cluster key; cfservd.started;
- the package filesystem: dsau/cfengine_master/inputs/ and the cluster key pair in
  dsau/cfengine_master/ppkeys/;
- the cluster up, every node up, the package running on node1, switching enabled on every
  node, AUTO_RUN enabled.

``seed`` is the manual's excerpt: the last member was added while the package was down. The
package is halted (AUTO_RUN disabled); the last member is in the cluster and up but
unconfigured (its cfengine directory holds only its own fresh key pair and an empty inputs/,
no root-*.pub, no package files, no cfservd.started), and no host holds root-<its address>.pub;
client1 holds a stale root-<node2>.pub (another RSA key); client2 lacks root-<package>.pub.
Everything else is as in ``fresh``.

``standalone``: master ``master`` with its own key, the master inputs in
/var/opt/dsau/cfengine_master/inputs, root-<client>.pub for each client and
root-<master>.pub; clients hold root-<master>.pub = the master's key. Converged.

In every scenario root's ssh trust is set up as csshsetup leaves it: each host has its own
root key; the master side's root keys (and the admin key) are authorised on every member or
master and every client.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.domain import dsau
from reconciler.lab import topology
from reconciler.lab.topology import SG_LAYOUTS, LabHost, SgLayout

# Commands installed in each role's directories, as links to the programs in the lab's
# state/bin (the in-host path of that directory is /run/csync-lab/bin); the Serviceguard
# commands in the layout's SGSBIN (topology.SG_LAYOUTS).
SERVICEGUARD_COMMANDS = ("cmviewcl", "cmrunpkg", "cmhaltpkg", "cmmodpkg", "cmrunnode", "cmhaltnode", "cmruncl", "cmhaltcl", "cmversion")
CFENGINE_COMMANDS = ("cfagent", "cfrun", "cfservd", "cfkey")
BIN = "/run/csync-lab/bin"
CFSERVD_MARKER = f"{dsau.CFENGINE_DIR}/cfservd.started"  # [ours]
PACKAGE_CONF_NAME = "csync.conf"  # [ours] the package's ASCII file, in the package's directory


def cfrun_hosts(clients: list[LabHost]) -> str:
    """cfrun.hosts: the managed clients cfrun asks for a run [doc: a master input, read by cfrun
    from CF/inputs; ours: one client per line, by host name, no settings (so maxchild 1)]."""
    return "# cfrun.hosts: the managed clients cfrun asks for a run (DSAU configuration synchronization)\n" + "".join(f"{c.name}\n" for c in clients)


def master_inputs(policy_host: str, master_dir: str, clients: Sequence[LabHost] = ()) -> dict[str, str]:
    """The master's cfengine 2 inputs [ours: a small, plausible DSAU policy]."""
    return {
        "cfrun.hosts": cfrun_hosts(list(clients)),
        "update.conf": (
            "# update.conf: fetch the policy from the master (DSAU configuration synchronization)\n"
            "control:\n"
            "   actionsequence = ( copy )\n"
            "   domain         = ( lab )\n"
            f"   policyhost     = ( {policy_host} )\n"
            f"   master_cfinput = ( {master_dir} )\n"
            f"   workdir        = ( {dsau.CFENGINE_DIR} )\n"
            "\n"
            "copy:\n"
            "   $(master_cfinput) dest=$(workdir)/inputs r=inf mode=700 type=checksum\n"
            "                     server=$(policyhost) trustkey=false encrypt=true\n"
        ),
        "cfagent.conf": (
            "# cfagent.conf: the site policy (DSAU configuration synchronization)\n"
            "control:\n"
            "   actionsequence = ( copy editfiles processes tidy )\n"
            "   domain         = ( lab )\n"
            f"   policyhost     = ( {policy_host} )\n"
            "\n"
            "import:\n"
            "   any::\n"
            "      cf.motd\n"
            "\n"
            "processes:\n"
            '   "cfservd" restart "/opt/dsau/sbin/cfservd"\n'
        ),
        "cf.motd": (
            "# cf.motd: the message of the day\n"
            "editfiles:\n"
            "   { /etc/motd\n"
            "     AutoCreate\n"
            '     AppendIfNoSuchLine "This system is managed by DSAU configuration synchronization."\n'
            "   }\n"
        ),
        "cfservd.conf": (
            "# cfservd.conf: who may fetch policy and ask for a run\n"
            "control:\n"
            "   domain        = ( lab )\n"
            "   AllowUsers    = ( root )\n"
            '   cfrunCommand  = ( "/opt/dsau/sbin/cfagent" )\n'
            "\n"
            "admit:\n"
            f"   {master_dir}  127.0.0.0/8\n"
            "   /opt/dsau/sbin/cfagent  127.0.0.0/8\n"
        ),
    }


def package_conf(members: list[LabHost]) -> str:
    """/etc/cmcluster/csync/csync.conf: the package's ASCII configuration [ours]; with extra
    addresses, an ip_subnet/ip_address pair for the second LAN too (a modular package lists one
    pair per relocatable address)."""
    second = (
        [f"ip_subnet               {topology.EXTRA_NET}.0", f"ip_address              {topology.PACKAGE_EXTRA_ADDRESS}"]
        if any(m.extra_addresses for m in members)
        else []
    )
    lines = [
        "# csync package: the highly available cfengine master (DSAU configuration synchronization)",
        f"package_name            {topology.PACKAGE}",
        "package_type            failover",
        *[f"node_name               {m.name}" for m in members],
        "auto_run                yes",
        "failover_policy         configured_node",
        "failback_policy         manual",
        "ip_subnet               127.0.10.0",
        f"ip_address              {topology.PACKAGE_ADDRESS}",
        *second,
        "vg                      vgcsync",
        "fs_name                 /dev/vgcsync/lvcsync",
        f"fs_directory            {topology.LAB_MOUNT}",
        "fs_type                 vxfs",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class LabKeys:
    """The key material of one lab (kept in ``<lab>/keys.json`` so reseed restores it)."""

    master: tuple[bytes, bytes]  # the cluster key (or the standalone master's)
    late: tuple[bytes, bytes]  # seed: the unconfigured member's own key
    stale: tuple[bytes, bytes]  # seed: client1's stale root-<node2>.pub
    clients: dict[str, tuple[bytes, bytes]]  # client name -> (private, public)
    root_ssh: dict[str, tuple[bytes, bytes]]  # host name -> root's ed25519 (private, public line)
    admin_public: bytes = b""


@dataclass
class HostFiles:
    """What one host holds: files (in-host path -> (content, mode)), directories, links."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def put(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        self.files[path] = (data.encode() if isinstance(data, str) else data, mode)


@dataclass
class Scenario:
    hosts: dict[str, HostFiles]
    pkgfs: HostFiles  # paths relative to the package filesystem's root
    package_owner: str | None  # None: halted; no cluster at all when standalone
    autorun: str


def build(scenario: str, hosts: list[LabHost], keys: LabKeys, known_hosts: str, port: int, layout: SgLayout = SG_LAYOUTS["default"]) -> Scenario:
    """Every file of every host for ``scenario``, Serviceguard where ``layout`` keeps it."""
    cf, pp = dsau.CFENGINE_DIR, f"{dsau.CFENGINE_DIR}/{dsau.PPKEYS_SUBDIR}"
    masters = [h for h in hosts if h.is_master_side]
    clients = [h for h in hosts if h.role == topology.ROLE_CLIENT]
    standalone = scenario == "standalone"
    server = masters[0].address if standalone else topology.PACKAGE_ADDRESS
    master_dir = dsau.STANDALONE_MASTER_INPUTS if standalone else f"{topology.LAB_MOUNT}/{dsau.PACKAGE_MASTER_INPUTS}"
    inputs = master_inputs(server, master_dir, [h for h in hosts if h.role == topology.ROLE_CLIENT])
    late = masters[-1] if scenario == "seed" and len(masters) > 1 else None
    configured = [m for m in masters if m is not late]
    master_priv, master_pub = keys.master

    trusted_ssh = keys.admin_public + b"".join(keys.root_ssh[m.name][1] for m in masters)
    out: dict[str, HostFiles] = {}
    for h in hosts:
        f = out[h.name] = HostFiles()
        f.dirs.update({cf: 0o755, pp: 0o700, f"{cf}/{dsau.INPUTS_SUBDIR}": 0o755, "/root/.ssh": 0o700})
        priv, pub = keys.root_ssh[h.name]
        f.put("/root/.ssh/id_ed25519", priv, 0o600)
        f.put("/root/.ssh/id_ed25519.pub", pub, 0o644)
        f.put("/root/.ssh/authorized_keys", trusted_ssh, 0o600)
        f.put("/root/.ssh/known_hosts", known_hosts, 0o644)
        f.put("/root/.ssh/config", ssh_client_config(h.address, port), 0o600)
        for command in CFENGINE_COMMANDS:
            f.links[f"/usr/local/sbin/{command}"] = f"{BIN}/cfengine.py"
        if h is late:
            f.put(f"{pp}/{dsau.OWN_PRIVATE_KEY}", keys.late[0], 0o600)
            f.put(f"{pp}/{dsau.OWN_PUBLIC_KEY}", keys.late[1])
        else:
            for name, text in inputs.items():
                f.put(f"{cf}/{dsau.INPUTS_SUBDIR}/{name}", text)
            f.put(CFSERVD_MARKER, "started at boot\n")
        if h.role == topology.ROLE_MEMBER:
            for command in SERVICEGUARD_COMMANDS:
                f.links[f"{layout.sbin}/{command}"] = f"{BIN}/serviceguard.py"
            f.links[dsau.DISPATCHER] = f"{BIN}/dsau_tools.py"
            f.links[dsau.WIZARD] = f"{BIN}/dsau_tools.py"
            f.links[dsau.CSSHSETUP] = f"{BIN}/dsau_tools.py"
        if h.role == topology.ROLE_MASTER:
            f.links[dsau.WIZARD] = f"{BIN}/dsau_tools.py"
            f.links[dsau.CSSHSETUP] = f"{BIN}/dsau_tools.py"
            f.dirs[dsau.STANDALONE_MASTER_INPUTS] = 0o755
            for name, text in inputs.items():
                f.put(f"{dsau.STANDALONE_MASTER_INPUTS}/{name}", text)
        if h.is_master_side and h is not late:
            f.put(f"{pp}/{dsau.OWN_PRIVATE_KEY}", master_priv, 0o600)
            f.put(f"{pp}/{dsau.OWN_PUBLIC_KEY}", master_pub)
            for c in clients:
                f.put(f"{pp}/{dsau.peer_key_name(c.address)}", keys.clients[c.name][1])
            for m in configured:
                f.put(f"{pp}/{dsau.peer_key_name(m.address)}", master_pub)
            f.put(f"{pp}/{dsau.peer_key_name(server)}", master_pub)
            if h.role == topology.ROLE_MEMBER:
                f.put(f"{layout.package_files_dir}/{PACKAGE_CONF_NAME}", package_conf(masters))
        if h.role == topology.ROLE_CLIENT:
            priv, pub = keys.clients[h.name]
            f.put(f"{pp}/{dsau.OWN_PRIVATE_KEY}", priv, 0o600)
            f.put(f"{pp}/{dsau.OWN_PUBLIC_KEY}", pub)
            for m in configured:
                f.put(f"{pp}/{dsau.peer_key_name(m.address)}", master_pub)
            f.put(f"{pp}/{dsau.peer_key_name(server)}", master_pub)

    if scenario == "seed":
        if clients and len(masters) > 1:
            out[clients[0].name].put(f"{pp}/{dsau.peer_key_name(masters[1].address)}", keys.stale[1])
        if len(clients) > 1:
            del out[clients[1].name].files[f"{pp}/{dsau.peer_key_name(server)}"]

    pkgfs = HostFiles()
    if not standalone:
        pkgfs.dirs.update({"dsau": 0o755, "dsau/cfengine_master": 0o755, dsau.PACKAGE_MASTER_INPUTS: 0o755, dsau.PACKAGE_CLUSTER_KEY_DIR: 0o700})
        for name, text in inputs.items():
            pkgfs.put(f"{dsau.PACKAGE_MASTER_INPUTS}/{name}", text)
        pkgfs.put(f"{dsau.PACKAGE_CLUSTER_KEY_DIR}/{dsau.OWN_PRIVATE_KEY}", master_priv, 0o600)
        pkgfs.put(f"{dsau.PACKAGE_CLUSTER_KEY_DIR}/{dsau.OWN_PUBLIC_KEY}", master_pub)
    owner = None if standalone or scenario == "seed" else masters[0].name
    return Scenario(out, pkgfs, owner, "enabled" if owner else "disabled")


def ssh_client_config(own_address: str, port: int) -> str:
    """root's ~/.ssh/config on a lab host: every ssh to another lab host leaves from the host's
    own address (the callee sees it in SSH_CLIENT), on the lab's port, with strict host keys."""
    return (
        "# Written by csync lab: host-to-host ssh inside the lab\n"
        "Host *\n"
        f"    BindAddress {own_address}\n"
        f"    Port {port}\n"
        "    User root\n"
        "    IdentityFile /root/.ssh/id_ed25519\n"
        "    IdentitiesOnly yes\n"
        "    UserKnownHostsFile /root/.ssh/known_hosts\n"
        "    StrictHostKeyChecking yes\n"
        "    BatchMode yes\n"
        "    ConnectTimeout 5\n"
        "    LogLevel ERROR\n"
    )


def desired_state_yaml(
    hosts: list[LabHost],
    scenario: str,
    *,
    identity_file: str,
    known_hosts: str,
    port: int,
    header: str,
    package_extra: Sequence[str] = (),
    layout: SgLayout = SG_LAYOUTS["default"],
) -> str:
    """The converged intent of a lab as desired-state YAML (whatever the scenario it started in);
    with extra addresses (`lab up --extra-addresses`) they are declared too, and a cluster of
    another Serviceguard layout (`lab up --sg-layout linux`) declares where it keeps it
    (`paths.package_files_dir`, `platform.serviceguard_path`)."""
    masters = [h for h in hosts if h.is_master_side]

    def host(h: LabHost) -> str:
        extra = f", extra_addresses: [{', '.join(h.extra_addresses)}]" if h.extra_addresses else ""
        return f"{{name: {h.name}, address: {h.address}{extra}}}"

    clients = [h for h in hosts if h.role == topology.ROLE_CLIENT]
    out = [header.rstrip("\n"), "version: 1", f"site: {topology.SITE}", "master:"]
    if scenario == "standalone":
        out += ["  mode: standalone", f"  host: {host(masters[0])}"]
    else:
        if not masters:
            raise ValueError("a cluster's desired state needs at least one member")
        # The preferred node must be a declared member: the first one left if it is not.
        node = topology.PREFERRED_NODE if any(m.name == topology.PREFERRED_NODE for m in masters) else masters[0].name
        out += [
            "  mode: serviceguard",
            f"  cluster: {topology.CLUSTER}",
            f"  package: {{name: {topology.PACKAGE}, address: {topology.PACKAGE_ADDRESS}, "
            + (f"extra_addresses: [{', '.join(package_extra)}], " if package_extra else "")
            + f"mount: {topology.LAB_MOUNT}, node: {node}, state: running}}",
            "  members:",
        ]
        out += [f"    - {host(m)}" for m in masters]
    out.append("clients:" if clients else "clients: []")
    out += [f"  - {{name: {c.name}, address: {c.address}}}" for c in clients]
    out += [
        "keys: {distribution: copy, cfrun: all-members, prune: true}",
        "access:",
        "  user: root",
        f"  identity_file: {identity_file}",
        f"  known_hosts: {known_hosts}",
        f"  port: {port}",
        "  connect_timeout: 5",
        "  parallelism: 64",
    ]
    if scenario != "standalone" and layout != SG_LAYOUTS["default"]:
        out += [f"paths: {{package_files_dir: {layout.package_files_dir}}}", f"platform: {{serviceguard_path: {layout.sbin}}}"]
    return "\n".join(out) + "\n"


REPO_LAB_HEADER = """\
# yaml-language-server: $schema=../schemas/desired-state.schema.json
# The default lab (`csync lab up`: 3 members, 10 clients) as it should be: the converged site.
# Generated by reconciler.lab.scenarios.repo_desired_state() (a test keeps it in sync). Paths are
# relative to this file: the lab's directory is .csync/lab in the repository's root. If port 22
# is taken on 127.0.10.x, `csync lab up` picks another port: then use .csync/lab/desired-state.yaml."""


def repo_desired_state() -> str:
    """desired-state/lab.yaml of the repository: the default lab, paths relative to the file."""
    return desired_state_yaml(
        topology.lab_hosts(3, 10, "fresh"),
        "fresh",
        identity_file="../.csync/lab/admin/id_ed25519",
        known_hosts="../.csync/lab/known_hosts",
        port=22,
        header=REPO_LAB_HEADER,
    )


def write_tree(files: HostFiles, resolve, atomic: bool = True) -> None:
    """Write ``files``; ``resolve(in-host path) -> real Path``. Directories first, with their
    modes; files atomically (temp file, mode, rename) unless ``atomic`` is False (nothing runs
    yet to see a partial file); links replaced."""

    made: set[Path] = set()

    def parent_of(real: Path) -> None:
        if real.parent not in made:  # mkdir is a slow metadata operation: once per directory
            real.parent.mkdir(parents=True, exist_ok=True)
            made.add(real.parent)

    for d, mode in sorted(files.dirs.items()):
        real = resolve(d)
        real.mkdir(parents=True, exist_ok=True)
        real.chmod(mode)
        made.add(real)
    for path, (data, mode) in files.files.items():
        real = resolve(path)
        parent_of(real)
        tmp = real.with_name(f".{real.name}.lab.tmp") if atomic else real
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)  # the umask must not decide a key file's mode
        if atomic:
            os.replace(tmp, real)
    for path, target in files.links.items():
        real = resolve(path)
        parent_of(real)
        if real.is_symlink() or real.exists():
            real.unlink()
        real.symlink_to(target)


def empty_dir(path: Path) -> None:
    """Remove everything inside ``path`` but keep the directory itself: it is the source of a
    bind mount in a running host, and a new directory at the same path would not be seen."""
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
