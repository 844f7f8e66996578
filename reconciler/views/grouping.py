"""Alike actions, grouped for a reviewer: a site of 2,000 clients missing the same key is one
group of 2,000 hosts, not 2,000 blocks. The plan itself (JSON) stays per action.

Actions group when they are in the same wave and have the same kind, the same command and
the same reason: the same file, from the same source, for the same cause. Cluster operations
never group: each stands on its own line, first.

What is left, actions on one host that write or remove many files alike (a new member missing
the keys of 2,000 clients), groups by file: the same wave, kind and host, and a command and
reason that differ only in their names, addresses and fingerprints (the words that hold a
digit); the group shows one of them as an example and lists the files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.domain import dsau
from reconciler.plan.artefact import Action
from reconciler.plan.kinds import spec_of

_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True)
class Group:
    actions: tuple[Action, ...]
    by_file: bool = False  # one host, many files (else one change on many hosts)

    @property
    def first(self) -> Action:
        return self.actions[0]

    @property
    def hosts(self) -> list[str]:
        return [self.first.host] if self.by_file else [a.host for a in self.actions]

    @property
    def files(self) -> list[str]:
        """The files a group by file writes or removes (their names, in the action's order)."""
        return [str(a.params.get("file", a.address)) for a in self.actions]

    @property
    def single(self) -> bool:
        return len(self.actions) == 1

    @property
    def address(self) -> str:
        """The group's resource address with its hosts as '*' (they are listed beside it):
        client.*.key[root-10.0.0.3.pub]."""
        if self.single:
            return self.first.address
        if self.by_file:
            return self.first.address.split("[", 1)[0] + "[*]"
        tails = {a.address.split(".", 2)[-1] if a.address.count(".") >= 2 else "" for a in self.actions}
        role = self.first.address.split(".", 1)[0]
        tail = tails.pop() if len(tails) == 1 else "..."
        return f"{role}.*" + (f".{tail}" if tail else "")


# a group by file needs this many files; fewer stay single actions
BY_FILE_MIN = 3


def _shape(text: str) -> tuple[str, ...]:
    """The words of a command or reason, each word that holds a digit (a name, an address, a
    fingerprint) made alike: what stays is the cause (missing, differs, mode) and the kind of peer."""
    return tuple("#" if any(ch.isdigit() for ch in word) else word for word in text.split())


def group_actions(actions: Iterable[Action]) -> list[Group]:
    """Groups in the order of their first action; a cluster operation is a group of its own.
    Actions alike on many hosts group first; the single actions left group by file."""
    groups: dict[tuple, list[Action]] = {}
    for a in actions:
        key: tuple = (a.id,) if spec_of(a.kind).cluster_op else (a.wave, a.kind, a.command, a.reason, a.replaces)
        groups.setdefault(key, []).append(a)
    by_file: dict[tuple, list[Action]] = {}
    for g in groups.values():
        a = g[0]
        if len(g) == 1 and not spec_of(a.kind).cluster_op and "file" in a.params:
            by_file.setdefault((a.wave, a.kind, a.host, a.replaces, _shape(a.command), _shape(a.reason)), []).append(a)
    merged = {id(g[0]): g for g in by_file.values() if len(g) >= BY_FILE_MIN}
    inside = {id(a) for g in merged.values() for a in g}
    out: list[Group] = []
    for g in groups.values():
        first = g[0]
        if id(first) in merged:
            out.append(Group(tuple(merged[id(first)]), by_file=True))
        elif len(g) > 1 or id(first) not in inside:
            out.append(Group(tuple(g)))
    return out


def compress_files(files: Sequence[str]) -> str:
    """Key file names with runs written as ranges: root-{10.0.0.21..10.0.0.50, web3}.pub."""
    prefix, suffix = dsau.PEER_KEY_PREFIX, dsau.PEER_KEY_SUFFIX
    if len(files) > 1 and all(f.startswith(prefix) and f.endswith(suffix) and len(f) > len(prefix) + len(suffix) for f in files):
        return prefix + "{" + compress([f[len(prefix) : -len(suffix)] for f in files]) + "}" + suffix
    return compress(files)


def _natural(name: str) -> tuple[str, int, str]:
    m = _NUMBERED.match(name)
    return (m.group(1), int(m.group(2)), name) if m else (name, -1, name)


def compress(names: Sequence[str], shown: int | None = None) -> str:
    """Host names with runs written as ranges: client1..client200, node2, web03..web05.
    With ``shown``, at most that many items, then '(+N more)'."""
    items: list[str] = []
    run: list[tuple[str, int, str, str]] = []  # (prefix, number, digits, name) of the current run

    def flush() -> None:
        if len(run) >= 3:
            items.append(f"{run[0][3]}..{run[-1][3]}")
        else:
            items.extend(r[3] for r in run)
        run.clear()

    for name in sorted(names, key=_natural):
        m = _NUMBERED.match(name)
        if m is None:
            flush()
            items.append(name)
            continue
        prefix, digits = m.group(1), m.group(2)
        if run:
            last_prefix, last_number, last_digits, _ = run[-1]
            padded_alike = not digits.startswith("0") and not last_digits.startswith("0") or len(digits) == len(last_digits)
            if not (prefix == last_prefix and int(digits) == last_number + 1 and padded_alike):
                flush()
        run.append((prefix, int(digits), digits, name))
    flush()
    if shown is not None and len(items) > shown:
        return ", ".join(items[:shown]) + f" (+{len(items) - shown} more)"
    return ", ".join(items)
