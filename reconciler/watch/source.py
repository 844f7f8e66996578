"""The desired state the watch compares with, and when to read it again.

Its files are polled: a change of any file's modification time, size or inode (an editor that
writes a new file and renames it over the old one), or of the directories' listings, marks
it changed; SIGHUP asks for a reload whatever the files say. Polling the few files of a
desired state once a second costs nothing and needs no library or kernel interface.
A reload that fails keeps the last valid state: `load` raises and the caller logs why.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.desired.model import DesiredState
from reconciler.pipeline import git_commit_of

Signature = tuple[tuple[str, int, int, int] | tuple[str], ...]


@dataclass(frozen=True)
class Loaded:
    state: DesiredState
    digest: str
    commit: str | None


def _stat(path: Path) -> tuple[str, int, int, int] | tuple[str]:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path),)
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


class DesiredSource:
    def __init__(self, paths: Sequence[Path], load: Callable[[tuple[Path, ...]], DesiredState]):
        self.paths = tuple(paths)
        self._load = load
        self._seen: Signature | None = None

    def signature(self) -> Signature:
        out: list[tuple[str, int, int, int] | tuple[str]] = []
        for given in self.paths:
            out.append(_stat(given))
            if given.is_dir():
                try:
                    names = sorted(os.listdir(given))
                except OSError:
                    continue
                out += [_stat(given / n) for n in names if n.endswith((".yaml", ".yml")) and not n.startswith(".")]
        return tuple(out)

    def changed(self) -> bool:
        return self._seen is not None and self.signature() != self._seen

    def load(self) -> Loaded:
        """Read the desired state now; raises the loader's error (file:line:col diagnostics)."""
        self._seen = self.signature()  # before reading: an edit during the read is seen next time
        state = self._load(self.paths)
        return Loaded(state, state.digest(), git_commit_of(list(self.paths)))
