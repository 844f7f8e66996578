"""The executor: carry out a plan's waves, verify each action on its host.

It runs the plan's waves in order. In a wave, every host is worked on at once
(bounded by `access.parallelism`): its actions go in one round trip (one sh script, each
action in its own subshell between result markers), then the host is probed again (one
round trip), which both verifies what was done and serves as the next wave's re-check.
Before an action runs, its precondition is recomputed from fresh facts by
`kinds.precondition_now` and compared with the plan's fingerprint: a difference means
the action is stale and is not run. A failed (or stale, or skipped) action blocks only the
actions that depend on it. After the last wave every host has been probed again.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

from reconciler.apply.checks import changed_facts
from reconciler.apply.events import Events, StopFlag
from reconciler.apply.journal import scrub
from reconciler.apply.report import ActionResult
from reconciler.desired.model import DesiredState, Host
from reconciler.driver import batch
from reconciler.driver.transport import CommandResult, Pool, TransportError, fan_out
from reconciler.observe.facts import HostFacts
from reconciler.observe.probe import probe_host, probe_site
from reconciler.plan.artefact import Action, Plan, fingerprint
from reconciler.plan.kinds import (
    START_PACKAGE,
    precondition_hosts,
    precondition_now,
    script_for,
    touched_hosts,
    verify,
    verify_hosts,
)


def tail(text: str, limit: int = 400) -> str:
    text = scrub(text.strip())
    return text if len(text) <= limit else "..." + text[-limit:]


class Executor:
    """Runs a plan's waves on the hosts of a pool; see the module docstring."""

    def __init__(
        self,
        state: DesiredState,
        plan: Plan,
        pool: Pool,
        *,
        events: Events | None = None,
        stop: StopFlag | None = None,
        facts: Mapping[str, HostFacts] | None = None,
        lock_check: Callable[[], str | None] | None = None,
    ):
        self.state = state
        self.plan = plan
        self.pool = pool
        self.events = events or Events()
        self.stop = stop or StopFlag()
        self.lock_check = lock_check or (lambda: None)
        self.hosts: dict[str, Host] = {h.name: h for h in state.all_hosts}
        self.facts: dict[str, HostFacts] = dict(facts or {})
        self.taken_after: dict[str, int] = {n: 0 for n in self.facts}  # facts show the state after wave N
        self.touched: dict[str, int] = {}  # last wave that may have changed the host
        self.results: dict[str, ActionResult] = {}
        self._lock = threading.Lock()
        self.lock_problem: str | None = None
        self.cluster_key_checked = False
        self.cluster_key_problem: str | None = None

    # --- facts -----------------------------------------------------------------------------
    def fresh(self, name: str) -> bool:
        f = self.facts.get(name)
        return f is not None and f.reachable and self.taken_after.get(name, -1) >= self.touched.get(name, 0)

    def _probe(self, names: set[str], after: int) -> None:
        if not names:
            return
        site = probe_site(self.state, self.pool, only=names)
        with self._lock:
            for name, f in site.hosts.items():
                self.facts[name] = f
                self.taken_after[name] = after

    def _probe_one(self, host: Host, after: int) -> None:
        f = probe_host(self.pool, self.state, host, self.state.role_of(host.name))
        with self._lock:
            self.facts[host.name] = f
            self.taken_after[host.name] = after

    # --- results ---------------------------------------------------------------------------
    def _finish(self, result: ActionResult) -> None:
        with self._lock:
            self.results[result.action.id] = result
        self.events.action_finished(result)

    def _blocker(self, action: Action) -> str | None:
        for dep in action.depends_on:
            r = self.results.get(dep)
            if r is None:
                return f"depends on {dep}, which did not run"
            if r.outcome != "done":
                verb = {"failed": "failed", "stale": "was stale", "skipped": "was skipped"}[r.outcome]
                return f"depends on {dep}, which {verb}: {r.detail}"
        return None

    def _halted(self) -> str | None:
        """Why no new action may start (a signal, or the lock is no longer ours)."""
        if self.stop.is_set():
            return f"not started: {self.stop.reason}"
        problem = self.lock_check()
        if problem:
            self.lock_problem = problem
            return f"not started: {problem}"
        return None

    # --- the run -----------------------------------------------------------------------------
    def run(self) -> dict[str, ActionResult]:
        waves = self.plan.waves()
        for number, actions in enumerate(waves, 1):
            halted = self._halted()
            if halted:
                for a in actions:
                    self._finish(ActionResult(a, "skipped", number, halted))
                continue
            unconfirmed = self._cluster_key_unconfirmed()
            if unconfirmed:
                for a in actions:
                    self._finish(ActionResult(a, "stale", number, unconfirmed))
                continue
            self.events.wave_started(number, len(waves), actions)
            self._wave(number, actions, last=number == len(waves))
            self.events.wave_finished(number, [self.results[a.id] for a in actions])
        return {a.id: self.results[a.id] for a in self.plan.actions}

    def _cluster_key_unconfirmed(self) -> str | None:
        """Once this run has started the package, the cluster key the plan inferred from the
        members' own keys is read from the package filesystem before any further action; a
        different (or unreadable) key makes every later action stale. None: nothing to check,
        or confirmed."""
        if not self.plan.cluster_key_inferred or self.cluster_key_checked:
            return self.cluster_key_problem
        started = [r for r in self.results.values() if r.outcome == "done" and r.action.kind == START_PACKAGE.name]
        if not started:
            return None
        node = started[0].action.host
        if not self.fresh(node):
            self._probe({node}, after=started[0].wave)
        f = self.facts.get(node)
        pkgfs = f.package_fs if f is not None and f.reachable else None
        found = pkgfs.cluster_key if pkgfs is not None and pkgfs.mounted else None
        self.cluster_key_checked = True
        if found is not None and found.usable and found.fingerprint == self.plan.cluster_key:
            self.events.notice(f"cluster key confirmed on the package filesystem on {node}: {found.fingerprint}")
            return None
        seen = found.fingerprint if found is not None and found.usable else "no usable key"
        self.cluster_key_problem = (
            f"not run: the plan inferred the cluster key {self.plan.cluster_key} from the members' own keys, but the package "
            f"filesystem on {node} holds {seen}; nothing more runs: plan again (csync plan) to plan from the confirmed key"
        )
        return self.cluster_key_problem

    def _wave(self, number: int, actions: list[Action], *, last: bool) -> None:
        runnable = []
        for a in actions:
            blocker = self._blocker(a)
            if blocker:
                self._finish(ActionResult(a, "skipped", number, blocker))
            else:
                runnable.append(a)
        # re-check: recompute each precondition from facts no older than the last change
        needed = set().union(*(precondition_hosts(self.state, a) for a in runnable)) if runnable else set()
        self._probe({n for n in needed if not self.fresh(n)}, after=number - 1)
        by_host: dict[str, list[Action]] = defaultdict(list)
        for a in runnable:
            down = [n for n in sorted(precondition_hosts(self.state, a)) if not self.facts[n].reachable]
            if down:
                why = self.facts[down[0]].reason
                self._finish(ActionResult(a, "failed", number, f"not run: cannot re-check its facts: {down[0]} is unreachable ({why})"))
                continue
            now = precondition_now(self.state, a, self.facts)
            if fingerprint(now) != a.facts_fingerprint:
                changed = "; ".join(changed_facts(a.precondition, now)) or "the facts changed"
                self._finish(ActionResult(a, "stale", number, f"not run: the facts it was planned from changed: {changed}"))
                continue
            by_host[a.host].append(a)
        if not by_host:
            if last:
                self._probe({n for n in self.hosts if self.taken_after.get(n, -1) < number or not self.fresh(n)}, after=number)
            return
        # a host changed by another host's action is probed after the whole wave
        cross = {n for acts in by_host.values() for a in acts for n in touched_hosts(self.state, a) if n != a.host}
        pending: list[tuple[Action, float]] = []
        ran: list[Action] = []

        def work(host: Host) -> None:
            done = self._run_host(number, host, by_host[host.name], probe_after=host.name not in cross)
            with self._lock:
                ran.extend(a for a, _ in done)
                pending.extend((a, s) for a, s in done if a.id not in self.results)

        fan_out([self.hosts[n] for n in by_host], work, parallelism=self.state.access.parallelism)
        for a in ran:
            for n in touched_hosts(self.state, a):
                self.touched[n] = number
        sweep = {n for a, _ in pending for n in verify_hosts(self.state, a) | touched_hosts(self.state, a)}
        sweep |= {n for a in ran for n in touched_hosts(self.state, a)}
        if last:
            sweep |= set(self.hosts)
        self._probe({n for n in sweep if self.taken_after.get(n, -1) < number}, after=number)
        for a, seconds in pending:
            self._finish(self._verified(a, number, seconds))

    def _verified(self, action: Action, number: int, seconds: float) -> ActionResult:
        problem, seen = verify(self.state, action, self.facts)
        if problem:
            return ActionResult(action, "failed", number, f"command exited 0 but {problem}", seen, seconds)
        return ActionResult(action, "done", number, None, seen, seconds)

    def _commands_sent(self, host: Host) -> int:
        session = self.pool.sessions.get(host.name) if self.pool is not None else None
        return session.commands_sent if session else 0

    def _run_batch(self, host: Host, actions: list[Action], nonce: str) -> CommandResult:
        """Send the host's actions of a wave as one script; raises TransportError."""
        timeout = max(1, math.ceil(self.state.access.command_timeout * len(actions)))
        script = batch.batch([script_for(self.state, a).script for a in actions], nonce, timeout=timeout)
        return self.pool.connect(host).run_script(script, timeout=timeout + batch.BATCH_TIMEOUT_GRACE)

    def _run_host(self, number: int, host: Host, actions: list[Action], *, probe_after: bool) -> list[tuple[Action, float]]:
        """One round trip for the host's actions of this wave, then (unless another host's
        action changes it too) one probe; returns the actions that ran and awaits verification
        of those not verified here."""
        halted = self._halted()
        if halted:
            for a in actions:
                self._finish(ActionResult(a, "skipped", number, halted))
            return []
        for a in actions:
            self.events.action_started(a)
        nonce = secrets.token_hex(8)
        start = time.monotonic()
        lost = None
        sent_before = self._commands_sent(host)
        try:
            result = self._run_batch(host, actions, nonce)
            parts = batch.parse_batch(result, nonce, len(actions))
            timed_out = batch.batch_timeout(result, nonce)
            if timed_out is not None:
                lost = f"timed out after {timed_out} s (access.command_timeout per action); stopped on the host"
        except TransportError as e:
            # no session opened: the script never reached the host
            lost = e.reason if self._commands_sent(host) != sent_before else f"not sent: {e.reason}"
            parts = [(None, "", "")] * len(actions)
        seconds = round(time.monotonic() - start, 3)
        if probe_after:
            self._probe_one(host, after=number)
        ran: list[tuple[Action, float]] = []
        for a, (rc, _out, err) in zip(actions, parts):
            ran.append((a, seconds))
            if rc is None and lost and lost.startswith("not sent"):
                self._finish(ActionResult(a, "failed", number, f"not run on {host.name}: {lost}", {}, seconds))
            elif rc is None:
                why = lost or "the host script ended before this action finished"
                self._finish(
                    ActionResult(
                        a, "failed", number, f"did not complete on {host.name}: {why} (every file change is atomic: the file is either old or new)", {}, seconds
                    )
                )
            elif rc != 0:
                self._finish(ActionResult(a, "failed", number, f"exit {rc}: {tail(err) or 'no message'}", {}, seconds))
            elif probe_after and verify_hosts(self.state, a) <= {host.name}:
                self._finish(self._verified(a, number, seconds))
        return ran
