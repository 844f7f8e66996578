"""The refresh-and-plan pipeline shared by `plan`, `apply`, `trust` and `import`."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.desired.model import DesiredState
from reconciler.driver.transport import Pool
from reconciler.observe.facts import HostFacts
from reconciler.observe.probe import SiteFacts, probe_site
from reconciler.plan.artefact import Plan
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
            capture_output=True, text=True, timeout=5,
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
) -> tuple[Plan, SiteFacts]:
    facts = probe_site(state, pool, on_done=on_probed)
    return make_plan(state, facts.hosts, git_commit=git_commit), facts
