"""Warm SSH sessions for `csync watch`: one per host, kept open between cycles, reconnected
with backoff when they die, without holding up the other hosts.

`WarmPool` is the transport's `Pool` with one change of behaviour in `connect`:
- a live session is reused (no handshake: that is what makes a warm cycle cheap);
- a dead one (the host restarted, the connection dropped) is closed and opened again at
  once; a host whose last attempts failed is not tried again before its backoff is over,
  and is reported unreachable with the last reason and when the next attempt is due;
- every (re)connection runs on a thread of its own: the probe of the cycle waits for it a
  short grace (``reconnect_grace``), so a host that answers at once is probed in the same
  cycle, and a hung one (its handshake waits ``connect_timeout``) is reported as
  reconnecting while the cycle goes on; the next cycle finds its session ready. A host
  never connected yet (the first cycle) is waited for in full, as `csync plan` does.

A session whose command failed on the way (the host hung: a channel did not open in time)
is dropped by `lost`, so the next cycle does not wait on it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from reconciler.desired.model import Host
from reconciler.driver.transport import Pool, Session, TransportError
from reconciler.watch.backoff import Backoff

# How a probe that did not get an answer says so (TransportError.kind): the session is
# suspect and is dropped. Others (the probe program missing, an unusable answer) came over
# a working session.
SESSION_FAILURES = frozenset({"unreachable", "timeout", "output", "error"})


def _forget_closed_channels(session: Session) -> None:
    """paramiko's transport remembers the id of every channel it opened (channels_seen), to
    ignore messages for dead channels, and never forgets one: a session kept open for days
    would grow by an entry per command (about 40,000 in 200 cycles of 200 hosts, 4 MiB).
    An id no longer among the transport's live channels was closed by the server, whose
    CLOSE is the last message it sends on that channel, so nothing more can come for it.
    Called before each cycle's command, when no command of this host's runs."""
    transport = session.connection.client.get_transport()
    seen = getattr(transport, "channels_seen", None)
    live = getattr(transport, "_channels", None)
    if not isinstance(seen, dict) or live is None or not hasattr(live, "get"):
        return  # another paramiko: nothing to prune, nothing broken
    for chanid in [c for c in list(seen) if live.get(c) is None]:
        seen.pop(chanid, None)


@dataclass
class _Link:
    backoff: Backoff
    pending: Future | None = None
    last_error: TransportError | None = None
    connected_before: bool = False


@dataclass
class WarmPool(Pool):
    # each host's probes go to its session's probe server: a request line per cycle, no new
    # channel, shell or script (driver/transport.py, Session.serve_script)
    serve_probes: bool = True
    reconnect_grace: float = 1.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    # called (from a connecting thread) when a host that had a session gets one again
    on_reconnect: Callable[[Host], None] | None = None
    _links: dict[str, _Link] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._links_lock = threading.Lock()
        self._closed = False
        self._connector = ThreadPoolExecutor(max_workers=max(1, self.access.parallelism), thread_name_prefix="csync-connect")
        if self.workers is None:  # the probes' threads, kept from cycle to cycle
            self.workers = ThreadPoolExecutor(max_workers=max(1, self.access.parallelism), thread_name_prefix="csync-ssh")

    def connect(self, host: Host) -> Session:
        with self._links_lock:
            if self._closed:
                raise TransportError("the watch is stopping", kind="unreachable")
            link = self._links.get(host.name)
            if link is None:
                link = self._links[host.name] = _Link(Backoff(self.backoff_base, self.backoff_cap))
            session = self.sessions.get(host.name)
            if session is not None and session.alive:
                _forget_closed_channels(session)
                return session
            if session is not None:  # died since the last cycle: reconnect now
                self.sessions.pop(host.name, None)
                session.close()
            if link.pending is None:
                if not link.backoff.due():
                    last = link.last_error or TransportError("not connected", kind="unreachable")
                    raise TransportError(f"{last.reason} (next attempt in {link.backoff.remaining():.0f}s)", kind=last.kind)
                link.pending = self._connector.submit(self._open, host, link)
            pending = link.pending
            first = not link.connected_before and link.backoff.failures == 0
        try:
            return pending.result(timeout=None if first else self.reconnect_grace)
        except FutureTimeout:
            raise TransportError("reconnecting: the SSH handshake has not finished", kind="timeout") from None

    def _open(self, host: Host, link: _Link) -> Session:
        try:
            session = Pool.connect(self, host)
        except TransportError as e:
            with self._links_lock:
                link.last_error = e
                link.backoff.failed()
                link.pending = None
            raise
        except BaseException:
            with self._links_lock:
                link.pending = None
            raise
        with self._links_lock:
            link.pending = None
            link.last_error = None
            link.backoff.succeeded()
            reconnected, link.connected_before = link.connected_before, True
            if self._closed:  # stopped while this handshake ran
                self.sessions.pop(host.name, None)
                session.close()
                raise TransportError("the watch is stopping", kind="unreachable")
        if reconnected and self.on_reconnect is not None:
            self.on_reconnect(host)
        return session

    def lost(self, name: str, reason: str, kind: str) -> None:
        """A command on ``name``'s session got no answer: drop the session and back off."""
        if kind not in SESSION_FAILURES:
            return
        with self._links_lock:
            session = self.sessions.pop(name, None)
            link = self._links.get(name)
            if session is None or link is None:
                return  # it failed while connecting: already counted
            link.last_error = TransportError(reason, kind=kind)
            link.backoff.failed()
        session.close()

    def forget(self, names: Iterable[str]) -> None:
        """Close the sessions of hosts the watch no longer looks at (a reload removed them)."""
        closing = []
        with self._links_lock:
            for name in names:
                self._links.pop(name, None)
                if (s := self.sessions.pop(name, None)) is not None:
                    closing.append(s)
        for s in closing:
            s.close()

    def close(self) -> None:
        with self._links_lock:
            self._closed = True
            sessions = list(self.sessions.values())
        for s in sessions:
            s.close()
        self._connector.shutdown(wait=False, cancel_futures=True)
        if self.workers is not None:
            self.workers.shutdown(wait=False, cancel_futures=True)
