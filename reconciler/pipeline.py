"""The refresh-and-plan pipeline shared by `plan`, `apply`, `trust` and `import`."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from reconciler.desired.model import DesiredState
from reconciler.domain.preview import judge
from reconciler.driver.preview import run_previews
from reconciler.driver.transport import Pool
from reconciler.observe.facts import HostFacts
from reconciler.observe.probe import SiteFacts, probe_site
from reconciler.plan.artefact import Plan
from reconciler.plan.kinds import preview_request
from reconciler.plan.planner import make_plan


def git_commit_of(paths: Sequence[Path]) -> str | None:
    """The commit of the desired state when it lives in a git work tree, else None.

    A dirty tree gives the commit with a "-dirty" suffix, so a plan never claims to be
    from a commit it does not match.
    """
    where = Path(paths[0]) if paths else Path(".")
    folder = where if where.is_dir() else where.parent
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", *[str(Path(p).resolve()) for p in paths]],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def refresh_and_plan(
    state: DesiredState,
    pool: Pool,
    *,
    git_commit: str | None = None,
    on_probed: Callable[[HostFacts], None] | None = None,
    keep_open: bool = True,
) -> tuple[Plan, SiteFacts]:
    """Probe (``keep_open``: see probe_site), plan, preview."""
    facts = probe_site(state, pool, on_done=on_probed, keep_open=keep_open)
    plan = make_plan(state, facts.hosts, git_commit=git_commit)
    return with_previews(state, pool, facts.hosts, plan, git_commit=git_commit), facts


def with_previews(state: DesiredState, pool: Pool, facts: Mapping[str, HostFacts], plan: Plan, *, git_commit: str | None = None) -> Plan:
    """``plan`` (made from ``facts``) with Serviceguard's -t preview of each of its cluster
    operations: one script per host that runs any, none for a plan without them. When a
    preview does not confirm its operation, the plan is made again with the previews as
    facts: that operation is blocked, and what depends on it is not planned."""
    if pool.identity == "plan":
        # The plan identity can only probe: Serviceguard's preview (cmrunpkg -t ...) needs root.
        # The plan is the same without it; apply, under root, previews the plan it makes.
        return plan
    requests = [r for a in plan.cluster_actions() if (r := preview_request(a)) is not None]
    if not requests:
        return plan
    runs = run_previews(state, pool, requests, {n: f.reason or "unreachable" for n, f in facts.items() if not f.reachable})
    previews = [judge(r, runs[r.action]) for r in requests]
    if any(p.blocks for p in previews):
        return make_plan(state, facts, git_commit=git_commit, previews=previews)
    # nothing blocks: the same plan (make_plan would give it again), with the previews
    return plan.model_copy(update={"previews": tuple(sorted(previews, key=lambda p: p.action))})
