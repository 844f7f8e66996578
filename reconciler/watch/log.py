"""The watch's log: one line per event, text (logfmt) or JSON lines.

    2025-05-01T12:00:00.123Z warning drift-appeared id=copy-key:client.web1.key[...] kind=copy-key host=web1 reason="..."
    {"time": "2025-05-01T12:00:00.123Z", "level": "warning", "event": "drift-appeared", "id": "...", ...}

Each line is written whole and flushed (several threads log: the loop, the reconnecting
threads), and scrubbed of PEM blocks as the journal's lines are: no key material is ever
logged, whatever a host answered.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Literal, TextIO

from reconciler.apply.journal import scrub, utc_now

LogFormat = Literal["text", "json"]


def _logfmt_value(value: Any) -> str:
    if value is None or value == [] or value == ():
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        value = "; ".join(str(v) for v in value)
    text = str(value)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


class EventLog:
    def __init__(self, stream: TextIO | None = None, fmt: LogFormat = "text"):
        self.stream = stream if stream is not None else sys.stdout
        self.fmt = fmt
        self._lock = threading.Lock()

    def line(self, event: str, level: str, fields: dict[str, Any]) -> str:
        if self.fmt == "json":
            return json.dumps({"time": utc_now(), "level": level, "event": event, **fields}, ensure_ascii=False, default=str)
        parts = [utc_now(), level, event] + [f"{k}={_logfmt_value(v)}" for k, v in fields.items()]
        return " ".join(parts)

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        text = scrub(self.line(event, level, fields))
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed pipe: the watch goes on; its metrics still tell
                pass
