"""Who is in a lab: host names, roles and loopback addresses, and the lab's fixed names.

Every name and address the lab hands out is decided here. The [ours] values are the lab's
own choices (nothing in HP's documentation fixes them); the desired state the lab writes
(reconciler.lab.scenarios) and the emulated commands both take them from this module.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- The emulated site [ours] -------------------------------------------------------------
CLUSTER = "lab-cluster"
PACKAGE = "csync"
PACKAGE_ADDRESS = "127.0.10.10"
# The package filesystem's mount point. /csync does not exist on the machine: each host gets
# it from its own overlay of the root filesystem (reconciler/lab/hostinit.py).
LAB_MOUNT = "/csync"
PREFERRED_NODE = "node1"
STANDALONE_MASTER = "master"
SITE = "lab"

SCENARIOS = ("fresh", "seed", "standalone")
MAX_MEMBERS = 9  # 127.0.10.1-9; 127.0.10.10 is the package address
MAX_CLIENTS = 2000  # 127.0.10.21 upward, spilling over into 127.0.11.x, 127.0.12.x, ...
FIRST_CLIENT_OCTET = 21

# A second LAN [ours]: with `lab up --extra-addresses`, each member (or the standalone master)
# gets one more address, 127.0.20.<its member number>, and the package one more, 127.0.20.10:
# the same host parts as on the first LAN. No other part of the lab uses 127.0.20.0/24 (clients
# end at 127.0.17.x). In the hosts' /etc/hosts the extra address of host H is named H-lan2.
EXTRA_NET = "127.0.20"
PACKAGE_EXTRA_ADDRESS = f"{EXTRA_NET}.10"


# Where the members keep Serviceguard (`lab up --sg-layout`): its commands (SGSBIN), its
# configuration (SGCONF) and the csync package's files ($SGCONF/csync). Each layout's tree is
# a per-host directory of the lab (runtime.HOST_DIRS), so that reseed rewrites it.
@dataclass(frozen=True)
class SgLayout:
    name: str
    sbin: str  # the Serviceguard commands
    conf: str  # SGCONF
    host_dir: tuple[str, str]  # (per-host subdirectory, where it is mounted) that holds conf
    cmcluster_conf: str | None = None  # the text of the members' /etc/cmcluster.conf; None: no such file

    @property
    def package_files_dir(self) -> str:
        """The csync package's files on a member (desired state `paths.package_files_dir`)."""
        return f"{self.conf}/csync"


# default [ours]: the commands in /usr/local/sbin (a per-host directory of every lab host; HP-UX
# has them in /usr/sbin, SGSBIN), the configuration in /etc/cmcluster (HP-UX's SGCONF [doc]),
# no /etc/cmcluster.conf.
# linux: Serviceguard for Linux as HP's Red Hat example has it [doc: "Managing HP Serviceguard
# for Linux", "Understanding the Location of Serviceguard Files": /etc/cmcluster.conf names
# SGROOT, SGCONF, SGSBIN, SGLBIN, SGLIB, SGRUN, SGAUTOSTART]; nothing in /etc/cmcluster or
# /usr/local/sbin. DSAU is an HP-UX product: the package's files in $SGCONF/csync are [ours].
SG_ROOT_LINUX = "/usr/local/cmcluster"
SG_LAYOUTS = {
    "default": SgLayout("default", "/usr/local/sbin", "/etc/cmcluster", ("etc_cmcluster", "/etc/cmcluster")),
    "linux": SgLayout(
        "linux",
        f"{SG_ROOT_LINUX}/bin",
        f"{SG_ROOT_LINUX}/conf",
        ("usr_local_cmcluster", SG_ROOT_LINUX),
        "# cmcluster.conf: where Serviceguard keeps its files (written by csync lab, --sg-layout linux)\n"
        f"SGROOT={SG_ROOT_LINUX}\n"
        f"SGCONF={SG_ROOT_LINUX}/conf # configuration\n"
        f"SGSBIN={SG_ROOT_LINUX}/bin # commands\n"
        f"SGLBIN={SG_ROOT_LINUX}/bin\n"
        f"SGLIB={SG_ROOT_LINUX}/lib\n"
        f"SGRUN={SG_ROOT_LINUX}/run\n"
        f"SGAUTOSTART={SG_ROOT_LINUX}/conf/cmcluster.rc\n",
    ),
}


def sg_layout(name: str) -> SgLayout:
    if name not in SG_LAYOUTS:
        raise ValueError(f"unknown Serviceguard layout {name!r}; choose one of {', '.join(SG_LAYOUTS)}")
    return SG_LAYOUTS[name]


ROLE_MEMBER = "member"  # a Serviceguard node of the cluster that is the HA master
ROLE_MASTER = "master"  # a standalone master
ROLE_CLIENT = "client"  # a managed client


@dataclass(frozen=True)
class LabHost:
    """One host of the lab: its (unqualified) host name, loopback address and role."""

    name: str
    address: str  # the address csync reaches it by (ssh), and its cfengine address
    role: str  # member | master | client
    extra_addresses: tuple[str, ...] = ()  # its other addresses (lab up --extra-addresses)

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.address, *self.extra_addresses)

    @property
    def is_master_side(self) -> bool:
        """A host that serves policy: a cluster member or the standalone master."""
        return self.role in (ROLE_MEMBER, ROLE_MASTER)


def member_address(i: int) -> str:
    """Address of cluster member ``node<i>`` (1-based)."""
    if not 1 <= i <= MAX_MEMBERS:
        raise ValueError(f"member number {i} out of 1..{MAX_MEMBERS}")
    return f"127.0.10.{i}"


def member_extra_address(i: int) -> str:
    """The second-LAN address of member ``node<i>`` (or of the standalone master for 1) [ours]."""
    if not 1 <= i <= MAX_MEMBERS:
        raise ValueError(f"member number {i} out of 1..{MAX_MEMBERS}")
    return f"{EXTRA_NET}.{i}"


def client_address(i: int) -> str:
    """Address of ``client<i>`` (1-based): 127.0.10.21..254, then 127.0.11.1..254, ...

    Host parts 0 and 255 are skipped so that no client sits on a network or broadcast-looking
    address (harmless on loopback, but confusing in logs).
    """
    if not 1 <= i <= MAX_CLIENTS:
        raise ValueError(f"client number {i} out of 1..{MAX_CLIENTS}")
    n = FIRST_CLIENT_OCTET - 1 + i  # position counting 127.0.10.1 as 1
    third, fourth = divmod(n - 1, 254)
    return f"127.0.{10 + third}.{fourth + 1}"


def lab_hosts(members: int, clients: int, scenario: str, extra_addresses: bool = False) -> list[LabHost]:
    """The hosts of a lab, masters first: node1..nodeN (or the standalone master), then clients.
    With ``extra_addresses`` each member (or the standalone master) has a second-LAN address."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")

    def extra(i: int) -> tuple[str, ...]:
        return (member_extra_address(i),) if extra_addresses else ()

    if scenario == "standalone":
        hosts = [LabHost(STANDALONE_MASTER, member_address(1), ROLE_MASTER, extra(1))]
    else:
        if not 1 <= members <= MAX_MEMBERS:
            raise ValueError(f"a lab cluster has 1 to {MAX_MEMBERS} members, not {members}")
        hosts = [LabHost(f"node{i}", member_address(i), ROLE_MEMBER, extra(i)) for i in range(1, members + 1)]
    if not 0 <= clients <= MAX_CLIENTS:
        raise ValueError(f"a lab has 0 to {MAX_CLIENTS} clients, not {clients}")
    hosts += [LabHost(f"client{i}", client_address(i), ROLE_CLIENT) for i in range(1, clients + 1)]
    return hosts


def known_hosts_name(address: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: the bare address on port 22, else [addr]:port."""
    return address if port == 22 else f"[{address}]:{port}"
