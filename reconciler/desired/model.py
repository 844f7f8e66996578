"""The desired state of a DSAU synchronization site (pydantic v2).

Field names follow PRODUCT.md's sketch; users, examples and the JSON Schema rely on them.
Every value that can end up in a remote command, a path or a cfengine key name is
validated here, strictly, before anything runs: host names are RFC 1123 labels, addresses
canonical dotted-quad IPv4, paths absolute and normalised, numbers real numbers (YAML's
`"22"` or `yes` are refused, not coerced).

Cross-field rules (unique names and addresses, references to declared hosts) live in
`semantic_problems`, which works on a validated state and on the raw mapping that failed
validation alike, so one run reports every problem. `DesiredState` raises all of them,
field errors and cross-field errors together, in one `ValidationError`; cross-field errors
have the type `CONFLICT_ERROR` and name the earlier declaration they conflict with (see
`Conflict`), which the loader turns into a file:line:column.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from reconciler.desired.rules import line_errors
from reconciler.desired.values import (
    AbsolutePath,
    HostName,
    IPv4,
    LocalPath,
    MountPoint,
    SearchPath,
    Seconds,
    SgName,
    UserName,
    exact_int,
)
from reconciler.domain import dsau

Role = Literal["member", "master", "client"]

# --- Models ---------------------------------------------------------------------------------


class _Model(BaseModel):
    # strict: a YAML "22" is text and `yes` is text (YAML 1.2); neither is coerced.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Host(_Model):
    """A host csync manages: a cluster member, the standalone master or a client."""

    name: HostName = Field(
        description="Unqualified host name (RFC 1123 label: 1-63 letters, digits and '-'), as the host calls itself; "
        "csync_dispatcher and cmrunpkg are given this name."
    )
    address: IPv4 = Field(description="IPv4 address (dotted quad) csync connects to, and cfengine knows the host by: its key file is root-<address>.pub.")


class MasterHost(Host):
    """A host that can be the cfengine master: a cluster member or the standalone master."""

    extra_addresses: list[IPv4] = Field(
        default_factory=list,
        description="Its other IPv4 addresses (other LANs): cfrun leaves from whichever address routing picks, so with "
        "keys.cfrun: all-members every client holds root-<a>.pub for each of them too. `address` stays the one csync connects to.",
    )

    @property
    def addresses(self) -> list[str]:
        """Every address of the host: `address` first, then its extra addresses."""
        return [self.address, *self.extra_addresses]


class Package(_Model):
    """The csync Serviceguard package: the highly available cfengine master."""

    name: SgName = Field("csync", description="Serviceguard package name, as cmviewcl prints it.")
    address: IPv4 = Field(description="The package's relocatable IP address; clients pull policy from it, so they hold root-<address>.pub (the cluster key).")
    extra_addresses: list[IPv4] = Field(
        default_factory=list,
        description="The package's other relocatable addresses (one per subnet); clients hold root-<a>.pub (the cluster key) for each.",
    )
    mount: MountPoint = Field(
        "/csync",
        description="Mount point of the package's filesystem, which holds dsau/cfengine_master; absolute, normalised, "
        "not '/' and not inside /etc, /var/opt/dsau or /opt/dsau.",
    )
    node: HostName | None = Field(
        None, description="Member csync starts the package on when it is down (cmrunpkg -n); a declared member. Default: Serviceguard's choice."
    )
    state: Literal["running", "halted", "unmanaged"] = Field(
        "running",
        description="The administrator's intent for the package. running: csync starts it when it is down and keeps its "
        "global switching enabled. halted (maintenance): csync halts it if it runs (cmhaltpkg), never starts it, and plans "
        "only the key work that does not need it. unmanaged: csync never starts, halts or changes switching; it plans key work "
        "while the package runs and reports the rest as waiting for the package.",
    )

    @property
    def addresses(self) -> list[str]:
        """Every address of the package: `address` first, then its extra addresses."""
        return [self.address, *self.extra_addresses]


class ServiceguardMaster(_Model):
    """A Serviceguard cluster configured as a highly available master server."""

    mode: Literal["serviceguard"] = Field(description="The master is the csync package of a Serviceguard cluster.")
    cluster: SgName = Field(description="Serviceguard cluster name, as cmviewcl prints it.")
    package: Package = Field(description="The csync package.")
    members: list[MasterHost] = Field(min_length=1, description="Cluster members (Serviceguard nodes); each one is an adoptive node of the package.")


class StandaloneMaster(_Model):
    """A single host as the cfengine master."""

    mode: Literal["standalone"] = Field(description="The master is one host.")
    host: MasterHost = Field(description="The master host.")


Master = Annotated[ServiceguardMaster | StandaloneMaster, Field(discriminator="mode")]


class KeyPolicy(_Model):
    """How cfengine keys are distributed and kept."""

    distribution: Literal["copy", "regenerate"] = Field(
        "copy",
        description="How keys change. Drift is always repaired by copy and install (checked by content). copy: csync never "
        "runs the wizard's key regeneration; regenerate: it runs it when keys.generation is raised (a rotation on purpose).",
    )
    generation: int = Field(
        0,
        ge=0,
        description="The key generation: raise it by one (with distribution: regenerate) to rotate every key of the site "
        "through the wizard once. csync records the generation it rotated to in the site's inventory.",
    )
    cfrun: Literal["all-members", "none"] = Field(
        "all-members",
        description="all-members: every client holds every member's key and every member holds every client's, so cfrun "
        "works from any member after a failover; none: clients hold only the package address's key (cfagent only).",
    )
    prune: bool = Field(
        False,
        description="Remove key files csync recorded as its own (in the site's inventory) once they are no longer "
        "declared for their host; every other undeclared key file is left alone and reported.",
    )


class HostAccess(_Model):
    """Connection settings for one host; each one set here overrides `access`."""

    user: UserName | None = Field(None, description="Remote user for this host.")
    port: int | None = Field(None, ge=1, le=65535, description="SSH port of this host.")
    identity_file: LocalPath | None = Field(
        None, description="Private key for this host; a relative path is relative to the YAML file that declares it, '~' is the home directory."
    )
    plan_identity_file: LocalPath | None = Field(None, description="The plan identity's private key for this host (see access.plan_identity_file).")
    connect_timeout: Seconds | None = Field(None, gt=0, le=300, description="Seconds to wait for this host to answer.")


@dataclass(frozen=True)
class ResolvedAccess:
    """The connection settings in force for one host. Paths are as declared ('~' kept):
    `expanded()` resolves '~' at the moment of use, on the machine that connects."""

    user: str
    port: int
    identity_file: str
    known_hosts: str
    connect_timeout: float
    host_key_policy: Literal["strict", "accept-new"]
    plan_identity_file: str | None = None

    def expanded(self) -> ResolvedAccess:
        """The same settings with '~' in the paths expanded to the home directory."""
        return replace(
            self,
            identity_file=os.path.expanduser(self.identity_file),
            known_hosts=os.path.expanduser(self.known_hosts),
            plan_identity_file=os.path.expanduser(self.plan_identity_file) if self.plan_identity_file else None,
        )


class Access(_Model):
    """How csync reaches the hosts over SSH; not part of the desired state's digest."""

    # Outside the digest so that a plan made on a laptop applies in CI, where key paths differ.

    user: UserName = Field("root", description="Remote user; DSAU's key store belongs to root.")
    identity_file: LocalPath = Field(
        "~/.ssh/id_ed25519",
        description="Private key csync authenticates with; a relative path is relative to the YAML file that declares it, '~' is the home directory.",
    )
    plan_identity_file: LocalPath | None = Field(
        None,
        description="Private key of the plan identity: a second key, authorized for the remote user with a forced command "
        "(`csync bootstrap` prints the authorized_keys line) that can only run csync's probe program. When set, plan, facts "
        "and trust (without --live) log in with it; apply, unlock, import and trust --live use identity_file; and every plan "
        "installs or upgrades the probe program where it is missing or out of date (docs/SECURITY.md).",
    )
    known_hosts: LocalPath = Field(
        "~/.ssh/known_hosts",
        description="OpenSSH known_hosts file the hosts' keys are checked against; a relative path is relative to the YAML file that declares it.",
    )
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    connect_timeout: Seconds = Field(10, gt=0, le=300, description="Seconds to wait for a host to answer.")
    command_timeout: Seconds = Field(120, gt=0, description="Seconds one remote command may take.")
    parallelism: int = Field(64, ge=1, le=1024, description="Hosts worked on at once.")
    host_key_policy: Literal["strict", "accept-new"] = Field(
        "strict",
        description="strict: a host whose key is not in known_hosts is refused; accept-new: on first contact an unknown "
        "host key is accepted and recorded. A changed key is always refused.",
    )
    hosts: dict[HostName, HostAccess] = Field(default_factory=dict, description="Per-host overrides, keyed by the name of a declared member, master or client.")

    def for_host(self, name: str) -> ResolvedAccess:
        """The settings for host ``name``: its overrides, else these defaults."""
        override = self.hosts.get(name) or HostAccess()
        return ResolvedAccess(
            user=override.user if override.user is not None else self.user,
            port=override.port if override.port is not None else self.port,
            identity_file=override.identity_file if override.identity_file is not None else self.identity_file,
            known_hosts=self.known_hosts,
            connect_timeout=override.connect_timeout if override.connect_timeout is not None else self.connect_timeout,
            host_key_policy=self.host_key_policy,
            plan_identity_file=override.plan_identity_file if override.plan_identity_file is not None else self.plan_identity_file,
        )

    @property
    def plan_identity(self) -> bool:
        """Whether a plan identity is configured (for every host, or for some)."""
        return self.plan_identity_file is not None or any(h.plan_identity_file is not None for h in self.hosts.values())


class Paths(_Model):
    """DSAU paths on the hosts; the defaults are HP's documented ones."""

    cfengine_dir: AbsolutePath = Field(dsau.CFENGINE_DIR, description="cfengine work directory on every managed system (holds inputs/ and ppkeys/).")
    standalone_master_inputs: AbsolutePath = Field(dsau.STANDALONE_MASTER_INPUTS, description="Master policy directory of a standalone master.")
    package_files_dir: AbsolutePath = Field(
        dsau.PACKAGE_FILES_DIR,
        description="csync package files on each member ($SGCONF/csync: /etc/cmcluster/csync on HP-UX, /usr/local/cmcluster/conf/csync "
        "on Serviceguard for Linux on Red Hat); the probe counts them to tell a configured member.",
    )
    dispatcher: AbsolutePath = Field(dsau.DISPATCHER, description="csync_dispatcher, run on the package's node after a member is added.")
    wizard: AbsolutePath = Field(dsau.WIZARD, description="csync_wizard, run to regenerate keys.")


CmviewclFormat = Literal["auto", "line", "table"]


class Platform(_Model):
    """Where the hosts keep Serviceguard's and cfengine's commands, and which cmviewcl format
    csync reads; the defaults fit HP-UX (and find the lab's and Serviceguard for Linux's)."""

    serviceguard_path: SearchPath = Field(
        dsau.SERVICEGUARD_PATH,
        description="Directories (absolute, joined by ':') searched for Serviceguard's commands (cmviewcl, cmrunpkg, cmhaltpkg, "
        "cmmodpkg, cmversion) before the login PATH, on every member. HP-UX installs them in /usr/sbin; Serviceguard for "
        "Linux in $SGSBIN (/usr/local/cmcluster/bin on Red Hat, /opt/cmcluster/bin on SUSE; see /etc/cmcluster.conf).",
    )
    cfengine_path: SearchPath = Field(
        dsau.CFENGINE_PATH,
        description="Directories (absolute, joined by ':') searched for cfengine's cfrun and cfagent before the login PATH (csync trust --live).",
    )
    cmviewcl_format: CmviewclFormat = Field(
        "auto",
        description="How members' cluster views are read. auto: cmviewcl -v -f line, and the table format (cmviewcl -v) "
        "when that fails (a release before A.11.18 has no -f line); line: the line format only; table: the table format only "
        "(spares the refused -f line on every probe of an older release).",
    )

    @property
    def is_default(self) -> bool:
        return self == Platform()


class DesiredState(_Model):
    """A DSAU synchronization site as it should be."""

    version: Annotated[Literal[1], BeforeValidator(exact_int)] = Field(description="Format version of the desired state: 1.")
    site: HostName = Field(description="Name of the site (RFC 1123 label); names its lock and appears in plans.")
    master: Master = Field(description="The cfengine master: a Serviceguard cluster (mode: serviceguard) or one host (mode: standalone).")
    clients: list[Host] = Field(default_factory=list, description="Managed clients: systems outside the cluster that pull policy from the master.")
    keys: KeyPolicy = Field(default_factory=KeyPolicy, description="Key distribution policy.")
    access: Access = Field(default_factory=Access, description="SSH access to the hosts (not part of the digest).")
    paths: Paths = Field(default_factory=Paths, description="DSAU paths on the hosts, for a site that differs from HP's defaults.")
    platform: Platform = Field(
        default_factory=Platform,
        description="Where the hosts keep Serviceguard's and cfengine's commands, and the cmviewcl format csync reads, for a "
        "site that differs from the defaults (which fit HP-UX).",
    )

    # name -> (host, role), built on first use: role_of/host are called once per host.
    _roles: tuple[tuple[int, int], dict[str, tuple[Host, Role]]] | None = PrivateAttr(None)

    @model_validator(mode="wrap")
    @classmethod
    def _cross_field_rules(cls, data: Any, handler: Callable[[Any], DesiredState]) -> DesiredState:
        """Field errors and cross-field errors in one ValidationError, so that one run
        shows every problem: the cross-field rules also run on data that failed."""
        try:
            state = handler(data)
        except ValidationError as error:
            field_errors: list[Any] = [
                {"type": e["type"], "loc": e["loc"], "input": e["input"], **({"ctx": e["ctx"]} if "ctx" in e else {})} for e in error.errors(include_url=False)
            ]
            raise ValidationError.from_exception_data(cls.__name__, field_errors + line_errors(data)) from None
        conflicts = line_errors(state)
        if conflicts:
            raise ValidationError.from_exception_data(cls.__name__, conflicts)  # type: ignore[arg-type]  # line errors are InitErrorDetails dicts
        return state

    @property
    def is_cluster(self) -> bool:
        """Whether the master is a Serviceguard cluster (else a standalone host)."""
        return isinstance(self.master, ServiceguardMaster)

    @property
    def package(self) -> Package:
        """The csync package of a Serviceguard master (a standalone master has none)."""
        if not isinstance(self.master, ServiceguardMaster):
            raise ValueError("a standalone master has no package")
        return self.master.package

    @property
    def cluster_name(self) -> str:
        if not isinstance(self.master, ServiceguardMaster):
            raise ValueError("a standalone master has no cluster")
        return self.master.cluster

    @property
    def standalone_host(self) -> MasterHost:
        """The host of a standalone master."""
        if not isinstance(self.master, StandaloneMaster):
            raise ValueError("a Serviceguard master has no single host")
        return self.master.host

    @property
    def members(self) -> list[MasterHost]:
        """The cluster members; empty for a standalone master."""
        return list(self.master.members) if isinstance(self.master, ServiceguardMaster) else []

    @property
    def master_hosts(self) -> list[MasterHost]:
        """The hosts that can be the master: the members, or the standalone host."""
        return list(self.master.members) if isinstance(self.master, ServiceguardMaster) else [self.master.host]

    @property
    def server_addresses(self) -> list[str]:
        """The addresses clients pull policy from: the package's (first its `address`), or the
        standalone master's."""
        return self.package.addresses if self.is_cluster else self.standalone_host.addresses

    def own_addresses(self, name: str) -> list[str]:
        """Every declared address of host ``name`` (a client has one)."""
        host = self.host(name)
        return host.addresses if isinstance(host, MasterHost) else [host.address]

    @property
    def all_hosts(self) -> list[Host]:
        """Every declared host: master hosts first, then clients, in declaration order."""
        return self.master_hosts + list(self.clients)

    def host(self, name: str) -> Host:
        """The declared host called ``name``; KeyError if there is none."""
        return self._index()[name][0]

    def role_of(self, name: str) -> Role:
        """The role of declared host ``name``; KeyError if there is none."""
        return self._index()[name][1]

    def _index(self) -> dict[str, tuple[Host, Role]]:
        # model_copy(update=...) copies private attributes: key the cache on the objects it
        # was built from so that a copy with other hosts rebuilds it.
        built_from = (id(self.master), id(self.clients))
        if self._roles is None or self._roles[0] != built_from:
            role: Role = "member" if self.is_cluster else "master"
            index: dict[str, tuple[Host, Role]] = {h.name: (h, role) for h in self.master_hosts}
            index.update({h.name: (h, "client") for h in self.clients})
            self._roles = (built_from, index)
        return self._roles[1]

    def digest(self) -> str:
        """'sha256:' + hex digest of the canonical JSON of everything but `access`, so a
        plan made on a laptop applies in CI where key paths differ. `platform` counts only
        when it is not all defaults: a desired state that does not set it has the digest it
        had before the section existed (a saved plan still applies)."""
        data = self.model_dump(mode="json", exclude={"access", "platform"} if self.platform.is_default else {"access"})
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
