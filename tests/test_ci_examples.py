"""The pipeline definitions of examples/ci are valid for their CI systems, their steps keep
csync's exit codes, and the pre-commit hook runs `csync validate`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.apply.lock import ci_identity

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "examples" / "ci"
GITHUB = CI / "github" / "csync.yml"
GITLAB = CI / "gitlab" / ".gitlab-ci.yml"
STEPS = CI / "csync-ci.sh"


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with the schema it vendors (works offline)."""
    exe = shutil.which("check-jsonschema") or pytest.fail("check-jsonschema is missing: pip install -e '.[test]'")
    return subprocess.run([exe, "--builtin-schema", schema, str(path)], capture_output=True, text=True, timeout=120)


def code_lines(path: Path) -> str:
    """The file without its comment lines."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def load(path: Path):
    return YAML(typ="safe").load(path.read_text())


@pytest.mark.parametrize("schema, path", [("vendor.github-workflows", GITHUB), ("vendor.gitlab-ci", GITLAB)])
def test_the_pipeline_definitions_validate_against_their_ci_schema(schema, path):
    r = check_jsonschema(schema, path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    "schema, path, breakage",
    [
        ("vendor.github-workflows", GITHUB, ("cancel-in-progress: false", "cancel-in-progress: {}")),
        ("vendor.gitlab-ci", GITLAB, ("resource_group: csync-site", "resource_group: [csync-site]")),
    ],
)
def test_the_schema_check_fails_a_broken_definition(schema, path, breakage, tmp_path):
    broken = tmp_path / path.name
    broken.write_text(path.read_text().replace(*breakage, 1))
    assert check_jsonschema(schema, broken).returncode == 1


def test_github_applies_and_drift_checks_one_at_a_time_per_site_and_never_cancels():
    jobs = load(GITHUB)["jobs"]
    groups = {name: job.get("concurrency") for name, job in jobs.items()}
    assert groups["apply"] == groups["drift"] == {"group": "csync-${{ vars.CSYNC_SITE || 'site' }}", "cancel-in-progress": False}
    assert load(GITHUB)["defaults"]["run"]["shell"] == "bash"  # -eo pipefail
    assert "|| true" not in code_lines(GITHUB)


def test_gitlab_applies_and_drift_checks_share_a_resource_group():
    doc = load(GITLAB)
    assert doc["apply"]["resource_group"] == doc["drift"]["resource_group"] == "csync-site"
    assert "|| true" not in code_lines(GITLAB)


def test_the_steps_script_is_what_both_pipelines_run():
    for path in (GITHUB, GITLAB):
        text = path.read_text()
        for step in (r'csync-ci\.sh"? pr', r"ci/csync-ci\.sh apply", r"ci/csync-ci\.sh drift"):
            assert re.search(step, text), f"{path.name} does not run {step}"
    assert subprocess.run(["bash", "-n", str(STEPS)]).returncode == 0
    assert "|| true" not in code_lines(STEPS)


@pytest.mark.parametrize("code", [0, 1, 2, 3, 5])
def test_the_drift_step_passes_csyncs_exit_code_through(tmp_path, code):
    """A fake csync that prints a plan and exits ``code``: the step exits with it, unchanged."""
    fake = tmp_path / "fake-csync"
    fake.write_text(f"#!/bin/sh\necho '### csync plan'\nexit {code}\n")
    fake.chmod(0o755)
    env = {**os.environ, "CSYNC": str(fake), "CSYNC_OUT": str(tmp_path / "out"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    r = subprocess.run(["bash", str(STEPS), "drift"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == code, r.stdout + r.stderr
    assert "### csync plan" in r.stdout and "### csync plan" in (tmp_path / "summary.md").read_text()
    if code == 2:
        assert "DRIFT" in r.stderr


def test_the_pre_commit_hook_runs_csync_validate(tmp_path):
    [hook] = YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "csync-validate" and hook["language"] == "python" and hook["pass_filenames"] is False
    argv = shlex.split(hook["entry"]) + list(hook.get("args", []))
    assert argv[:2] == ["csync", "validate"]
    scripts = re.search(r"\[project\.scripts\]\s*\n(.*)", (ROOT / "pyproject.toml").read_text()).group(1)
    assert scripts.startswith("csync = ")  # the entry's command is the console script pre-commit installs
    files = re.compile(hook["files"])
    assert files.search("desired-state/site.yaml") and files.search("sites/prod/desired-state/clients.yml")
    assert not files.search("docs/site.yaml")
    # run the entry as pre-commit does, from the repository's root (csync = python -m reconciler.cli.main)
    (tmp_path / "desired-state").mkdir()
    shutil.copy(ROOT / "desired-state" / "lab.yaml", tmp_path / "desired-state" / "lab.yaml")
    run = [sys.executable, "-m", "reconciler.cli.main", *argv[1:]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    ok = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and "valid: site lab" in ok.stdout, ok.stderr
    (tmp_path / "desired-state" / "lab.yaml").write_text((ROOT / "desired-state" / "lab.yaml").read_text().replace("port: 22", "port: '22'"))
    bad = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 3 and "lab.yaml:" in bad.stderr and "Traceback" not in bad.stderr


def test_the_ci_identity_names_job_actor_and_run():
    gh = ci_identity(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_RUN_ID": "7",
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_SHA": "abc",
            "GITHUB_ACTOR": "alice",
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_SERVER_URL": "https://git.example",
        }
    )
    assert gh == {
        "system": "github",
        "run_id": "7",
        "repository": "o/r",
        "sha": "abc",
        "actor": "alice",
        "ref": "refs/heads/main",
        "event_name": "push",
        "url": "https://git.example/o/r/actions/runs/7",
    }
    gl = ci_identity(
        {
            "GITLAB_CI": "true",
            "CI_JOB_ID": "9",
            "CI_PROJECT_PATH": "g/p",
            "CI_COMMIT_SHA": "def",
            "GITLAB_USER_LOGIN": "bob",
            "CI_JOB_URL": "https://gl.example/g/p/-/jobs/9",
            "CI_PIPELINE_SOURCE": "push",
        }
    )
    assert gl == {
        "system": "gitlab",
        "job_id": "9",
        "project_path": "g/p",
        "commit_sha": "def",
        "actor": "bob",
        "job_url": "https://gl.example/g/p/-/jobs/9",
        "pipeline_source": "push",
    }
