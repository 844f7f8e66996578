"""Apply: lock the site, plan (or take a saved plan), confirm, execute, record the
inventory, prove convergence with a fresh plan, release the lock. The core never prints:
progress goes to `Events` (the CLI's views and the journal).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler import __version__
from reconciler.apply.checks import check_plan
from reconciler.apply.events import Events, Fanout, JournalEvents, StopFlag
from reconciler.apply.executor import Executor
from reconciler.apply.inventory import inventory_complete, update_inventory
from reconciler.apply.journal import Journal
from reconciler.apply.lock import (
    DEFAULT_LOCK_TIMEOUT,
    Interrupted,
    SiteLock,
    lock_node,
    session_runner,
    who,
)
from reconciler.apply.report import ApplyReport, plan_digest
from reconciler.desired.model import DesiredState
from reconciler.driver.transport import Pool
from reconciler.errors import ClusterOpsRefused
from reconciler.observe.facts import HostFacts
from reconciler.observe.probe import probe_site
from reconciler.pipeline import with_previews
from reconciler.plan.artefact import Plan
from reconciler.plan.kinds import REGENERATE_KEYS
from reconciler.plan.planner import make_plan

# Facts probed before a confirmation prompt are re-probed when the answer took longer.
CONFIRM_GRACE_SECONDS = 5.0


@dataclass
class ApplyOptions:
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    lease: int | None = None
    targets: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    git_commit: str | None = None
    plan_source: str | None = None  # the plan file, when applying a saved plan
    # A plan made by this run (no saved plan) may run cluster operations only when allowed:
    # the CLI forbids it for --auto-approve without --allow-cluster-ops.
    allow_cluster_ops: bool = True


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
    base = {"tool_version": __version__, "site": state.site, "desired_state_digest": state.digest(), **ident, "plan_file": options.plan_source}

    def start_record(plan: Plan | None) -> None:
        journal.record(
            "run-start",
            **base,
            git_commit=(plan.git_commit if plan else None) or options.git_commit,
            plan_digest=plan_digest(plan) if plan else None,
            actions=len(plan.actions) if plan else None,
            blocked=len(plan.blocked) if plan else None,
            unknown=len(plan.unknown) if plan else None,
        )

    def not_started(e: Exception) -> None:
        start_record(saved_plan)
        journal.record("run-end", outcome="not-started", error=str(e), exit_code=getattr(e, "exit_code", 1), seconds=round(time.monotonic() - started, 3))

    if saved_plan is not None:
        try:
            check_plan(state, saved_plan, options.plan_source or "the plan")
        except Exception as e:  # a refused plan is a run too: the journal says which and why
            not_started(e)
            raise
        saved_plan = saved_plan.select(options.targets, options.excludes) if options.targets or options.excludes else saved_plan

    # 1. the lock, on the node that runs (or will start) the package
    if state.is_cluster:
        member_facts = probe_site(state, pool, only=[m.name for m in state.members]).hosts
        node = lock_node(state, member_facts)
    else:
        node = state.standalone_host
    lock = SiteLock(
        state, node, session_runner(pool, node), lock_id=journal.run_id, lease=options.lease, plan_digest=plan_digest(saved_plan) if saved_plan else None
    )
    try:
        lock.acquire(options.lock_timeout, stop=stop, on_wait=events.lock_waiting)
    except Exception as e:
        if isinstance(e, Interrupted):
            e.exit_code = 128 + (stop.signal_number or signal.SIGINT)
        not_started(e)
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
            plan = with_previews(state, pool, site.hosts, make_plan(state, site.hosts, git_commit=options.git_commit), git_commit=options.git_commit)
            if options.targets or options.excludes:
                plan = plan.select(options.targets, options.excludes)
            check_plan(state, plan)
            facts = dict(site.hosts)
            lock.set_plan_digest(plan_digest(plan))
            events.planned(plan, time.monotonic() - t0)
            gated = plan.cluster_actions()
            if gated and not options.allow_cluster_ops:
                start_record(plan)
                raise ClusterOpsRefused(
                    f"the plan has {len(gated)} cluster operation(s) ({', '.join(a.id for a in gated)}) and --auto-approve does "
                    f"not run them without --allow-cluster-ops; nothing was run. Review them (csync plan --out PLANFILE) and "
                    f"apply the reviewed PLANFILE, or pass --allow-cluster-ops"
                )
        else:
            plan = saved_plan
            events.planned(plan, None)
        start_record(plan)
        journal.record(
            "lock",
            lock_id=lock.id,
            node=lock.node.name,
            paths=lock.paths,
            lease_seconds=lock.lease,
            acquired_epoch=lock.acquired_epoch,
            taken_over=[r.data for r in lock.taken_over],
        )
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
        # a rotation that ran (exited 0, verified or not) records its generation once the cluster key changed
        rotation = next((r.action for r in report.results if r.action.kind == REGENERATE_KEYS.name and r.outcome in ("done", "failed")), None)
        report.inventory = update_inventory(state, pool, executor.facts, rotation=rotation)
        events.inventory(report.inventory)
        if not report.interrupted and not report.lock_problem:
            events.converging()
            missing = {h.name for h in state.all_hosts if h.name not in executor.facts or executor.taken_after.get(h.name, -1) < len(plan.waves())}
            if report.inventory.node and not report.inventory.error:
                missing.add(report.inventory.node)  # the convergence plan reads the inventory just written
            if missing:
                executor._probe(missing, after=len(plan.waves()))
            report.final_plan = make_plan(state, executor.facts, git_commit=options.git_commit)
            journal.record(
                "converge",
                converged=report.final_plan.clean,
                remaining=[{"action": a.id, "host": a.host, "reason": a.reason} for a in report.final_plan.actions],
                blocked=[f.model_dump() for f in report.final_plan.blocked],
                unknown=[f.model_dump() for f in report.final_plan.unknown],
            )
        return report
    except Exception as e:
        journal.record(
            "run-end",
            outcome="not-started" if isinstance(e, ClusterOpsRefused) else "error",
            error=f"{type(e).__name__}: {e}",
            exit_code=getattr(e, "exit_code", 1),
            seconds=round(time.monotonic() - started, 3),
        )
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
            journal.record(
                "run-end",
                outcome="succeeded" if report.succeeded else "interrupted" if report.interrupted else "failed",
                exit_code=report.exit_code,
                counts=report.counts(),
                converged=report.converged,
                cancelled=report.cancelled,
                lock_problem=report.lock_problem,
                seconds=report.seconds,
            )
            events.finished(report)
