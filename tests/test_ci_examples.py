"""The pipeline definitions of examples/ci are valid for their CI systems, their steps keep
csync's exit codes, and the pre-commit hook runs `csync validate`."""

from __future__ import annotations

import json
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


# --- a plan too big for a comment: post what fits, keep the rest as the artefact ------------------
GITHUB_COMMENT_LIMIT = 65_536  # characters; GitHub refuses a longer comment


@pytest.fixture(scope="module")
def big_plan(tmp_path_factory) -> dict[str, Path]:
    """A real plan whose Markdown csync cut: each of 300 clients holds another key (its own,
    each different) where the package's key belongs, 300 actions none of which group. Its
    JSON, its Markdown as csync prints it, and as a csync without the cap would."""
    from reconciler.plan.planner import make_plan
    from reconciler.views.plan import MARKDOWN_LIMIT, render_markdown
    from tests.unit.sitefacts import PKG_IP, converged, site, with_keys

    state = site(clients=300)
    facts = converged(state)
    for i in range(1, 301):
        facts[f"client{i}"] = with_keys(facts[f"client{i}"], **{PKG_IP: f"client-client{i}"})
    plan = make_plan(state, facts)
    where = tmp_path_factory.mktemp("big-plan")
    files = {"json": where / "plan.json", "markdown": where / "plan.md", "uncapped": where / "uncapped.md"}
    files["json"].write_text(plan.to_json())
    files["markdown"].write_text(render_markdown(plan))
    files["uncapped"].write_text(render_markdown(plan, limit=10**8))
    assert len(plan.actions) == 300 and len(files["uncapped"].read_text()) > MARKDOWN_LIMIT
    assert "Left out to fit a comment" in files["markdown"].read_text()
    return files


def planning_csync(path: Path, plan_json: Path, markdown: Path) -> Path:
    """A csync whose `plan` prints ``markdown`` and saves ``plan_json`` to --out (the probe is
    the one thing a test without hosts cannot do); `show` and the rest are csync itself."""
    path.write_text(f"""#!/bin/bash
case "$1" in
  validate) echo "valid" ;;
  plan)
    out=""
    while [ $# -gt 0 ]; do if [ "$1" = --out ]; then out=$2; fi; shift; done
    cp {shlex.quote(str(plan_json))} "$out"
    cat {shlex.quote(str(markdown))} ;;
  *) exec {shlex.quote(sys.executable)} -m reconciler.cli.main "$@" ;;
esac
""")
    path.chmod(0o755)
    return path


def fake_tool(path: Path, record: Path, take: str) -> Path:
    """A `gh` or `curl` that posts nothing: it copies the file given after ``take`` (gh's
    --body-file FILE, curl's --data @FILE) to ``record``."""
    path.write_text(f"""#!/bin/bash
while [ $# -gt 0 ]; do
  if [ "$1" = {take} ]; then cp "${{2#@}}" {shlex.quote(str(record))}; fi
  shift
done
""")
    path.chmod(0o755)
    return path


def plan_job_artefacts() -> dict[str, list[str]]:
    """The files each pipeline's plan job keeps as its artefact."""
    [upload] = [s for s in load(GITHUB)["jobs"]["plan"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    return {"github": upload["with"]["path"].split(), "gitlab": load(GITLAB)["plan"]["artifacts"]["paths"]}


def run_pr_and_post(tmp_path: Path, markdown: Path, plan_json: Path) -> dict:
    """The pull request's step on a plan, then the comment posted as GitHub's and GitLab's jobs post it."""
    (tmp_path / "desired-state").mkdir()
    (tmp_path / "desired-state" / "site.yaml").write_text("site: t\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir / "gh", tmp_path / "github-comment.md", "--body-file")
    fake_tool(bin_dir / "curl", tmp_path / "gitlab-note.json", "--data")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CSYNC", "GITHUB_", "CI_", "GITLAB"))}
    env = base | {
        "CSYNC": str(planning_csync(tmp_path / "csync", plan_json, markdown)),
        "PYTHONPATH": os.pathsep.join(sys.path),
        "CSYNC_STATE": "desired-state",
        "CSYNC_OUT": "csync-out",
        "CSYNC_ARTIFACT": "csync-plan-0123abc",
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://git.example",
        "GITHUB_REPOSITORY": "org/site",
        "GITHUB_RUN_ID": "77",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    pr = subprocess.run(["bash", str(STEPS), "pr"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert pr.returncode == 0, pr.stdout + pr.stderr
    [post] = [s["run"] for s in load(GITHUB)["jobs"]["plan"]["steps"] if "gh pr comment" in s.get("run", "")]
    github = subprocess.run(["bash", "-c", post], cwd=tmp_path, env=env | {"PR": "12"}, capture_output=True, text=True, timeout=60)
    assert github.returncode == 0, github.stderr
    note = "\n".join(load(GITLAB)["plan"]["after_script"])
    gitlab_env = env | {"CSYNC_GITLAB_TOKEN": "t", "CI_API_V4_URL": "https://gl.example/api/v4", "CI_PROJECT_ID": "3", "CI_MERGE_REQUEST_IID": "5"}
    gitlab = subprocess.run(["bash", "-c", note], cwd=tmp_path, env=gitlab_env, capture_output=True, text=True, timeout=60)
    assert gitlab.returncode == 0, gitlab.stderr
    return {
        "comment": (tmp_path / "csync-out" / "comment.md").read_text(),
        "github": (tmp_path / "github-comment.md").read_text(),
        "gitlab": json.loads((tmp_path / "gitlab-note.json").read_text())["body"],
    }


def test_a_plan_csync_cut_to_fit_is_posted_and_the_artefact_holds_the_whole_plan(tmp_path, big_plan):
    posted = run_pr_and_post(tmp_path, big_plan["markdown"], big_plan["json"])
    comment = posted["comment"]
    assert posted["github"] == posted["gitlab"] == comment  # both pipelines post it as it is
    assert len(comment) <= GITHUB_COMMENT_LIMIT
    assert big_plan["markdown"].read_text() in comment  # csync's Markdown whole, with what it left out
    assert "Left out to fit a comment" in comment and "Cut to fit" not in comment
    # the comment names the artefact, links the run that holds it, and names its files
    assert "**The whole plan** is the artefact `csync-plan-0123abc` of [this run](https://git.example/org/site/actions/runs/77)" in comment
    assert "`plan.json` (the plan a merge applies, per action), `plan.txt` (every action" in comment
    # both pipelines keep the JSON plan (and the text of every action), and the step wrote them
    out = tmp_path / "csync-out"
    for pipeline, paths in plan_job_artefacts().items():
        assert {"csync-out/plan.json", "csync-out/plan.txt", "csync-out/plan.md"} <= set(paths), pipeline
        assert all((tmp_path / p).is_file() for p in paths), pipeline
    assert (out / "plan.json").read_text() == big_plan["json"].read_text()
    text = (out / "plan.txt").read_text()
    assert len(re.findall(r"^  -/\+ client\.client\d+\.key\[root-", text, re.M)) == 300  # `csync show --detail`: every action, one block each
    # GitHub: the artefact is uploaded before the comment that links to it is posted
    steps = [s.get("name", "") for s in load(GITHUB)["jobs"]["plan"]["steps"]]
    assert steps.index("Keep the plan (applied after the merge) and the whole plan as text") < steps.index("Post the plan as the pull request's comment")


def test_a_markdown_plan_too_long_for_a_comment_is_cut_and_points_to_the_artefact(tmp_path, big_plan):
    """A csync that did not cap its Markdown (an older one): the step still posts a comment that fits."""
    posted = run_pr_and_post(tmp_path, big_plan["uncapped"], big_plan["json"])
    comment = posted["comment"]
    assert posted["github"] == comment and len(comment) <= GITHUB_COMMENT_LIMIT
    uncapped = big_plan["uncapped"].read_text()
    shown = comment.split("<!-- csync-plan -->\n", 1)[1].split("\n\n> **Cut to fit a comment:**", 1)[0]
    assert uncapped.startswith(shown + "\n") and len(shown) > 50_000  # its first whole lines
    assert f"the Markdown plan is {len(uncapped.encode())} bytes" in comment
    assert "the artefact `csync-plan-0123abc`" in comment
