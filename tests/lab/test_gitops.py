"""The GitOps path end to end, against the lab: a git repository of desired state, the CI
pipeline's steps run as the pipelines run them (examples/ci/csync-ci.sh), the reviewed plan
applied after the merge, the commit and the CI job recorded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.apply.journal import read
from reconciler.apply.lock import SiteLock, session_runner
from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.driver.transport import Pool
from reconciler.lab.runtime import LAB_MOUNT, key_dir

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
STEPS = ROOT / "examples" / "ci" / "csync-ci.sh"
GITHUB_JOB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_REPOSITORY": "dsau/lab-site",
    "GITHUB_JOB": "apply",
    "GITHUB_WORKFLOW": "csync",
    "GITHUB_ACTOR": "alice",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_SERVER_URL": "https://git.example",
}


def git(repo: Path, *args: str) -> str:
    r = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"},
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def make_repo(tmp_path: Path, lab) -> tuple[Path, str]:
    """A repository as an admin keeps it: desired-state/site.yaml and ci/csync-ci.sh, committed."""
    repo = tmp_path / "site-repo"
    (repo / "desired-state").mkdir(parents=True)
    (repo / "ci").mkdir()
    shutil.copy(lab.desired_state_path, repo / "desired-state" / "site.yaml")
    shutil.copy(STEPS, repo / "ci" / "csync-ci.sh")
    (repo / ".gitignore").write_text("csync-out/\n.csync/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "the lab site")
    return repo, git(repo, "rev-parse", "HEAD")


def step(repo: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """One pipeline step, as the CI job runs it (csync = this checkout's reconciler.cli.main)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_", "GITLAB"))}
    environ |= {"CSYNC": f"{sys.executable} -m reconciler.cli.main", "PYTHONPATH": os.pathsep.join(sys.path), "CSYNC_STATE": "desired-state"}
    environ |= env or {}
    return subprocess.run(["bash", "ci/csync-ci.sh", *args], cwd=repo, capture_output=True, text=True, timeout=600, env=environ)


def test_pull_request_plan_then_merge_applies_the_reviewed_plan_and_records_commit_and_job(reseed, tmp_path):
    lab = reseed("seed")
    repo, commit = make_repo(tmp_path, lab)

    # --- the pull request: validate, plan to Markdown (the comment) and JSON (the artefact)
    pr = step(repo, "pr")
    assert pr.returncode == 0, pr.stdout + pr.stderr
    comment = (repo / "csync-out" / "comment.md").read_text()
    assert comment.startswith("<!-- csync-plan -->\n### csync plan for site `lab`")
    assert f"commit `{commit}`" in comment
    assert "| `+` | `package.csync` | start-package | node1 |" in comment
    assert "`member.node3` | dispatch-member" in comment
    assert "Merging applies exactly `plan.json`" in comment and "**The whole plan** is the artefact `csync-plan` of this run" in comment
    detail = (repo / "csync-out" / "plan.txt").read_text()  # the artefact's text: every action, one block each
    assert detail.count("\n      why:  ") == len(json.loads((repo / "csync-out" / "plan.json").read_text())["actions"])
    artefact = json.loads((repo / "csync-out" / "plan.json").read_text())
    assert artefact["git_commit"] == commit and artefact["site"] == "lab"
    assert artefact["desired_state_digest"] == load_desired_state([repo / "desired-state"]).digest()
    kinds = [a["kind"] for a in artefact["actions"]]
    assert kinds[:2] == ["start-package", "dispatch-member"] and "copy-key" in kinds
    assert git(repo, "status", "--porcelain") == ""  # the steps leave the work tree clean

    # --- the merge: the artefact, fetched from the PR run, applied by a GitHub Actions job
    reviewed = repo / "csync-out" / "reviewed"
    reviewed.mkdir()
    shutil.copy(repo / "csync-out" / "plan.json", reviewed / "plan.json")
    merge = step(repo, "apply", "csync-out/reviewed/plan.json", env=GITHUB_JOB | {"GITHUB_SHA": commit})
    assert merge.returncode == 0, merge.stdout + merge.stderr
    assert "STALE" not in merge.stderr

    # the journal names the reviewed plan, its commit and the CI job
    [journal] = sorted((repo / ".csync" / "runs").glob("*.jsonl"))
    records = read(journal)
    start = records[0]
    assert start["type"] == "run-start" and start["git_commit"] == commit
    assert start["plan_file"] == "csync-out/reviewed/plan.json" and start["actions"] == len(artefact["actions"])
    assert start["ci"] == {
        "system": "github",
        "repository": "dsau/lab-site",
        "run_id": "4242",
        "run_attempt": "1",
        "job": "apply",
        "workflow": "csync",
        "sha": commit,
        "ref": "refs/heads/main",
        "event_name": "push",
        "actor": "alice",
        "url": "https://git.example/dsau/lab-site/actions/runs/4242",
    }
    assert records[-1]["type"] == "run-end" and records[-1]["exit_code"] == 0

    # --- converged: the next plan has no changes, and the scheduled drift check passes
    drift = step(repo, "drift")
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert "No changes." in drift.stdout and "no drift" in drift.stderr

    # --- drift by hand: the scheduled check fails with exit 2 and shows what apply would do
    (key_dir(lab, "client2") / dsau.peer_key_name("127.0.10.10")).unlink()
    summary = tmp_path / "summary.md"
    drift = step(repo, "drift", env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert "client.client2.key[root-127.0.10.10.pub]" in drift.stdout and "DRIFT" in drift.stderr
    assert "::error::csync: the site drifted" in drift.stdout
    assert "client.client2.key[root-127.0.10.10.pub]" in summary.read_text()


def test_a_reviewed_plan_made_stale_by_a_later_commit_fails_loudly_unless_fresh_is_configured(reseed, tmp_path):
    lab = reseed("fresh")
    repo, first = make_repo(tmp_path, lab)
    (key_dir(lab, "client1") / dsau.peer_key_name("127.0.10.2")).unlink()
    pr = step(repo, "pr")
    assert pr.returncode == 0, pr.stdout + pr.stderr
    # another change lands on main before this plan is applied: client4 leaves the site
    site = repo / "desired-state" / "site.yaml"
    site.write_text(site.read_text().replace("  - {name: client4, address: 127.0.10.24}\n", ""))
    git(repo, "commit", "-q", "-am", "client4 leaves")
    second = git(repo, "rev-parse", "HEAD")

    stale = step(repo, "apply", "csync-out/plan.json")
    assert stale.returncode == 4, stale.stdout + stale.stderr
    assert "STALE" in stale.stderr and "Nothing was applied" in stale.stderr
    assert not (key_dir(lab, "client1") / dsau.peer_key_name("127.0.10.2")).exists()  # nothing ran

    missing = step(repo, "apply", "csync-out/no-such-plan.json")
    assert missing.returncode == 1 and "no reviewed plan" in missing.stderr

    fresh = step(repo, "apply", "csync-out/plan.json", env={"CSYNC_APPLY_MODE": "fresh"})
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "NO ONE REVIEWED" in fresh.stderr
    assert "client.client1.key[root-127.0.10.2.pub]" in (repo / "csync-out" / "fresh-plan.md").read_text()
    assert (key_dir(lab, "client1") / dsau.peer_key_name("127.0.10.2")).exists()
    runs = [read(p) for p in sorted((repo / ".csync" / "runs").glob("*.jsonl"))]
    # the refused stale plan is in the journal too, with the commit it was reviewed at
    refused = [r for r in runs if r[-1]["exit_code"] == 4]
    assert len(refused) == 2 and all(r[0]["git_commit"] == first and r[-1]["outcome"] == "not-started" for r in refused)
    assert [r[0]["git_commit"] for r in runs if r[0]["plan_file"].endswith("fresh-plan.json")] == [second]


def test_the_lock_names_the_ci_job_that_holds_it(lab, tmp_path, monkeypatch):
    for k, v in (GITHUB_JOB | {"GITHUB_SHA": "0" * 40}).items():
        monkeypatch.setenv(k, v)
    state = load_desired_state([lab.desired_state_path])
    with Pool(state.access) as pool:
        node = state.host("node1")
        lock = SiteLock(state, node, session_runner(pool, node), lease=30)
        lock.acquire(0)
        try:
            text = lab.exec("node1", f"cat {LAB_MOUNT}/{dsau.PACKAGE_CSYNC_STATE}/lock.json").stdout
        finally:
            lock.release()
    record = json.loads(text)
    assert record["ci"]["system"] == "github" and record["ci"]["actor"] == "alice" and record["ci"]["run_id"] == "4242"
    assert record["ci"]["url"] == "https://git.example/dsau/lab-site/actions/runs/4242"
