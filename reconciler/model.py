"""The desired state of a DSAU synchronization site (pydantic v2).

Field names follow PRODUCT.md's sketch; users and examples rely on them. Every value that
can end up in a remote command or a path is validated here, strictly, before anything runs:
names are RFC 1123 labels, addresses are canonical dotted-quad IPv4, paths are absolute and
normalised. The semantic checks (uniqueness, references) are in `semantic_problems`, which
returns every problem with its field path so the loader can point at each one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import posixpath
import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from reconciler import dsau

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_SG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,38}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
_FILE_PATH = re.compile(r"^[A-Za-z0-9_./~+-][A-Za-z0-9_./~+@-]*$")


def _host_name(value: str) -> str:
    if not _LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid unqualified host name: use 1-63 letters, digits and '-', "
            "not starting or ending with '-' (RFC 1123; no dots, spaces or shell characters)"
        )
    return value


def _sg_name(value: str) -> str:
    if not _SG_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid Serviceguard name: 1-39 letters, digits, '_', '.', '-', starting with a letter or digit")
    return value


def _ipv4(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    if str(address) != value:
        raise ValueError(f"{value!r} is not in canonical form; write {address}")
    if address.is_unspecified or address.is_multicast or str(address) == "255.255.255.255":
        raise ValueError(f"{value!r} cannot be a host's address")
    return value


def _abs_path(value: str) -> str:
    if not _SAFE_PATH.fullmatch(value):
        raise ValueError(f"{value!r} must be an absolute path of letters, digits, '_', '.', '-' and '/'")
    if posixpath.normpath(value) != value or value.startswith("//") or "/../" in value + "/":
        raise ValueError(f"{value!r} is not normalised; write {posixpath.normpath(value)!r}")
    return value


def _file_path(value: str) -> str:
    if not _FILE_PATH.fullmatch(value):
        raise ValueError(f"{value!r} is not a usable file path (letters, digits and _ . / ~ + - @ only)")
    return value


def _user(value: str) -> str:
    if not _USER.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid user name")
    return value


HostName = Annotated[str, AfterValidator(_host_name)]
SgName = Annotated[str, AfterValidator(_sg_name)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
AbsPath = Annotated[str, AfterValidator(_abs_path)]
FilePath = Annotated[str, AfterValidator(_file_path)]
UserName = Annotated[str, AfterValidator(_user)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Host(_Model):
    """A host csync manages."""

    name: HostName = Field(description="Unqualified host name (RFC 1123 label), as the host calls itself.")
    address: IPv4 = Field(description="IPv4 address csync connects to and cfengine knows the host by (root-<address>.pub).")


class Package(_Model):
    """The csync Serviceguard package: the highly available master."""

    name: SgName = Field("csync", description="Serviceguard package name.")
    address: IPv4 = Field(description="The package's relocatable IP address; clients name the master by it.")
    mount: AbsPath = Field("/csync", description="Mount point of the package's filesystem (holds dsau/cfengine_master).")
    node: HostName | None = Field(None, description="Preferred member to run the package on when csync starts it.")


class ServiceguardMaster(_Model):
    """A Serviceguard cluster configured as a highly available master server."""

    mode: Literal["serviceguard"] = Field(description="The master is the csync package of a Serviceguard cluster.")
    cluster: SgName = Field(description="Serviceguard cluster name, as cmviewcl prints it.")
    package: Package = Field(description="The csync package.")
    members: list[Host] = Field(min_length=1, description="Cluster members: every one is an adoptive node of the package.")


class StandaloneMaster(_Model):
    """A single host as the cfengine master."""

    mode: Literal["standalone"] = Field(description="The master is one host.")
    host: Host = Field(description="The master host.")


class KeyPolicy(_Model):
    """How cfengine keys are distributed and kept."""

    distribution: Literal["copy", "regenerate"] = Field(
        "copy", description="copy: copy or install the keys each host needs; regenerate: run the wizard's key regeneration (needs every client reachable)."
    )
    cfrun: Literal["all-members", "none"] = Field(
        "all-members", description="all-members: every client holds every member's key, so cfrun works from any member; none: clients hold only the package key."
    )
    prune: bool = Field(False, description="Remove root-<IP>.pub files of addresses no longer declared, when csync can prove it manages them.")


class HostAccess(_Model):
    """Connection settings for one host, overriding `access`."""

    user: UserName | None = None
    port: int | None = Field(None, ge=1, le=65535)
    identity_file: FilePath | None = None
    connect_timeout: float | None = Field(None, gt=0, le=300)


class ResolvedAccess(_Model):
    """The connection settings in force for one host (paths expanded)."""

    user: str
    port: int
    identity_file: str
    known_hosts: str
    connect_timeout: float
    host_key_policy: str


class Access(_Model):
    """How csync reaches the hosts over SSH."""

    user: UserName = Field("root", description="Remote user (DSAU's key store belongs to root).")
    identity_file: FilePath = Field("~/.ssh/id_ed25519", description="Private key csync authenticates with; relative paths are relative to the YAML file.")
    known_hosts: FilePath = Field("~/.ssh/known_hosts", description="Host keys csync verifies hosts against; relative paths are relative to the YAML file.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    connect_timeout: float = Field(10, gt=0, le=300, description="Seconds to wait for a host to answer.")
    command_timeout: float = Field(120, gt=0, le=3600, description="Seconds one remote command may take.")
    parallelism: int = Field(64, ge=1, le=1024, description="Hosts worked on at once.")
    host_key_policy: Literal["strict", "accept-new"] = Field(
        "strict", description="strict: unknown host keys are refused; accept-new: recorded on first contact. A changed key is always refused."
    )
    hosts: dict[HostName, HostAccess] = Field(default_factory=dict, description="Per-host overrides, by declared host name.")

    def for_host(self, name: str) -> ResolvedAccess:
        o = self.hosts.get(name) or HostAccess()
        return ResolvedAccess(
            user=o.user or self.user,
            port=o.port or self.port,
            identity_file=os.path.expanduser(o.identity_file or self.identity_file),
            known_hosts=os.path.expanduser(self.known_hosts),
            connect_timeout=o.connect_timeout or self.connect_timeout,
            host_key_policy=self.host_key_policy,
        )


class Paths(_Model):
    """DSAU paths on the hosts (defaults from HP's documentation)."""

    cfengine_dir: AbsPath = Field(dsau.CFENGINE_DIR, description="cfengine work directory on every managed system.")
    standalone_master_inputs: AbsPath = Field(dsau.STANDALONE_MASTER_INPUTS, description="Master policy of a standalone master.")
    package_files_dir: AbsPath = Field(dsau.PACKAGE_FILES_DIR, description="csync package files on each member.")
    dispatcher: AbsPath = Field(dsau.DISPATCHER, description="csync_dispatcher.")
    wizard: AbsPath = Field(dsau.WIZARD, description="csync_wizard.")


Master = Annotated[Union[ServiceguardMaster, StandaloneMaster], Field(discriminator="mode")]

_RESERVED_MOUNTS = ("/", "/etc", "/var/opt/dsau", "/opt/dsau", "/usr", "/var", "/opt", "/root", "/tmp")


class DesiredState(_Model):
    """A DSAU synchronization site as it should be."""

    version: Literal[1] = Field(description="Format version of this file.")
    site: HostName = Field(description="Name of the site (a label; used in locks and reports).")
    master: Master = Field(description="The cfengine master: a Serviceguard cluster or a standalone host.")
    clients: list[Host] = Field(default_factory=list, description="Managed clients outside the cluster.")
    keys: KeyPolicy = Field(default_factory=KeyPolicy, description="Key distribution policy.")
    access: Access = Field(default_factory=Access, description="SSH access to the hosts.")
    paths: Paths = Field(default_factory=Paths, description="DSAU paths, when a site differs from the defaults.")

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.master, ServiceguardMaster)

    @property
    def members(self) -> list[Host]:
        return list(self.master.members) if isinstance(self.master, ServiceguardMaster) else []

    @property
    def master_hosts(self) -> list[Host]:
        return self.members if self.is_cluster else [self.master.host]  # type: ignore[union-attr]

    @property
    def all_hosts(self) -> list[Host]:
        return self.master_hosts + list(self.clients)

    def host(self, name: str) -> Host:
        for h in self.all_hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def role_of(self, name: str) -> Literal["member", "master", "client"]:
        if any(c.name == name for c in self.clients):
            return "client"
        return "member" if self.is_cluster else "master"

    def digest(self) -> str:
        """sha256 of everything but `access`: a plan made on a laptop applies in CI."""
        data = self.model_dump(mode="json", exclude={"access"})
        return "sha256:" + hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def semantic_problems(state: DesiredState) -> list[tuple[tuple, str]]:
    """Every cross-field problem as (field path, message); empty when the state is sound."""
    problems: list[tuple[tuple, str]] = []
    hosts: list[tuple[tuple, Host]] = []
    if isinstance(state.master, ServiceguardMaster):
        hosts += [(("master", "members", i), h) for i, h in enumerate(state.master.members)]
    else:
        hosts.append((("master", "host"), state.master.host))
    hosts += [(("clients", i), h) for i, h in enumerate(state.clients)]
    names: dict[str, tuple] = {}
    addresses: dict[str, tuple[tuple, Host]] = {}
    for path, h in hosts:
        first = names.setdefault(h.name.lower(), path)
        if first != path:
            problems.append((path + ("name",), f"{h.name!r} is already the name of {_where(first)}; host names must be unique"))
        seen = addresses.setdefault(h.address, (path, h))
        if seen[0] != path:
            problems.append((path + ("address",), f"{h.address} is already the address of {seen[1].name} ({_where(seen[0])})"))
    if isinstance(state.master, ServiceguardMaster):
        pkg = state.master.package
        if pkg.address in addresses:
            where, h = addresses[pkg.address]
            problems.append((("master", "package", "address"), f"{pkg.address} is the address of {h.name} ({_where(where)}); the package address must be its own"))
        members = {m.name for m in state.master.members}
        if pkg.node is not None and pkg.node not in members:
            problems.append((("master", "package", "node"), f"{pkg.node!r} is not a declared member (members: {', '.join(sorted(members))})"))
        if pkg.mount in _RESERVED_MOUNTS or any(pkg.mount.startswith(r + "/") for r in ("/etc", "/var/opt/dsau", "/opt/dsau", "/usr")):
            problems.append((("master", "package", "mount"), f"{pkg.mount!r} cannot be the package's mount point; use a directory of its own such as /csync"))
    declared = {h.name for _, h in hosts}
    for name in state.access.hosts:
        if name not in declared:
            problems.append((("access", "hosts", name), f"{name!r} is not a declared host"))
    return problems


def _where(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))
