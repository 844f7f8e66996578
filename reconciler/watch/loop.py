"""The watch loop: reload when the desired state changed, probe and plan over the warm
sessions, report what changed, update the metrics, heal when allowed; then wait for the
next cycle.

A cycle is the pipeline of `csync plan` (reconciler/pipeline.refresh_and_plan) over a
`WarmPool`. An unexpected error in a cycle (a bug) is logged as `cycle-error` and counted
(csync_cycle_errors_total); the watch goes on with the next cycle. `run` returns once the
stop flag is set; the caller (reconciler/cli/watch.py) owns signals, threads and closing.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.apply.events import StopFlag
from reconciler.desired.model import DesiredState, Host
from reconciler.driver.transport import Identity, Pool
from reconciler.errors import CsyncError
from reconciler.pipeline import refresh_and_plan
from reconciler.plan.artefact import Plan
from reconciler.watch.backoff import Backoff
from reconciler.watch.connections import WarmPool
from reconciler.watch.heal import heal, refusal
from reconciler.watch.log import EventLog
from reconciler.watch.metrics import WatchMetrics
from reconciler.watch.readiness import readiness
from reconciler.watch.snapshot import Snapshot, changes
from reconciler.watch.source import DesiredSource, Loaded

DEFAULT_INTERVAL = 30.0
# How often the desired state's files are looked at while waiting for the next cycle.
POLL_SECONDS = 1.0


@dataclass
class WatchOptions:
    interval: float = DEFAULT_INTERVAL
    heal: bool = False
    accept_new_host_keys: bool = False
    poll: float = POLL_SECONDS

    @property
    def stall_after(self) -> float:
        """/healthz turns 503 when no cycle finished for this long (a cycle may wait on hung
        hosts for a connect timeout; several intervals and two minutes leave room for it)."""
        return max(3 * self.interval, 120.0)


# (state) -> the identity the watch probes with: "root" or "plan"
IdentityOf = Callable[[DesiredState], str]


class Watch:
    def __init__(
        self,
        source: DesiredSource,
        loaded: Loaded,
        options: WatchOptions,
        *,
        log: EventLog,
        metrics: WatchMetrics,
        identity_of: IdentityOf,
        stop: StopFlag | None = None,
    ):
        self.source = source
        self.loaded = loaded
        self.options = options
        self.log = log
        self.metrics = metrics
        self.identity_of = identity_of
        self.stop = stop if stop is not None else StopFlag()
        self.wake = threading.Event()
        self.reload_requested = threading.Event()
        self.before: Snapshot | None = None
        self.cycles = 0
        self.started = time.monotonic()
        self.last_cycle_end: float | None = None
        self.heal_backoff = Backoff(base=options.interval, cap=max(16 * options.interval, 600.0))
        self._heal_said: str | None = None
        self.healing = False  # a heal (an apply, holding the site lock) is running
        self._again = False
        self.pool = self._open_pool(loaded.state)
        metrics.desired(loaded.digest, loaded.commit)

    # --- connections ---------------------------------------------------------------------
    def _open_pool(self, state: DesiredState) -> WarmPool:
        identity: Identity = "plan" if self.identity_of(state) == "plan" else "root"
        return WarmPool(
            state.access,
            accept_new_host_keys=self.options.accept_new_host_keys,
            identity=identity,
            backoff_cap=max(60.0, self.options.interval),
            on_reconnect=self._reconnected,
        )

    def _reconnected(self, host: Host) -> None:
        self.metrics.reconnects.labels(host.name).inc()
        self.log.emit("host-reconnected", host=host.name, address=host.address)

    # --- signals (called from the main thread) ---------------------------------------------
    def request_stop(self, reason: str, signal_number: int | None = None) -> None:
        self.stop.set(reason, signal_number)
        self.wake.set()

    def request_reload(self) -> None:
        self.reload_requested.set()
        self.wake.set()

    # --- the loop --------------------------------------------------------------------------
    def run(self, max_cycles: int | None = None) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                self._maybe_reload()
                self.cycle()
            except Exception as e:  # a bug: said once in the log, counted, and the watch goes on
                self.metrics.cycle_errors.inc()
                detail = " ".join(str(e).split())[:300]
                fields: dict = {"error": f"{type(e).__name__}: {detail}"}
                if os.environ.get("CSYNC_DEBUG") == "1":
                    fields["traceback"] = traceback.format_exc()
                self.log.emit("cycle-error", "error", **fields)
            if max_cycles is not None and self.cycles >= max_cycles:
                return
            self._wait(began + self.options.interval)

    def _wait(self, deadline: float) -> None:
        """Until the next cycle is due, the desired state changed, or a signal came."""
        while not self.stop.is_set():
            if self._again:
                self._again = False
                return
            if self.reload_requested.is_set() or self.source.changed():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.wake.wait(min(remaining, self.options.poll))
            self.wake.clear()

    def cycle(self) -> Snapshot | None:
        state = self.loaded.state
        t0 = time.monotonic()
        plan, site = refresh_and_plan(state, self.pool, git_commit=self.loaded.commit)
        for f in site.hosts.values():
            if not f.reachable:
                self.pool.lost(f.name, f.reason or "", f.reason_kind or "")
        verdict = readiness(state, site.hosts)
        now = Snapshot.of(plan, site.hosts, verdict)
        seconds = time.monotonic() - t0
        if self.stop.is_set():
            return None  # cut short by the stop: its facts are of sessions being closed
        for change in changes(self.before, now):
            self.log.emit(change.event, change.level, **change.fields)
        self.before = now
        self.metrics.cycle(plan, site.hosts, verdict, seconds, time.time())
        self.cycles += 1
        self.last_cycle_end = time.monotonic()
        if self.options.heal:
            self._maybe_heal(plan)
        return now

    # --- reload ----------------------------------------------------------------------------
    def _maybe_reload(self) -> None:
        asked = self.reload_requested.is_set()
        if not asked and not self.source.changed():
            return
        self.reload_requested.clear()
        via = "SIGHUP" if asked else "file-change"
        try:
            loaded = self.source.load()
            self.identity_of(loaded.state)  # --identity plan and the plan identity gone: invalid too
        except CsyncError as e:
            self.metrics.reloads.labels("invalid").inc()
            self.log.emit("desired-state-invalid", "error", via=via, error=str(e), kept_digest=self.loaded.digest)
            return
        self.metrics.reloads.labels("ok").inc()
        self._adopt(loaded)
        self.log.emit("desired-state-reloaded", via=via, digest=loaded.digest, commit=loaded.commit, hosts=len(loaded.state.all_hosts))

    def _adopt(self, loaded: Loaded) -> None:
        old, new = self.loaded.state, loaded.state
        kept = {h.name: h.address for h in new.all_hosts}
        gone = [h.name for h in old.all_hosts if kept.get(h.name) != h.address]
        if new.access != old.access or self.identity_of(new) != self.pool.identity:
            self.pool.close()  # other keys, ports or known hosts: every host is connected again
            self.pool = self._open_pool(new)
        else:
            self.pool.forget(gone)
        self.metrics.forget_hosts(n for n in gone if n not in kept)
        self.metrics.desired(loaded.digest, loaded.commit)
        self.loaded = loaded

    # --- heal ------------------------------------------------------------------------------
    def _maybe_heal(self, plan: Plan) -> None:
        why = refusal(plan)
        if not plan.actions or why is not None:
            if why is not None and why != self._heal_said:
                self.log.emit("heal-skipped", "warning", reason=why)
            self._heal_said = why
            return
        self._heal_said = None
        if not self.heal_backoff.due():
            return
        state = self.loaded.state
        self.log.emit("heal-started", actions=len(plan.actions), kinds=sorted({a.kind for a in plan.actions}))
        # the heal writes key files: root's identity; the warm pool when the watch probes with it
        pool: Pool = self.pool if self.pool.identity == "root" else Pool(state.access, accept_new_host_keys=self.options.accept_new_host_keys)
        self.healing = True
        try:
            outcome = heal(state, pool, git_commit=self.loaded.commit, stop=self.stop, log=self.log)
        finally:
            self.healing = False
            if pool is not self.pool:
                pool.close()
        self.metrics.heal_runs.labels(outcome.result).inc()
        level = "info" if outcome.result == "succeeded" else "warning"
        self.log.emit("heal-finished", level, result=outcome.result, detail=outcome.detail or None, journal=outcome.journal, **outcome.counts)
        if outcome.result == "succeeded":
            self.heal_backoff.succeeded()
            self._again = True  # show the repaired site at once
        else:
            self.heal_backoff.failed()

    # --- health and closing ------------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        since = time.monotonic() - (self.last_cycle_end if self.last_cycle_end is not None else self.started)
        limit = self.options.stall_after
        if since > limit:
            return False, f"stalled: no cycle finished for {since:.0f} s (limit {limit:.0f} s)"
        if self.last_cycle_end is None:
            return True, f"starting: the first cycle is running ({since:.1f} s)"
        return True, f"ok: {self.cycles} cycle(s), the last finished {since:.1f} s ago"

    def close(self) -> None:
        self.pool.close()
