"""`csync watch --heal`: repair key drift, as `csync apply --auto-approve` would, and nothing else.

A cycle's plan is healed only when every action in it is a key action (a key file copied,
installed, mirrored or removed: the kinds of reconciler/plan/kinds.py that add or remove a
key and are no cluster operation). A plan with anything else (starting, halting or
switching the package, dispatching a member, a key rotation, installing the probe program) is
left to an operator, all of it: the administrator's intent (a package halted for
maintenance) is never undone by a watch.

The heal is an ordinary apply (reconciler/apply/run.py): the site lock taken without waiting
(another apply holding it means no heal this cycle), the plan made again under the lock and
checked again against the same rule before anything runs, every action verified, the run
journaled in .csync/runs/ like any apply, and cluster operations refused by apply itself too
(allow_cluster_ops=False).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from reconciler.apply.events import Events, StopFlag
from reconciler.apply.journal import Journal
from reconciler.apply.lock import lease_seconds
from reconciler.apply.report import ActionResult, ApplyReport
from reconciler.apply.run import ApplyOptions, run_apply
from reconciler.desired.model import DesiredState
from reconciler.driver.transport import Pool
from reconciler.errors import ClusterOpsRefused, CsyncError, LockHeld
from reconciler.plan.artefact import Plan
from reconciler.plan.kinds import KINDS
from reconciler.watch.log import EventLog

HEAL_KINDS = frozenset(k.name for k in KINDS.values() if k.summary in ("add", "remove") and not k.cluster_op)


def refusal(plan: Plan) -> str | None:
    """Why ``plan`` is not healed (None: it is)."""
    if not plan.actions:
        return None
    others = sorted({a.kind for a in plan.actions if a.kind not in HEAL_KINDS})
    if not others:
        return None
    cluster = plan.cluster_actions()
    why = f"the plan holds {', '.join(others)}: --heal runs key actions only"
    if cluster:
        why += f" and never a cluster operation ({len(cluster)} planned); review and apply them: csync plan, csync apply"
    return why


@dataclass
class HealOutcome:
    result: str  # one of metrics.HEAL_RESULTS
    detail: str = ""
    journal: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


class _LogEvents(Events):
    """Each healed action, one line in the watch's log (the journal has every detail)."""

    def __init__(self, log: EventLog):
        self.log = log

    def action_finished(self, result: ActionResult) -> None:
        a = result.action
        level = "info" if result.outcome == "done" else "warning"
        self.log.emit("heal-action", level, id=a.id, kind=a.kind, host=a.host, outcome=result.outcome, detail=result.detail)

    def notice(self, text: str) -> None:
        self.log.emit("heal-notice", "warning", message=text)


def _healed(report: ApplyReport) -> bool:
    """Every action done and verified, and no key action left in a fresh plan (blocked or
    unknown items elsewhere in the site are not the heal's to fix)."""
    return (
        not report.interrupted
        and not report.cancelled
        and not report.lock_problem
        and all(r.outcome == "done" for r in report.results)
        and report.final_plan is not None
        and not any(a.kind in HEAL_KINDS for a in report.final_plan.actions)
    )


def heal(state: DesiredState, pool: Pool, *, git_commit: str | None, stop: StopFlag, log: EventLog) -> HealOutcome:
    try:
        journal = Journal(str(uuid.uuid4()))
    except OSError as e:  # no journal, no heal: every apply is journaled
        return HealOutcome("error", f"cannot open the run journal: {e.strerror or e}")
    refused: list[str] = []

    def confirm(plan: Plan) -> bool:
        # the plan made under the lock, from facts read under it: the same rule again
        why = refusal(plan)
        if why is not None:
            refused.append(why)
        return why is None

    try:
        options = ApplyOptions(lock_timeout=0, lease=lease_seconds(), git_commit=git_commit, allow_cluster_ops=False)
        report = run_apply(state, pool, saved_plan=None, options=options, confirm=confirm, events=_LogEvents(log), journal=journal, stop=stop)
    except LockHeld as e:
        return HealOutcome("locked", str(e), str(journal.path))
    except ClusterOpsRefused as e:
        return HealOutcome("refused", str(e), str(journal.path))
    except CsyncError as e:
        return HealOutcome("error", str(e), str(journal.path))
    finally:
        journal.close()
    counts = report.counts()
    if refused:
        return HealOutcome("refused", refused[0], str(journal.path), counts)
    if _healed(report):
        return HealOutcome("succeeded", "", str(journal.path), counts)
    why = report.interrupted or report.lock_problem or f"{counts['failed']} failed, {counts['stale']} stale, {counts['skipped']} skipped"
    return HealOutcome("failed", why, str(journal.path), counts)
