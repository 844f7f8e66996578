"""The run journal: what every apply did, as JSON lines, one file per run.

`.csync/runs/<UTC timestamp>-<run id>.jsonl` under the current directory. The first record
is `run-start` (tool version, site, desired-state digest, git commit, CI job, user, plan
digest), then one `action-start` and one `action-end` per action, bookkeeping records
(`lock`, `inventory`, `converge`), and `run-end` with the summary, last. Each line is
flushed as it is written, so a killed run leaves what it did.

No key material is ever written: actions are recorded by address, host and display
command (install-key shows a fingerprint, never the PEM), and every line is scrubbed of
PEM blocks before it is written, whatever produced it (a host's stderr, say).
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUNS_DIR = Path(".csync") / "runs"

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.S)
_PEM_MARK = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]*-----")


def scrub(text: str) -> str:
    """``text`` with every PEM block (or a dangling PEM header) replaced by a marker."""
    return _PEM_MARK.sub("[pem removed]", _PEM_BLOCK.sub("[pem removed]", text))


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Journal:
    """An append-only JSON-lines file for one run; safe to write from several threads."""

    def __init__(self, run_id: str, directory: Path = RUNS_DIR):
        self.run_id = run_id
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{stamp}-{run_id}.jsonl"
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")

    def record(self, type_: str, **data: Any) -> None:
        line = json.dumps({"type": type_, "time": utc_now(), "run_id": self.run_id, **data}, sort_keys=True, default=str)
        line = scrub(line)
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read(path: Path) -> list[dict]:
    """The records of a journal file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
