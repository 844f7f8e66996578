"""Cross-field rules of the desired state (unique names and addresses, references to
declared hosts): they work on a validated state and on a raw mapping alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,
)
from pydantic_core import PydanticCustomError

from reconciler.desired.values import Loc, is_host_name, is_ipv4, passes, sg_name, show

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
    owner = "the package"
    if is_ipv4(package_address):
        package_name = _get(package, "name")
        if package_name is None:
            from reconciler.desired.model import Package

            package_name = Package.model_fields["name"].default
        owner = f"package {package_name}" if passes(sg_name, package_name) else "the package"
        addresses[package_address] = (("master", "package", "address"), owner)

    def claim(loc: Loc, address: Any, label: str) -> None:
        """Addresses are unique site-wide: main and extra addresses of hosts and package alike."""
        if not is_ipv4(address):
            return
        seen = addresses.setdefault(address, (loc, label))
        if seen[0] != loc:
            which = "the address" if seen[0][-1] == "address" else "an extra address"
            problems.append(Conflict(loc, address, f"{address} is already {which} of {seen[1]} ({{where}})", seen[0]))

    hosts = list(_declared_hosts(state))
    for loc, role, host in hosts:
        name, address = _get(host, "name"), _get(host, "address")
        if is_host_name(name):
            first = names.setdefault(name.lower(), (loc, role, name))
            if first[0] != loc:
                problems.append(
                    Conflict(
                        loc + ("name",),
                        name,
                        f"{name} is already the name of {first[1]} {first[2]} ({{where}}); host names must be unique, ignoring case",
                        first[0] + ("name",),
                    )
                )
        label = f"{role} {name}" if is_host_name(name) else f"{role} {format_loc(loc)}"
        claim(loc + ("address",), address, label)
    # extra addresses after every main address, so a clash names the host whose address it is
    extra_owners: list[tuple[Loc, str, Any]] = [
        (loc, f"{role} {_get(h, 'name')}" if is_host_name(_get(h, "name")) else f"{role} {format_loc(loc)}", h) for loc, role, h in hosts if role != "client"
    ]
    if package is not None:
        extra_owners.append((("master", "package"), owner if is_ipv4(package_address) else "the package", package))
    for loc, label, holder in extra_owners:
        extras = _get(holder, "extra_addresses")
        if isinstance(extras, list):
            for i, extra in enumerate(extras):
                claim(loc + ("extra_addresses", i), extra, label)

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
                problems.append(
                    Conflict(
                        ("access", "hosts", name, "[key]"),
                        name,
                        f"{name} is not a declared host{_suggest(name, declared)}; overrides apply to declared members, masters and clients",
                    )
                )
    return problems


def line_errors(state: Any) -> list[dict[str, Any]]:
    """`semantic_problems` as pydantic line errors of type CONFLICT_ERROR."""
    errors = []
    for problem in semantic_problems(state):
        ctx: dict[str, Any] = {"template": problem.template}
        if problem.related is not None:
            ctx |= {"related": list(problem.related), "where": format_loc(problem.related)}
        error = PydanticCustomError(CONFLICT_ERROR, problem.template, ctx)
        errors.append({"type": error, "loc": problem.loc, "input": problem.value})
    return errors
