"""The site's inventory: csync's record, kept on the master, of the key files it owns on each
host and of the key generation it last rotated to. Pure: the probe reads the file's lines,
`driver/sitestate.inventory_update` writes it.

Format 2, one entry a line (the order does not matter; csync writes them sorted):

    # comment
    generation N          the key generation csync rotated the site to (none: 0)
    HOST root-PEER.pub    csync owns this key file on declared host HOST

A key file is csync's when csync wrote it or it belonged to a declared address (or host name)
of its host when csync recorded it; `keys.prune` removes only such files, once they are no
longer declared for their host. Format 1 (csync before issue 16) was one address a line,
site-wide; such lines prove no file's ownership and are dropped at the next write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.domain import dsau
from reconciler.domain.keys import KEY_FILE_NAME

_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_GENERATION = re.compile(r"^generation (\d{1,9})$")
_LEGACY = re.compile(r"^(\d{1,3}\.){3}\d{1,3}$")
HEADER = "# csync inventory, format 2: the key files csync owns (HOST FILE) and the key generation"


@dataclass(frozen=True)
class KeyInventory:
    """The inventory as read: host name -> the key files csync owns there; the generation."""

    files: dict[str, frozenset[str]] = field(default_factory=dict)
    generation: int = 0
    legacy: int = 0  # format 1 lines (addresses), ignored

    def owns(self, host: str, file: str) -> bool:
        return file in self.files.get(host, ())

    def entries(self) -> set[tuple[str, str]]:
        return {(h, f) for h, files in self.files.items() for f in files}

    @property
    def count(self) -> int:
        return sum(len(f) for f in self.files.values())


def is_entry(host: str, file: str) -> bool:
    """Whether (host, file) can be an inventory entry: a host name, and a peer key file."""
    return bool(_HOST.match(host)) and file.startswith(dsau.PEER_KEY_PREFIX) and bool(KEY_FILE_NAME.fullmatch(file))


def parse_inventory(lines: Iterable[str] | None) -> KeyInventory | None:
    """The inventory from its lines (as the probe reports them); None when there is no file.
    A line that is not an entry is ignored: the file is csync's, but the master's root may
    edit it, and csync never acts on a line it cannot place."""
    if lines is None:
        return None
    files: dict[str, set[str]] = {}
    generation = 0
    legacy = 0
    for line in lines:
        m = _GENERATION.match(line)
        if m:
            generation = max(generation, int(m.group(1)))
            continue
        if _LEGACY.match(line):
            legacy += 1
            continue
        host, _, file = line.partition(" ")
        if is_entry(host, file):
            files.setdefault(host, set()).add(file)
    return KeyInventory({h: frozenset(f) for h, f in files.items()}, generation, legacy)
