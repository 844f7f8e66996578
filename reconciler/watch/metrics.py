"""The watch's Prometheus metrics (prometheus_client) and the HTTP server for /metrics and
/healthz.

Every metric is on a registry of the watch's own (not prometheus_client's global one), with
the process collector for the process's memory and CPU. Labels whose values depend on the
desired state (kinds are csync's, hosts are the site's) are set after the first cycle:
before it, nothing is known, and a scrape must not read "no drift". A host a reload removed
loses its series. The README lists every metric (section "csync watch").
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector, ProcessCollector, make_wsgi_app

from reconciler.errors import CsyncError
from reconciler.observe.facts import HostFacts
from reconciler.plan.artefact import Plan
from reconciler.plan.kinds import KINDS
from reconciler.watch.readiness import Readiness
from reconciler.watch.snapshot import host_up

DEFAULT_ADDRESS = "127.0.0.1:9108"
HEAL_RESULTS = ("succeeded", "failed", "refused", "locked", "error")
RELOAD_RESULTS = ("ok", "invalid")
# a probe is one round trip on a warm session (a few ms) or a handshake and one (tens of ms),
# up to the command timeout of a slow host
PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
CYCLE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class WatchMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.failover_ready = Gauge(
            "csync_failover_ready", "1 when the site is failover-ready now, 0 when not, NaN when unknown (a host did not answer)", registry=r
        )
        self.failover_ready.set(float("nan"))
        self.plan_actions = Gauge("csync_plan_actions", "Actions the plan of the last cycle holds, by kind (0: no drift of that kind)", ["kind"], registry=r)
        self.blocked = Gauge("csync_blocked_findings", "Blocked findings of the last cycle's plan: work csync would do and cannot", registry=r)
        self.unknown_hosts = Gauge("csync_unknown_hosts", "Declared hosts whose facts the last cycle could not read", registry=r)
        self.host_up = Gauge("csync_host_up", "1 when the host answered the last cycle's probe over SSH, else 0", ["host", "role"], registry=r)
        self.probe_seconds = Histogram("csync_probe_duration_seconds", "One host's probe, connection included", buckets=PROBE_BUCKETS, registry=r)
        self.cycle_seconds = Histogram("csync_cycle_duration_seconds", "One cycle: probe every host, plan, compare", buckets=CYCLE_BUCKETS, registry=r)
        self.last_cycle = Gauge("csync_last_cycle_timestamp_seconds", "When the last cycle finished (Unix time)", registry=r)
        self.cycles = Counter("csync_cycles", "Cycles finished", registry=r)
        self.cycle_errors = Counter("csync_cycle_errors", "Cycles ended by an unexpected error (logged as cycle-error; a bug in csync)", registry=r)
        self.heal_runs = Counter("csync_heal_runs", "Heal runs (--heal), by result", ["result"], registry=r)
        for result in HEAL_RESULTS:
            self.heal_runs.labels(result)
        self.reloads = Counter(
            "csync_desired_state_reloads", "Desired-state reloads, by result (invalid: the last valid state is kept)", ["result"], registry=r
        )
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)
        self.desired_state = Info("csync_desired_state", "The desired state the watch compares with: its digest and git commit", registry=r)
        self.reconnects = Counter("csync_ssh_reconnects", "SSH sessions opened again after they died or failed", ["host"], registry=r)
        self._hosts: set[tuple[str, str]] = set()

    def desired(self, digest: str, commit: str | None) -> None:
        self.desired_state.info({"digest": digest, "commit": commit or ""})

    def cycle(self, plan: Plan, facts: Mapping[str, HostFacts], readiness: Readiness, seconds: float, finished_at: float) -> None:
        by_kind: dict[str, int] = {}
        for a in plan.actions:
            by_kind[a.kind] = by_kind.get(a.kind, 0) + 1
        for kind in KINDS:
            self.plan_actions.labels(kind).set(by_kind.get(kind, 0))
        self.blocked.set(len(plan.blocked))
        self.unknown_hosts.set(sum(1 for f in facts.values() if not f.reachable))
        self.failover_ready.set(readiness.value)
        self._set_hosts((f.name, f.role, host_up(f)) for f in facts.values())
        for f in facts.values():
            if f.probe_seconds is not None:
                self.probe_seconds.observe(f.probe_seconds)
        self.cycle_seconds.observe(seconds)
        self.last_cycle.set(finished_at)
        self.cycles.inc()

    def _set_hosts(self, hosts: Iterable[tuple[str, str, bool]]) -> None:
        seen = set()
        for name, role, up in hosts:
            seen.add((name, role))
            self.host_up.labels(name, role).set(1 if up else 0)
        for gone in self._hosts - seen:
            self.host_up.remove(*gone)
        self._hosts = seen

    def forget_hosts(self, names: Iterable[str]) -> None:
        """A reload removed these hosts: their series go (connection counters included)."""
        drop = set(names)
        for key in [k for k in self._hosts if k[0] in drop]:
            self.host_up.remove(*key)
            self._hosts.discard(key)
        for name in drop:
            try:
                self.reconnects.remove(name)
            except KeyError:
                pass


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT``) -> (host, port); raises ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. {DEFAULT_ADDRESS}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # the watch's log is for the site, not for scrapes
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


Health = Callable[[], tuple[bool, str]]


class MetricsServer:
    """/metrics (the registry, in the format the scraper asks for) and /healthz (200 while
    cycles finish, 503 once they stall); anything else is 404."""

    def __init__(self, metrics: WatchMetrics, address: str, health: Health):
        self.metrics_app = make_wsgi_app(metrics.registry)
        self.health = health
        host, port = parse_address(address)
        try:
            self.server = make_server(host, port, self._app, server_class=_Server6 if ":" in host else _Server, handler_class=_QuietHandler)
        except OSError as e:
            raise CsyncError(f"cannot serve metrics on {address}: {e.strerror or e}") from None
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="csync-metrics", daemon=True)

    @property
    def address(self) -> str:
        host, port = str(self.server.server_address[0]), self.server.server_address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self.metrics_app(environ, start_response)
        if path == "/healthz":
            ok, text = self.health()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
            return [(text + "\n").encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"csync watch serves /metrics and /healthz\n"]

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(2)
        self.server.server_close()
