"""The value types of the desired state: every name, address and path that can reach a
remote command is checked here, strictly (see desired/model.py)."""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    WithJsonSchema,
)

Loc = tuple[str | int, ...]


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


def sg_name(value: str) -> str:
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


# A search path: directories joined by ':', as PATH writes them; each one an absolute path.
SEARCH_PATH_MAX_DIRS = 16
SEARCH_PATH_MAX = 1024
SEARCH_PATH_PATTERN = r"^/([A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*)?(:/([A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*)?)*$"


def _search_path(value: str) -> str:
    if not value:
        raise ValueError("the search path is empty; give one or more absolute directories joined by ':'")
    if len(value) > SEARCH_PATH_MAX:
        raise ValueError(f"the search path is {len(value)} characters long; the limit is {SEARCH_PATH_MAX}")
    dirs = value.split(":")
    if len(dirs) > SEARCH_PATH_MAX_DIRS:
        raise ValueError(f"the search path lists {len(dirs)} directories; the limit is {SEARCH_PATH_MAX_DIRS}")
    seen: set[str] = set()
    for i, d in enumerate(dirs, 1):
        if not d:
            raise ValueError(f"{show(value)} has an empty directory (directory {i}): an empty entry means the current directory; remove it")
        try:
            _absolute_path(d)
        except ValueError as e:
            raise ValueError(f"directory {i} of the search path: {e}") from None
        if d in seen:
            raise ValueError(f"{show(value)} lists {d} twice")
        seen.add(d)
    return value


def _mount_point(value: str) -> str:
    if value == "/":
        raise ValueError("'/' cannot be the package's mount point; use a directory of its own, such as /csync")
    for tree in _NOT_A_MOUNT_POINT:
        if value == tree or value.startswith(tree + "/"):
            raise ValueError(
                f"{show(value)} is in {tree}, which belongs to the system or DSAU; mount the package filesystem on a directory of its own, such as /csync"
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


def exact_int(value: Any) -> Any:
    # Literal[1] alone accepts true and 1.0 (they compare equal to 1).
    if type(value) is not int:
        raise ValueError(f"{show(value)} is not a format version; write 1")
    return value


def _string(pattern: str | None = None, **schema: Any) -> WithJsonSchema:
    extra = {"pattern": pattern} if pattern else {}
    return WithJsonSchema({"type": "string", **extra, **schema})


HostName = Annotated[str, AfterValidator(_host_name), _string(LABEL_PATTERN, maxLength=63)]
SgName = Annotated[str, AfterValidator(sg_name), _string(SG_NAME_PATTERN, maxLength=_SG_NAME_MAX)]
UserName = Annotated[str, AfterValidator(_user_name), _string(USER_PATTERN, maxLength=_USER_MAX)]
IPv4 = Annotated[str, AfterValidator(_ipv4), _string(format="ipv4")]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path), _string(ABS_PATH_PATTERN)]
MountPoint = Annotated[str, AfterValidator(_absolute_path), AfterValidator(_mount_point), _string(ABS_PATH_PATTERN)]
LocalPath = Annotated[str, AfterValidator(_local_path), _string(minLength=1)]
SearchPath = Annotated[str, AfterValidator(_search_path), _string(SEARCH_PATH_PATTERN, maxLength=SEARCH_PATH_MAX)]
Seconds = Annotated[float, Field(allow_inf_nan=False)]


def is_host_name(value: Any) -> bool:
    """Whether ``value`` is a valid unqualified host name."""
    return passes(_host_name, value)


def is_ipv4(value: Any) -> bool:
    """Whether ``value`` is an address `Host.address` accepts, in canonical form."""
    return passes(_ipv4, value)


def passes(check: Callable[[str], str], value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return check(value) == value
    except ValueError:
        return False
