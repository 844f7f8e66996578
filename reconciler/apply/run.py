"""Apply: carry out exactly a plan's actions, verify each on its host, prove convergence.

The executor runs the plan's waves in order. In a wave, every host is worked on at once
(bounded by `access.parallelism`): its actions go in one round trip (one sh script, each
action in its own subshell between result markers), then the host is probed again (one
round trip), which both verifies what was done and serves as the next wave's re-check.
Before an action runs, its precondition is recomputed from fresh facts by
`kinds.precondition_now` and compared with the plan's fingerprint: a difference means
the action is stale and is not run. A failed (or stale, or skipped) action blocks only the
actions that depend on it. After the last wave every host has been probed again, and a
new plan made from those facts decides whether the site converged.

The core never prints: progress goes to `Events` (the CLI's views and the journal).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reconciler import __version__
from reconciler.apply.journal import Journal, scrub
from reconciler.apply.lock import Interrupted, SiteLock, lock_node, session_runner, who
from reconciler.desired.model import DesiredState, Host
from reconciler.domain.package import package_server
from reconciler.driver import commands
from reconciler.driver.transport import CommandResult, Pool, TransportError, fan_out
from reconciler.errors import InvalidInput, StalePlan
from reconciler.observe.facts import HostFacts
from reconciler.observe.probe import probe_host, probe_site
from reconciler.plan.artefact import Action, Plan, fingerprint
from reconciler.plan.kinds import (
    precondition_hosts,
    precondition_now,
    script_for,
    touched_hosts,
    verify,
    verify_hosts,
)
from reconciler.plan.planner import make_plan

Outcome = Literal["done", "failed", "skipped", "stale"]
OUTCOMES: tuple[Outcome, ...] = ("done", "failed", "skipped", "stale")

# Facts probed before a confirmation prompt are re-probed when the answer took longer.
CONFIRM_GRACE_SECONDS = 5.0


def plan_digest(plan: Plan) -> str:
    """The identity of a plan: sha256 of its canonical JSON."""
    return "sha256:" + hashlib.sha256(plan.to_json().encode()).hexdigest()


# --- what an action runs, touches and must leave ------------------------------------------


def differences(planned: Any, now: Any, path: str = "") -> list[str]:
    """'path: planned -> now' for every leaf that differs between two precondition dicts."""
    if isinstance(planned, dict) and isinstance(now, dict):
        out: list[str] = []
        for k in sorted(set(planned) | set(now), key=str):
            out += differences(planned.get(k), now.get(k), f"{path}.{k}" if path else str(k))
        return out
    if planned != now:
        return [f"{path or 'facts'}: planned {planned!r}, now {now!r}"]
    return []


def check_plan(state: DesiredState, plan: Plan, source: str = "the plan") -> None:
    """Refuse up front a plan this desired state cannot apply: another desired state (stale),
    or a damaged or foreign plan (a command csync would not build from its params)."""
    if plan.desired_state_digest != state.digest() or plan.site != state.site:
        raise StalePlan(
            f"{source} was made from another desired state (site {plan.site}, {plan.desired_state_digest}; "
            f"the desired state now is site {state.site}, {state.digest()}); nothing was run. "
            f"Make a new plan: csync plan [-f PATH] --out PLANFILE, then csync apply PLANFILE"
        )
    ids = {a.id for a in plan.actions}
    if len(ids) != len(plan.actions):
        raise InvalidInput(f"{source}: damaged plan: two actions share an id")
    declared = {h.name: h.address for h in state.all_hosts}
    for a in plan.actions:
        where = f"{source}: action {a.id}"
        if declared.get(a.host) != a.host_address:
            raise InvalidInput(f"{where}: host {a.host} ({a.host_address}) is not declared so in the desired state")
        if fingerprint(a.precondition) != a.facts_fingerprint:
            raise InvalidInput(f"{where}: damaged plan: the facts fingerprint does not match the recorded facts")
        missing = [d for d in a.depends_on if d not in ids]
        if missing:
            raise InvalidInput(f"{where}: depends on {', '.join(missing)}, which is not in the plan")
        try:
            built = script_for(state, a)
        except (KeyError, TypeError, ValueError) as e:  # commands.UnsafeValue is a ValueError
            raise InvalidInput(f"{where}: damaged plan: {e}") from None
        if built.display != a.command:
            raise InvalidInput(f"{where}: the plan's command {a.command!r} is not what csync {__version__} would run ({built.display!r}); make a new plan")


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionResult:
    action: Action
    outcome: Outcome
    wave: int
    detail: str | None = None  # the error, what blocked it, or what changed since the plan
    verified: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Inventory:
    node: str | None
    path: str | None
    addresses: int | None = None
    error: str | None = None


@dataclass
class ApplyReport:
    plan: Plan
    results: list[ActionResult] = field(default_factory=list)
    final_plan: Plan | None = None
    interrupted: str | None = None
    signal_number: int | None = None
    cancelled: bool = False
    lock_problem: str | None = None
    inventory: Inventory | None = None
    seconds: float = 0.0
    round_trips: dict[str, int] = field(default_factory=dict)

    def of(self, outcome: Outcome) -> list[ActionResult]:
        return [r for r in self.results if r.outcome == outcome]

    def counts(self) -> dict[str, int]:
        return {o: len(self.of(o)) for o in OUTCOMES}

    @property
    def converged(self) -> bool:
        return self.final_plan is not None and self.final_plan.clean

    @property
    def succeeded(self) -> bool:
        return (
            self.converged and not self.interrupted and not self.cancelled and not self.lock_problem
            and all(r.outcome == "done" for r in self.results)
            and not self.plan.blocked and not self.plan.unknown
        )

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + (self.signal_number or signal.SIGINT)
        return 0 if self.succeeded else 1


# --- events (views and the journal listen) -----------------------------------------------


class Events:
    """What an apply reports as it goes; every method may be called from worker threads
    (through `Fanout`, which serialises them)."""

    def lock_waiting(self, record) -> None: ...
    def lock_acquired(self, lock: SiteLock) -> None: ...
    def planned(self, plan: Plan, facts_seconds: float | None) -> None: ...
    def wave_started(self, number: int, total: int, actions: list[Action]) -> None: ...
    def action_started(self, action: Action) -> None: ...
    def action_finished(self, result: ActionResult) -> None: ...
    def wave_finished(self, number: int, results: list[ActionResult]) -> None: ...
    def notice(self, text: str) -> None: ...
    def inventory(self, inventory: Inventory) -> None: ...
    def converging(self) -> None: ...
    def finished(self, report: ApplyReport) -> None: ...


class Fanout(Events):
    """Several listeners as one; calls are serialised (worker threads report concurrently)."""

    def __init__(self, *listeners: Events):
        self.listeners = listeners
        self._lock = threading.RLock()

    def _emit(self, name: str, *args) -> None:
        with self._lock:
            for listener in self.listeners:
                getattr(listener, name)(*args)

    def lock_waiting(self, record) -> None: self._emit("lock_waiting", record)
    def lock_acquired(self, lock: SiteLock) -> None: self._emit("lock_acquired", lock)
    def planned(self, plan: Plan, facts_seconds: float | None) -> None: self._emit("planned", plan, facts_seconds)
    def wave_started(self, number: int, total: int, actions: list[Action]) -> None: self._emit("wave_started", number, total, actions)
    def action_started(self, action: Action) -> None: self._emit("action_started", action)
    def action_finished(self, result: ActionResult) -> None: self._emit("action_finished", result)
    def wave_finished(self, number: int, results: list[ActionResult]) -> None: self._emit("wave_finished", number, results)
    def notice(self, text: str) -> None: self._emit("notice", text)
    def inventory(self, inventory: Inventory) -> None: self._emit("inventory", inventory)
    def converging(self) -> None: self._emit("converging")
    def finished(self, report: ApplyReport) -> None: self._emit("finished", report)


class StopFlag:
    """Set by SIGINT/SIGTERM: no new action starts; running host scripts finish."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self.signal_number: int | None = None

    def set(self, reason: str, signal_number: int | None = None) -> None:
        if not self._event.is_set():
            self.reason, self.signal_number = reason, signal_number
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


# --- the executor ----------------------------------------------------------------------------


def parse_batch(result: CommandResult, nonce: str, count: int) -> list[tuple[int | None, str, str]]:
    """(exit code or None when the action did not finish, stdout, stderr) per action of a
    `commands.batch` script."""
    out_rc, out = _split(result.stdout, nonce, count)
    err_rc, err = _split(result.stderr, nonce, count)
    return [(out_rc[i] if out_rc[i] is not None else err_rc[i], out[i], err[i]) for i in range(count)]


def batch_timeout(result: CommandResult, nonce: str) -> int | None:
    """The seconds after which the batch's watchdog stopped it on the host, if it did."""
    marker = f"@@{nonce} timeout "
    for line in result.stderr.decode("utf-8", "replace").splitlines():
        if line.startswith(marker) and line[len(marker):].strip().isdigit():
            return int(line[len(marker):])
    return None


def _split(data: bytes, nonce: str, count: int) -> tuple[list[int | None], list[str]]:
    marker = f"@@{nonce} "
    codes: list[int | None] = [None] * count
    chunks: list[list[str]] = [[] for _ in range(count)]
    current: int | None = None
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(marker):
            parts = line.split()
            try:
                index = int(parts[2])
                if parts[1] == "begin" and 0 <= index < count:
                    current = index
                elif parts[1] == "end" and 0 <= index < count:
                    codes[index] = int(parts[3])
                    current = None
            except (IndexError, ValueError):
                pass
            continue
        if current is not None:
            chunks[current].append(line)
    return codes, ["\n".join(c).strip() for c in chunks]


def _tail(text: str, limit: int = 400) -> str:
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
            self.events.wave_started(number, len(waves), actions)
            self._wave(number, actions, last=number == len(waves))
            self.events.wave_finished(number, [self.results[a.id] for a in actions])
        return {a.id: self.results[a.id] for a in self.plan.actions}

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
                changed = "; ".join(differences(a.precondition, now)) or "the facts changed"
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
        script = commands.batch([script_for(self.state, a).script for a in actions], nonce, timeout=timeout)
        return self.pool.connect(host).run(commands.SHELL, stdin=script.script.encode(),
                                           timeout=timeout + commands.BATCH_TIMEOUT_GRACE)

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
            parts = parse_batch(result, nonce, len(actions))
            timed_out = batch_timeout(result, nonce)
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
                self._finish(ActionResult(a, "failed", number, f"did not complete on {host.name}: {why} (every file change is atomic: the file is either old or new)", {}, seconds))
            elif rc != 0:
                self._finish(ActionResult(a, "failed", number, f"exit {rc}: {_tail(err) or 'no message'}", {}, seconds))
            elif probe_after and verify_hosts(self.state, a) <= {host.name}:
                self._finish(self._verified(a, number, seconds))
        return ran


# --- the run: lock, plan, confirm, execute, inventory, converge ------------------------------


def inventory_node(state: DesiredState, facts: Mapping[str, HostFacts]) -> Host | None:
    """Where the inventory lives now: the standalone master, or the member that has the
    package filesystem mounted."""
    if not state.is_cluster:
        return state.master.host  # type: ignore[union-attr]
    node = package_server(state, facts)
    f = facts.get(node or "")
    return state.host(node) if node and f and f.package_fs and f.package_fs.mounted else None


def declared_addresses(state: DesiredState) -> list[str]:
    addresses = [h.address for h in state.all_hosts]
    if state.is_cluster:
        addresses.append(state.master.package.address)  # type: ignore[union-attr]
    return sorted(set(addresses))


def inventory_complete(state: DesiredState, facts: Mapping[str, HostFacts]) -> bool:
    node = inventory_node(state, facts)
    if node is None:
        return True  # nowhere to write it; nothing to add
    f = facts[node.name]
    listed = (f.package_fs.inventory if state.is_cluster and f.package_fs else f.master_files.inventory if f.master_files else None) or ()
    return set(declared_addresses(state)) <= set(listed)


def update_inventory(state: DesiredState, pool: Pool, facts: Mapping[str, HostFacts]) -> Inventory:
    """Add every declared address to the site's inventory (prune's proof of ownership)."""
    node = inventory_node(state, facts)
    if node is None:
        return Inventory(None, None, error="not updated: the package filesystem is not mounted on any reachable member")
    from reconciler.domain import dsau

    where = f"{state.master.package.mount}/{dsau.PACKAGE_CSYNC_STATE}" if state.is_cluster else dsau.STANDALONE_CSYNC_STATE  # type: ignore[union-attr]
    path = f"{where}/{commands.INVENTORY_FILE}"
    try:
        result = pool.connect(node).run(commands.SHELL, stdin=commands.inventory_update(state, declared_addresses(state)).script.encode(), timeout=state.access.command_timeout)
    except TransportError as e:
        return Inventory(node.name, path, error=f"not updated: {e.reason}")
    if result.exit_code != 0:
        return Inventory(node.name, path, error=f"not updated: exit {result.exit_code}: {_tail(result.stderr.decode('utf-8', 'replace'))}")
    count = next((int(line.split()[1]) for line in result.stdout.decode().splitlines() if line.startswith("INVENTORY ") and line.split()[1].isdigit()), None)
    return Inventory(node.name, path, addresses=count)


class JournalEvents(Events):
    """Writes the run's events to its journal (fingerprints, never key material)."""

    def __init__(self, journal: Journal):
        self.journal = journal

    def action_started(self, action: Action) -> None:
        self.journal.record("action-start", action=action.id, address=action.address, kind=action.kind, host=action.host,
                            host_address=action.host_address, wave=action.wave, command=action.command)

    def action_finished(self, result: ActionResult) -> None:
        a = result.action
        self.journal.record("action-end", action=a.id, address=a.address, kind=a.kind, host=a.host, wave=result.wave,
                            command=a.command, outcome=result.outcome, verified=result.verified or None,
                            error=result.detail if result.outcome != "done" else None, seconds=result.seconds)

    def notice(self, text: str) -> None:
        self.journal.record("notice", message=text)

    def inventory(self, inventory: Inventory) -> None:
        self.journal.record("inventory", node=inventory.node, path=inventory.path, addresses=inventory.addresses, error=inventory.error)


@dataclass
class ApplyOptions:
    lock_timeout: float = 60.0
    lease: int | None = None
    targets: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    git_commit: str | None = None
    plan_source: str | None = None  # the plan file, when applying a saved plan


def run_apply(
    state: DesiredState,
    pool: Pool,
    *,
    saved_plan: Plan | None,
    options: ApplyOptions,
    confirm: Callable[[Plan], bool],
    events: Events,
    journal: Journal,
    stop: StopFlag,
) -> ApplyReport:
    """Lock the site, plan (or take the saved plan), confirm, execute, record the inventory,
    check convergence, release the lock. Raises LockHeld / Interrupted / LockError before
    anything ran; everything after the lock is reported in the ApplyReport."""
    started = time.monotonic()
    events = Fanout(JournalEvents(journal), events)
    ident = who()
    base = {"tool_version": __version__, "site": state.site, "desired_state_digest": state.digest(), **ident,
            "plan_file": options.plan_source}

    def start_record(plan: Plan | None) -> None:
        journal.record("run-start", **base, git_commit=(plan.git_commit if plan else None) or options.git_commit,
                       plan_digest=plan_digest(plan) if plan else None,
                       actions=len(plan.actions) if plan else None, blocked=len(plan.blocked) if plan else None,
                       unknown=len(plan.unknown) if plan else None)

    if saved_plan is not None:
        try:
            check_plan(state, saved_plan, options.plan_source or "the plan")
        except Exception as e:  # a refused plan is a run too: the journal says which and why
            start_record(saved_plan)
            journal.record("run-end", outcome="not-started", error=str(e), exit_code=getattr(e, "exit_code", 1),
                           seconds=round(time.monotonic() - started, 3))
            raise
        saved_plan = saved_plan.select(options.targets, options.excludes) if options.targets or options.excludes else saved_plan

    # 1. the lock, on the node that runs (or will start) the package
    if state.is_cluster:
        member_facts = probe_site(state, pool, only=[m.name for m in state.members]).hosts
        node = lock_node(state, member_facts)
    else:
        node = state.master.host  # type: ignore[union-attr]
    lock = SiteLock(state, node, session_runner(pool, node), lock_id=journal.run_id, lease=options.lease,
                    plan_digest=plan_digest(saved_plan) if saved_plan else None)
    try:
        lock.acquire(options.lock_timeout, stop=stop, on_wait=events.lock_waiting)
    except Exception as e:
        if isinstance(e, Interrupted):
            e.exit_code = 128 + (stop.signal_number or signal.SIGINT)
        start_record(saved_plan)
        journal.record("run-end", outcome="not-started", error=str(e), exit_code=getattr(e, "exit_code", 1),
                       seconds=round(time.monotonic() - started, 3))
        raise
    events.lock_acquired(lock)
    lock.start_renewing()
    report: ApplyReport | None = None
    try:
        # 2. the plan: made under the lock, so its facts are the state the actions meet
        facts: dict[str, HostFacts] = {}
        if saved_plan is None:
            t0 = time.monotonic()
            site = probe_site(state, pool)
            plan = make_plan(state, site.hosts, git_commit=options.git_commit)
            if options.targets or options.excludes:
                plan = plan.select(options.targets, options.excludes)
            check_plan(state, plan)
            facts = dict(site.hosts)
            lock.set_plan_digest(plan_digest(plan))
            events.planned(plan, time.monotonic() - t0)
        else:
            plan = saved_plan
            events.planned(plan, None)
        start_record(plan)
        journal.record("lock", lock_id=lock.id, node=lock.node.name, paths=lock.paths, lease_seconds=lock.lease,
                       acquired_epoch=lock.acquired_epoch, taken_over=[r.data for r in lock.taken_over])
        report = ApplyReport(plan=plan)
        if not plan.actions:
            if saved_plan is not None:
                facts = dict(probe_site(state, pool).hosts)
                report.final_plan = make_plan(state, facts, git_commit=options.git_commit)
            else:
                report.final_plan = plan
            if report.final_plan.clean and not inventory_complete(state, facts):
                report.inventory = update_inventory(state, pool, facts)
                events.inventory(report.inventory)
            return report
        # 3. confirmation (a TTY prompt, or --auto-approve)
        asked = time.monotonic()
        if stop.is_set() or not confirm(plan):
            report.cancelled = not stop.is_set()
            report.interrupted = stop.reason
            report.signal_number = stop.signal_number
            return report
        if time.monotonic() - asked > CONFIRM_GRACE_SECONDS:
            facts = {}  # the answer took a while: re-probe before each action
        # 4. the waves
        executor = Executor(state, plan, pool, events=events, stop=stop, facts=facts, lock_check=lock.check)
        results = executor.run()
        report.results = list(results.values())
        report.lock_problem = executor.lock_problem
        if stop.is_set():
            report.interrupted = stop.reason
            report.signal_number = stop.signal_number
        # 5. bookkeeping, then the proof
        report.inventory = update_inventory(state, pool, executor.facts)
        events.inventory(report.inventory)
        if not report.interrupted and not report.lock_problem:
            events.converging()
            missing = {h.name for h in state.all_hosts if h.name not in executor.facts or executor.taken_after.get(h.name, -1) < len(plan.waves())}
            if missing:
                executor._probe(missing, after=len(plan.waves()))
            report.final_plan = make_plan(state, executor.facts, git_commit=options.git_commit)
            journal.record("converge", converged=report.final_plan.clean,
                           remaining=[{"action": a.id, "host": a.host, "reason": a.reason} for a in report.final_plan.actions],
                           blocked=[f.model_dump() for f in report.final_plan.blocked],
                           unknown=[f.model_dump() for f in report.final_plan.unknown])
        return report
    except Exception as e:
        journal.record("run-end", outcome="error", error=f"{type(e).__name__}: {e}", exit_code=getattr(e, "exit_code", 1),
                       seconds=round(time.monotonic() - started, 3))
        report = None
        raise
    finally:
        try:
            released = lock.release()
            journal.record("unlock", lock_id=lock.id, paths=released)
        except Exception as e:  # the lease expires by itself; say so
            events.notice(f"could not release the site lock {lock.id} ({e}); it expires in at most {lock.lease} s, or: csync unlock {lock.id}")
        if report is not None:
            report.seconds = round(time.monotonic() - started, 3)
            report.round_trips = {n: s.commands_sent for n, s in pool.sessions.items()}
            journal.record("run-end", outcome="succeeded" if report.succeeded else "interrupted" if report.interrupted else "failed",
                           exit_code=report.exit_code, counts=report.counts(), converged=report.converged,
                           cancelled=report.cancelled, lock_problem=report.lock_problem, seconds=report.seconds)
            events.finished(report)
