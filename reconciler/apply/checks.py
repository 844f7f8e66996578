"""Apply's checks of a plan before anything runs: the whole plan up front, and each action's
facts again on its host (a stale action names the facts that changed, found by deepdiff)."""

from __future__ import annotations

from typing import Any

from deepdiff import DeepDiff
from deepdiff.helper import NotPresent

from reconciler import __version__
from reconciler.desired.model import DesiredState
from reconciler.errors import InvalidInput, StalePlan
from reconciler.plan.artefact import Plan, fingerprint
from reconciler.plan.kinds import script_for


def changed_facts(planned: Any, now: Any) -> list[str]:
    """'path: planned X, now Y' for every fact that differs between a recorded precondition
    and the one recomputed now (paths as dotted keys; a fact absent on one side is None)."""
    out = []
    for changes in DeepDiff(planned, now, view="tree", threshold_to_diff_deeper=0).values():
        for level in changes:
            path = ".".join(str(p) for p in level.path(output_format="list"))
            was = None if isinstance(level.t1, NotPresent) else level.t1
            is_ = None if isinstance(level.t2, NotPresent) else level.t2
            out.append(f"{path or 'facts'}: planned {was!r}, now {is_!r}")
    return sorted(out)


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
