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
import ipaddress
import json
import os
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reconciler.domain import dsau

Loc = tuple[str | int, ...]
Role = Literal["member", "master", "client"]

# --- Value types ------------------------------------------------------------------------
# Each check explains the first offending character: a Cyrillic 'а' looks like a Latin 'a'
# in a terminal, so the message names it (ascii() escapes it) rather than just refusing.

_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_SG_NAME_CHARS = _LABEL_CHARS | frozenset("_.")
_USER_CHARS = _SG_NAME_CHARS
_PATH_CHARS = _SG_NAME_CHARS | frozenset("+/")
_SG_NAME_MAX = 39
_USER_MAX = 32

LABEL_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
SG_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,37}[A-Za-z0-9])?$"
USER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"
ABS_PATH_PATTERN = r"^/([A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*)?$"


def show(value: Any) -> str:
    """A value as a message quotes it: strings with non-ASCII or control characters escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    text = ascii(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 70 else text[:66] + "...'"


def _describe_char(char: str) -> str:
    if char.isascii() and char.isprintable():
        return repr(char)
    return f"{ascii(char)} ({unicodedata.name(char, 'a control character')})"


def _first_bad_char(value: str, allowed: frozenset[str]) -> str | None:
    return next((c for c in value if c not in allowed), None)


def _host_name(value: str) -> str:
    what = f"{show(value)} is not a valid unqualified host name"
    if not value:
        raise ValueError("the host name is empty")
    bad = _first_bad_char(value, _LABEL_CHARS)
    if bad == ".":
        raise ValueError(f"{what}: give the unqualified name, without the domain ('.' is not allowed)")
    if bad is not None:
        raise ValueError(f"{what}: {_describe_char(bad)} is not allowed; use letters, digits and '-' (RFC 1123)")
    if len(value) > 63:
        raise ValueError(f"{what}: it is {len(value)} characters long; the limit is 63 (RFC 1123)")
    if value.startswith("-") or value.endswith("-"):
        raise ValueError(f"{what}: it must not start or end with '-' (RFC 1123)")
    return value


def _sg_name(value: str) -> str:
    what = f"{show(value)} is not a valid Serviceguard name"
    if not value:
        raise ValueError("the name is empty")
    bad = _first_bad_char(value, _SG_NAME_CHARS)
    if bad is not None:
        raise ValueError(f"{what}: {_describe_char(bad)} is not allowed; use letters, digits, '_', '.' and '-'")
    if len(value) > _SG_NAME_MAX:
        raise ValueError(f"{what}: it is {len(value)} characters long; the limit is {_SG_NAME_MAX}")
    if not value[0].isalnum():
        raise ValueError(f"{what}: it must start with a letter or a digit")
    if not value[-1].isalnum():
        # Serviceguard's rule; csync's commands refuse such a name too (commands._NAME)
        raise ValueError(f"{what}: it must end with a letter or a digit")
    return value


def _user_name(value: str) -> str:
    what = f"{show(value)} is not a valid user name"
    if not value:
        raise ValueError("the user name is empty")
    bad = _first_bad_char(value, _USER_CHARS)
    if bad is not None:
        raise ValueError(f"{what}: {_describe_char(bad)} is not allowed; use letters, digits, '_', '.' and '-'")
    if len(value) > _USER_MAX:
        raise ValueError(f"{what}: it is {len(value)} characters long; the limit is {_USER_MAX}")
    if not (value[0].isalpha() or value[0] == "_"):
        raise ValueError(f"{what}: it must start with a letter or '_'")
    return value


def _ipv4(value: str) -> str:
    octets = value.split(".")
    if len(octets) == 4 and all(o.isascii() and o.isdigit() for o in octets) and any(len(o) > 1 and o[0] == "0" for o in octets):
        # Some tools read 010 as octal (8): refuse rather than guess which the admin meant.
        canonical = ".".join(str(int(o)) for o in octets)
        raise ValueError(f"{show(value)} has a leading zero, which some tools read as octal; write {canonical}")
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{show(value)} is not an IPv4 address") from None
    if address.is_unspecified:
        raise ValueError(f"{value} means 'any address'; give the host's own address")
    if address == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"{value} is the broadcast address; give the host's own address")
    if address.is_multicast:
        raise ValueError(f"{value} is a multicast address; give the host's own address")
    return str(address)


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{show(value)} is not an absolute path; it must start with '/'")
    bad = _first_bad_char(value, _PATH_CHARS)
    if bad is not None:
        raise ValueError(f"{show(value)}: {_describe_char(bad)} is not allowed in a path; use letters, digits, '_', '.', '+', '-' and '/'")
    if "//" in value:
        raise ValueError(f"{show(value)} contains '//'; separate directories with a single '/'")
    if value != "/" and value.endswith("/"):
        raise ValueError(f"{show(value)} ends with '/'; write {show(value.rstrip('/'))}")
    parts = value.split("/")
    if ".." in parts or "." in parts:
        raise ValueError(f"{show(value)} contains a '.' or '..' component; write the directory it means")
    return value


# The package filesystem is mounted and unmounted as the package moves: over these trees it
# would hide the system's or DSAU's own files on every member.
_NOT_A_MOUNT_POINT = ("/etc", "/var/opt/dsau", "/opt/dsau")


def _mount_point(value: str) -> str:
    if value == "/":
        raise ValueError("'/' cannot be the package's mount point; use a directory of its own, such as /csync")
    for tree in _NOT_A_MOUNT_POINT:
        if value == tree or value.startswith(tree + "/"):
            raise ValueError(
                f"{show(value)} is in {tree}, which belongs to the system or DSAU; "
                "mount the package filesystem on a directory of its own, such as /csync"
            )
    return value


def _local_path(value: str) -> str:
    if not value:
        raise ValueError("the path is empty")
    bad = next((c for c in value if not c.isprintable()), None)
    if bad is not None:
        raise ValueError(f"{show(value)}: {_describe_char(bad)} is not allowed in a file name")
    if value.endswith("/"):
        raise ValueError(f"{show(value)} ends with '/'; name the file")
    return value


def _exact_int(value: Any) -> Any:
    # Literal[1] alone accepts true and 1.0 (they compare equal to 1).
    if type(value) is not int:
        raise ValueError(f"{show(value)} is not a format version; write 1")
    return value


def _string(pattern: str | None = None, **schema: Any) -> WithJsonSchema:
    extra = {"pattern": pattern} if pattern else {}
    return WithJsonSchema({"type": "string", **extra, **schema})


HostName = Annotated[str, AfterValidator(_host_name), _string(LABEL_PATTERN, maxLength=63)]
SgName = Annotated[str, AfterValidator(_sg_name), _string(SG_NAME_PATTERN, maxLength=_SG_NAME_MAX)]
UserName = Annotated[str, AfterValidator(_user_name), _string(USER_PATTERN, maxLength=_USER_MAX)]
IPv4 = Annotated[str, AfterValidator(_ipv4), _string(format="ipv4")]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path), _string(ABS_PATH_PATTERN)]
MountPoint = Annotated[str, AfterValidator(_absolute_path), AfterValidator(_mount_point), _string(ABS_PATH_PATTERN)]
LocalPath = Annotated[str, AfterValidator(_local_path), _string(minLength=1)]
Seconds = Annotated[float, Field(allow_inf_nan=False)]


def is_host_name(value: Any) -> bool:
    """Whether ``value`` is a valid unqualified host name."""
    return _passes(_host_name, value)


def is_ipv4(value: Any) -> bool:
    """Whether ``value`` is an address `Host.address` accepts, in canonical form."""
    return _passes(_ipv4, value)


def _passes(check: Callable[[str], str], value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return check(value) == value
    except ValueError:
        return False


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
    address: IPv4 = Field(
        description="IPv4 address (dotted quad) csync connects to, and cfengine knows the host by: its key file is root-<address>.pub."
    )


class Package(_Model):
    """The csync Serviceguard package: the highly available cfengine master."""

    name: SgName = Field("csync", description="Serviceguard package name, as cmviewcl prints it.")
    address: IPv4 = Field(
        description="The package's relocatable IP address; clients pull policy from it, so they hold root-<address>.pub (the cluster key)."
    )
    mount: MountPoint = Field(
        "/csync",
        description="Mount point of the package's filesystem, which holds dsau/cfengine_master; absolute, normalised, "
        "not '/' and not inside /etc, /var/opt/dsau or /opt/dsau.",
    )
    node: HostName | None = Field(
        None, description="Member csync starts the package on when it is down (cmrunpkg -n); a declared member. Default: Serviceguard's choice."
    )


class ServiceguardMaster(_Model):
    """A Serviceguard cluster configured as a highly available master server."""

    mode: Literal["serviceguard"] = Field(description="The master is the csync package of a Serviceguard cluster.")
    cluster: SgName = Field(description="Serviceguard cluster name, as cmviewcl prints it.")
    package: Package = Field(description="The csync package.")
    members: list[Host] = Field(
        min_length=1, description="Cluster members (Serviceguard nodes); each one is an adoptive node of the package."
    )


class StandaloneMaster(_Model):
    """A single host as the cfengine master."""

    mode: Literal["standalone"] = Field(description="The master is one host.")
    host: Host = Field(description="The master host.")


Master = Annotated[Union[ServiceguardMaster, StandaloneMaster], Field(discriminator="mode")]


class KeyPolicy(_Model):
    """How cfengine keys are distributed and kept."""

    distribution: Literal["copy", "regenerate"] = Field(
        "copy",
        description="copy: install on each host the root-<IP>.pub files it lacks, checked by content; "
        "regenerate: run the wizard's key regeneration for all systems (needs every client reachable).",
    )
    cfrun: Literal["all-members", "none"] = Field(
        "all-members",
        description="all-members: every client holds every member's key and every member holds every client's, so cfrun "
        "works from any member after a failover; none: clients hold only the package address's key (cfagent only).",
    )
    prune: bool = Field(
        False, description="Remove root-<IP>.pub files of members and clients no longer declared (only those csync recorded as its own)."
    )


class HostAccess(_Model):
    """Connection settings for one host; each one set here overrides `access`."""

    user: UserName | None = Field(None, description="Remote user for this host.")
    port: int | None = Field(None, ge=1, le=65535, description="SSH port of this host.")
    identity_file: LocalPath | None = Field(
        None, description="Private key for this host; a relative path is relative to the YAML file that declares it, '~' is the home directory."
    )
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

    def expanded(self) -> ResolvedAccess:
        """The same settings with '~' in the paths expanded to the home directory."""
        return replace(
            self, identity_file=os.path.expanduser(self.identity_file), known_hosts=os.path.expanduser(self.known_hosts)
        )


class Access(_Model):
    """How csync reaches the hosts over SSH; not part of the desired state's digest."""

    # Outside the digest so that a plan made on a laptop applies in CI, where key paths differ.

    user: UserName = Field("root", description="Remote user; DSAU's key store belongs to root.")
    identity_file: LocalPath = Field(
        "~/.ssh/id_ed25519",
        description="Private key csync authenticates with; a relative path is relative to the YAML file that declares it, '~' is the home directory.",
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
    hosts: dict[HostName, HostAccess] = Field(
        default_factory=dict, description="Per-host overrides, keyed by the name of a declared member, master or client."
    )

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
        )


class Paths(_Model):
    """DSAU paths on the hosts; the defaults are HP's documented ones."""

    cfengine_dir: AbsolutePath = Field(
        dsau.CFENGINE_DIR, description="cfengine work directory on every managed system (holds inputs/ and ppkeys/)."
    )
    standalone_master_inputs: AbsolutePath = Field(
        dsau.STANDALONE_MASTER_INPUTS, description="Master policy directory of a standalone master."
    )
    package_files_dir: AbsolutePath = Field(dsau.PACKAGE_FILES_DIR, description="csync package files on each member.")
    dispatcher: AbsolutePath = Field(dsau.DISPATCHER, description="csync_dispatcher, run on the package's node after a member is added.")
    wizard: AbsolutePath = Field(dsau.WIZARD, description="csync_wizard, run to regenerate keys.")


class DesiredState(_Model):
    """A DSAU synchronization site as it should be."""

    version: Annotated[Literal[1], BeforeValidator(_exact_int)] = Field(description="Format version of the desired state: 1.")
    site: HostName = Field(description="Name of the site (RFC 1123 label); names its lock and appears in plans.")
    master: Master = Field(description="The cfengine master: a Serviceguard cluster (mode: serviceguard) or one host (mode: standalone).")
    clients: list[Host] = Field(default_factory=list, description="Managed clients: systems outside the cluster that pull policy from the master.")
    keys: KeyPolicy = Field(default_factory=KeyPolicy, description="Key distribution policy.")
    access: Access = Field(default_factory=Access, description="SSH access to the hosts (not part of the digest).")
    paths: Paths = Field(default_factory=Paths, description="DSAU paths on the hosts, for a site that differs from HP's defaults.")

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
            field_errors = [
                {"type": e["type"], "loc": e["loc"], "input": e["input"], **({"ctx": e["ctx"]} if "ctx" in e else {})}
                for e in error.errors(include_url=False)
            ]
            raise ValidationError.from_exception_data(cls.__name__, field_errors + _line_errors(data)) from None
        conflicts = _line_errors(state)
        if conflicts:
            raise ValidationError.from_exception_data(cls.__name__, conflicts)
        return state

    @property
    def is_cluster(self) -> bool:
        """Whether the master is a Serviceguard cluster (else a standalone host)."""
        return isinstance(self.master, ServiceguardMaster)

    @property
    def members(self) -> list[Host]:
        """The cluster members; empty for a standalone master."""
        return list(self.master.members) if isinstance(self.master, ServiceguardMaster) else []

    @property
    def master_hosts(self) -> list[Host]:
        """The hosts that can be the master: the members, or the standalone host."""
        return list(self.master.members) if isinstance(self.master, ServiceguardMaster) else [self.master.host]

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
            index = {h.name: (h, role) for h in self.master_hosts}
            index.update({h.name: (h, "client") for h in self.clients})
            self._roles = (built_from, index)
        return self._roles[1]

    def digest(self) -> str:
        """'sha256:' + hex digest of the canonical JSON of everything but `access`, so a
        plan made on a laptop applies in CI where key paths differ."""
        data = self.model_dump(mode="json", exclude={"access"})
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# --- Cross-field rules ---------------------------------------------------------------------

CONFLICT_ERROR = "desired_state_conflict"
"""pydantic error type of a `Conflict`; its ctx holds `template`, `related` and `where`."""


def format_loc(loc: Loc) -> str:
    """A field path as users write it: `clients[3].address`, `access.hosts.web1`."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, str) and not (part.isascii() and part.isprintable() and part.strip() == part and part):
            part = show(part)  # a key the user cannot see (a newline, a look-alike): quoted, escaped
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class Conflict:
    """A cross-field problem at `loc`. When it conflicts with an earlier declaration, that
    one is `related`, and `template`'s `{where}` stands for its location: a field path
    here, a file:line:column in the loader's diagnostics."""

    loc: Loc
    value: Any
    template: str
    related: Loc | None = None

    def message(self, where: Callable[[Loc], str] = format_loc) -> str:
        """The message, with the related declaration's location written by ``where``."""
        return self.template.replace("{where}", where(self.related)) if self.related is not None else self.template


def _get(node: Any, name: str) -> Any:
    """A field of a validated model or of raw data, None when absent or not a mapping."""
    if isinstance(node, BaseModel):
        return getattr(node, name, None)
    return node.get(name) if isinstance(node, dict) else None


def _declared_hosts(state: Any) -> Iterator[tuple[Loc, str, Any]]:
    """(field path, role word, host) of every host entry, in document order."""
    master = _get(state, "master")
    mode = _get(master, "mode")
    if mode == "serviceguard" and isinstance(members := _get(master, "members"), list):
        yield from ((("master", "members", i), "member", h) for i, h in enumerate(members))
    elif mode == "standalone":
        yield ("master", "host"), "master", _get(master, "host")
    if isinstance(clients := _get(state, "clients"), list):
        yield from ((("clients", i), "client", h) for i, h in enumerate(clients))


def _suggest(name: str, known: dict[str, str]) -> str:
    """'; did you mean X?' for a declared name that differs only in case."""
    match = known.get(name.lower())
    return f"; did you mean {match}?" if match else ""


def semantic_problems(state: Any) -> list[Conflict]:
    """Every cross-field problem of ``state``, a `DesiredState` or the raw mapping that
    failed validation; empty when the state is sound.

    On raw data a rule skips values that are themselves invalid (those already have their
    own error), and a reference check runs only when every host it may refer to has a
    valid name, so a broken file does not produce false "not declared" errors.
    """
    problems: list[Conflict] = []
    names: dict[str, tuple[Loc, str, str]] = {}  # lower-cased name -> (loc, role, name)
    addresses: dict[str, tuple[Loc, str]] = {}  # address -> (loc of address, "role name")
    master = _get(state, "master")
    package = _get(master, "package") if _get(master, "mode") == "serviceguard" else None
    package_address = _get(package, "address")
    if is_ipv4(package_address):
        package_name = _get(package, "name")
        if package_name is None:
            package_name = Package.model_fields["name"].default
        owner = f"package {package_name}" if _passes(_sg_name, package_name) else "the package"
        addresses[package_address] = (("master", "package", "address"), owner)

    hosts = list(_declared_hosts(state))
    for loc, role, host in hosts:
        name, address = _get(host, "name"), _get(host, "address")
        if is_host_name(name):
            first = names.setdefault(name.lower(), (loc, role, name))
            if first[0] != loc:
                problems.append(Conflict(
                    loc + ("name",),
                    name,
                    f"{name} is already the name of {first[1]} {first[2]} ({{where}}); host names must be unique, ignoring case",
                    first[0] + ("name",),
                ))
        if is_ipv4(address):
            label = f"{role} {name}" if is_host_name(name) else f"{role} {format_loc(loc)}"
            seen = addresses.setdefault(address, (loc + ("address",), label))
            if seen[0] != loc + ("address",):
                problems.append(Conflict(loc + ("address",), address, f"{address} is already the address of {seen[1]} ({{where}})", seen[0]))

    members = [_get(h, "name") for _, role, h in hosts if role == "member"]
    if package is not None and members and all(map(is_host_name, members)) and is_host_name(node := _get(package, "node")):
        if node not in members:
            listed = ", ".join(members[:10]) + (", ..." if len(members) > 10 else "")
            hint = _suggest(node, {m.lower(): m for m in members}) or f"; the members are: {listed}"
            problems.append(Conflict(("master", "package", "node"), node, f"{node} is not a member of the cluster{hint}"))

    overrides = _get(_get(state, "access"), "hosts")
    if hosts and all(is_host_name(_get(h, "name")) for _, _, h in hosts) and isinstance(overrides, dict):
        declared = {name: first_name for name, (_, _, first_name) in names.items()}
        for name in overrides:
            if is_host_name(name) and declared.get(name.lower()) != name:
                problems.append(Conflict(
                    ("access", "hosts", name, "[key]"),
                    name,
                    f"{name} is not a declared host{_suggest(name, declared)}; overrides apply to declared members, masters and clients",
                ))
    return problems


def _line_errors(state: Any) -> list[dict[str, Any]]:
    """`semantic_problems` as pydantic line errors of type CONFLICT_ERROR."""
    errors = []
    for problem in semantic_problems(state):
        ctx: dict[str, Any] = {"template": problem.template}
        if problem.related is not None:
            ctx |= {"related": list(problem.related), "where": format_loc(problem.related)}
        error = PydanticCustomError(CONFLICT_ERROR, problem.template, ctx)
        errors.append({"type": error, "loc": problem.loc, "input": problem.value})
    return errors
