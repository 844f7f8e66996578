"""Serviceguard's -t preview of cluster operations: the script (run by a real /bin/sh against
fake Serviceguard commands), its parser, the rule that compares Serviceguard's prediction with
csync's, the planner taking the verdicts as facts, and the views. The lab's own Serviceguard
is in tests/lab/test_preview_lab.py."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from reconciler.domain import dsau
from reconciler.domain.preview import Preview, PreviewRequest, PreviewRun, has_preview, judge, refusals, release_tuple
from reconciler.driver import preview as driver
from reconciler.driver.transport import CommandResult
from reconciler.plan.kinds import preview_request
from reconciler.plan.planner import make_plan
from reconciler.views.plan import render_markdown, render_text
from tests.unit.sitefacts import converged, site
from tests.unit.test_package_decision import RUNNING, facts_with, view, with_intent
from tests.unit.test_planner import seed_facts

START = PreviewRequest("start-package:package.csync", "start", "csync", "node1", "node1")
HALT = PreviewRequest("halt-package:package.csync", "halt", "csync", "node1", "node1")
ENABLE = PreviewRequest("enable-switching:package.csync", "enable", "csync", "node1", "node1")
DONE = "cmrunpkg: Command preview completed successfully"
REFUSAL = (
    "cmrunpkg: Unable to run package csync on node node1: node switching is disabled for the package on this node (enable it with cmmodpkg -e -n node1 csync)."
)


def ran(*stdout: str, exit_code: int = 0, stderr: tuple[str, ...] = (), release: str = "A.11.20.00") -> PreviewRun:
    return PreviewRun(release=release, release_exit=0, ran=True, exit_code=exit_code, stdout=stdout, stderr=stderr)


# --- the rule --------------------------------------------------------------------------------


def test_start_agrees_when_serviceguard_predicts_starting_on_the_planned_node():
    p = judge(START, ran("package:csync|node:node1|action:starting", DONE))
    assert p.agrees is True and not p.blocks
    assert p.command == "cmrunpkg -t -n node1 csync" and p.expected == ("package:csync|node:node1|action:starting",)
    assert p.predicted == ("package:csync|node:node1|action:starting",) and p.release == "A.11.20.00"


def test_halt_agrees_on_the_owner_and_enable_on_a_running_package_predicts_no_change():
    assert judge(HALT, ran("package:csync|node:node1|action:halting", "cmhaltpkg: Command preview completed successfully")).agrees
    assert HALT.command == "cmhaltpkg -t csync"
    assert ENABLE.command == "cmmodpkg -e -t csync" and ENABLE.expected == ()
    assert judge(ENABLE, ran("cmmodpkg: Command preview completed successfully")).agrees


@pytest.mark.parametrize(
    "request_, lines",
    [
        (START, ("package:csync|node:node2|action:starting",)),  # another node
        (START, ("package:csync|node:node1|action:starting", "package:other|node:node1|action:halting")),  # more than csync's
        (START, ()),  # nothing would happen
        (HALT, ("package:csync|node:node2|action:halting",)),  # it runs elsewhere by now
        (ENABLE, ("package:csync|node:node2|action:starting",)),  # it halted meanwhile: AUTO_RUN would start it
    ],
)
def test_any_other_prediction_disagrees_and_blocks(request_, lines):
    done = f"{request_.argv[0]}: Command preview completed successfully"
    p = judge(request_, ran(*lines, done))
    assert p.agrees is False and p.blocks
    assert "Serviceguard predicts" in p.verdict and "csync" in p.verdict


def test_a_preview_that_does_not_say_it_completed_blocks():
    p = judge(ENABLE, ran("cmmodpkg: Unable to enable switching of package csync: something new"))
    assert p.blocks and p.verdict == "the preview exited 0 without saying 'cmmodpkg: Command preview completed successfully'"


def test_a_refused_preview_blocks_with_serviceguards_words():
    p = judge(START, ran(exit_code=1, stderr=(REFUSAL,)))
    assert p.blocks and p.exit_code == 1
    assert p.verdict == f"Serviceguard refuses it (exit 1): {REFUSAL}"
    assert p.lines == (REFUSAL,)


@pytest.mark.parametrize(
    "run, why",
    [
        (PreviewRun(error="connection lost during a command"), "could not run on node1: connection lost"),
        (PreviewRun(release="A.11.20.00", release_exit=0, ran=True, exit_code=None), "did not complete"),
    ],
)
def test_a_preview_that_could_not_run_or_finish_blocks(run, why):
    p = judge(START, run)
    assert p.blocks and why in p.verdict


def test_a_release_before_the_preview_has_none_shown_never_blocking():
    p = judge(START, PreviewRun(release="A.11.18.00", release_exit=0))
    assert p.agrees is None and not p.blocks
    assert p.verdict == "no preview on this release (A.11.18.00; -t from A.11.19)"


def test_an_unreadable_release_has_no_preview_and_says_what_cmversion_said():
    p = judge(START, PreviewRun(release="Serviceguard A.11.20", release_exit=0))
    assert p.agrees is None and p.verdict == "no preview: cannot tell the Serviceguard release (cmversion said 'Serviceguard A.11.20')"
    p = judge(START, PreviewRun(release="sh: cmversion: not found", release_exit=127))
    assert p.agrees is None and p.release is None
    assert p.verdict == ("no preview: cmversion was not found on node1 (sh: cmversion: not found), so csync cannot tell the Serviceguard release")


def test_a_cmversion_that_fails_blocks_with_its_message():
    p = judge(START, PreviewRun(release="cmversion: cannot connect to cmcld", release_exit=1))
    assert p.blocks and p.release is None
    assert p.verdict == "cmversion failed on node1 (exit 1): cmversion: cannot connect to cmcld"


@pytest.mark.parametrize(
    "text, expect",
    [
        ("A.11.20.00", (11, 20)),
        ("A.11.19", (11, 19)),
        ("A.12.00.10", (12, 0)),
        ("A.11.9", None),
        (" A.11.20.00", None),
        ("B.11.20.00", None),
        ("11.20", None),
        ("", None),
        (None, None),
    ],
)
def test_release_parsing(text, expect):
    assert release_tuple(text) == expect
    assert has_preview(text) == (None if expect is None else expect >= (11, 19))


def test_only_blocking_previews_are_refusals_keyed_by_operation_and_node():
    blocked = judge(START, ran(exit_code=1, stderr=(REFUSAL,)))
    fine = judge(HALT, ran("package:csync|node:node1|action:halting", "cmhaltpkg: Command preview completed successfully"))
    old = judge(ENABLE, PreviewRun(release="A.11.18.00", release_exit=0))
    r = refusals([blocked, fine, old])
    assert list(r) == [("start", "node1")]
    assert REFUSAL.rstrip(".") in r["start", "node1"] and "cmrunpkg -t -n node1 csync on node1, A.11.20.00" in r["start", "node1"]


# --- the script and its parser ------------------------------------------------------------------

NONCE = "0123456789abcdef0123456789abcdef"


def fake_serviceguard(tmp_path: Path, release: str | None, run_rc: int = 0) -> Path:
    """cmversion, cmrunpkg, cmhaltpkg and cmmodpkg that log their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    tools = {
        "cmrunpkg": f'echo "package:$4|node:$3|action:starting"; echo "cmrunpkg: Command preview completed successfully"; exit {run_rc}',
        "cmhaltpkg": 'echo "cmhaltpkg: Unable to halt package $2: package is not running." >&2; exit 1',
        "cmmodpkg": 'echo "cmmodpkg: Command preview completed successfully"',
    }
    if release is not None:
        tools["cmversion"] = f"echo '{release}'"
    for name, body in tools.items():
        f = bin_dir / name
        f.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n{body}\n')
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def run_script(tmp_path: Path, requests, release: str | None, **kw) -> tuple[list[PreviewRun], str]:
    bin_dir = fake_serviceguard(tmp_path, release, **kw)
    script = driver.preview_script(requests, NONCE, timeout=30, serviceguard_path=dsau.SERVICEGUARD_PATH).script
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["/bin/sh", "-s"], input=script.encode(), capture_output=True, env=env, timeout=60)
    result = CommandResult(done.returncode, done.stdout, done.stderr, 0.0)
    log = tmp_path / "calls"
    return driver.parse_preview(result, NONCE, len(requests)), log.read_text() if log.exists() else ""


def test_the_script_asks_cmversion_first_then_runs_every_preview_of_the_host(tmp_path):
    runs, calls = run_script(tmp_path, [START, HALT, ENABLE], "A.11.20.00")
    assert calls.splitlines() == ["cmversion ", "cmrunpkg -t -n node1 csync", "cmhaltpkg -t csync", "cmmodpkg -e -t csync"]
    start, halt, enable = runs
    assert start == ran("package:csync|node:node1|action:starting", DONE)
    assert (halt.exit_code, halt.stdout, halt.stderr) == (1, (), ("cmhaltpkg: Unable to halt package csync: package is not running.",))
    assert enable.stdout == ("cmmodpkg: Command preview completed successfully",) and enable.exit_code == 0
    assert [judge(r, run).agrees for r, run in zip([START, HALT, ENABLE], runs)] == [True, False, True]


@pytest.mark.parametrize("release", ["A.11.18.00", "A.11.09", "A.10.99.00"])
def test_before_the_preview_release_no_serviceguard_command_runs_with_t(tmp_path, release):
    runs, calls = run_script(tmp_path, [START], release)
    assert calls.splitlines() == ["cmversion "]
    assert runs == [PreviewRun(release=release, release_exit=0)]
    assert judge(START, runs[0]).agrees is None


@pytest.mark.parametrize("release", ["A.11.19.00", "A.11.19", "A.12.00.00"])
def test_from_the_preview_release_the_preview_runs(tmp_path, release):
    runs, _ = run_script(tmp_path, [START], release)
    assert runs[0].ran and judge(START, runs[0]).agrees


@pytest.mark.parametrize("release", [None, "Serviceguard A.11.20", "garbage"])
def test_an_unreadable_release_runs_no_preview(tmp_path, release):
    runs, calls = run_script(tmp_path, [START], release)
    assert "cmrunpkg" not in calls and not runs[0].ran
    assert judge(START, runs[0]).agrees is None


def test_a_cmversion_that_fails_runs_no_preview_and_blocks(tmp_path):
    bin_dir = fake_serviceguard(tmp_path, "A.11.20.00")
    (bin_dir / "cmversion").write_text(f'#!/bin/sh\necho "cmversion $*" >> {tmp_path / "calls"}\necho "cmversion: no cluster daemon" >&2\nexit 2\n')
    script = driver.preview_script([START], NONCE, timeout=30, serviceguard_path=dsau.SERVICEGUARD_PATH).script
    done = subprocess.run(["/bin/sh"], input=script.encode(), capture_output=True, timeout=60, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    [run] = driver.parse_preview(CommandResult(done.returncode, done.stdout, done.stderr, 0.0), NONCE, 1)
    assert (run.ran, run.release_exit, run.release) == (False, 2, "cmversion: no cluster daemon")
    assert (tmp_path / "calls").read_text() == "cmversion \n"
    assert judge(START, run).verdict == "cmversion failed on node1 (exit 2): cmversion: no cluster daemon"


def test_a_script_that_did_not_run_is_a_failed_preview_for_each_request():
    result = CommandResult(127, b"", b"sh: not found\n", 0.0)
    runs = driver.parse_preview(result, NONCE, 2)
    assert len(runs) == 2 and all(r.error and "sh: not found" in r.error for r in runs)
    assert judge(START, runs[0]).blocks


def test_markers_need_the_nonce():
    out = (f"\n@@{NONCE} release 0 A.11.20.00\n@@{'f' * 32} previews\n").encode()
    [run] = driver.parse_preview(CommandResult(0, out, b"", 0.0), NONCE, 1)
    assert run.release == "A.11.20.00" and not run.ran  # a forged marker does not count


def test_unreachable_hosts_are_not_contacted_again():
    class NoPool:
        def connect(self, host):  # pragma: no cover - must not be called
            raise AssertionError("contacted")

    state = site()
    runs = driver.run_previews(state, NoPool(), [START], {"node1": "connection refused"})  # type: ignore[arg-type]
    assert runs[START.action].error == "node1 did not answer the probe (connection refused)"


# --- the planner takes the verdicts as facts -------------------------------------------------------


def preview_of(plan, run: PreviewRun) -> list[Preview]:
    return [judge(r, run) for a in plan.cluster_actions() if (r := preview_request(a)) is not None]


def test_requests_come_from_the_plans_cluster_operations_dispatch_has_none():
    state = site()
    plan = make_plan(state, seed_facts(state))
    requests = [preview_request(a) for a in plan.cluster_actions()]
    assert requests == [START, None]  # start-package on node1; dispatch-member is not a Serviceguard command


def test_a_refused_start_is_blocked_and_nothing_that_depends_on_it_is_planned():
    state = site()
    facts = seed_facts(state)
    first = make_plan(state, facts)
    previews = preview_of(first, ran(exit_code=1, stderr=(REFUSAL,)))
    plan = make_plan(state, facts, previews=previews)
    assert plan.previews == tuple(previews)
    assert not plan.cluster_actions() and plan.package_node is None
    assert not any(a.depends_on for a in plan.actions)  # the dispatch and the copies of the inferred cluster key
    assert {a.kind for a in first.actions} - {a.kind for a in plan.actions} == {"start-package", "dispatch-member", "copy-key"}
    [blocked] = [f for f in plan.blocked if f.address == "package.csync"]
    assert blocked.host == "node1" and REFUSAL.rstrip(".") in blocked.message
    assert blocked.message.startswith("not starting package csync on node1: Serviceguard's preview (cmrunpkg -t -n node1 csync on node1")
    assert any(f.address == "member.node3" and "waits for the package" in f.message for f in plan.notices)
    assert plan.failover_ready_after is False


def test_a_start_predicted_elsewhere_is_blocked_not_moved():
    state = site()
    facts = seed_facts(state)
    previews = preview_of(make_plan(state, facts), ran("package:csync|node:node2|action:starting", DONE))
    plan = make_plan(state, facts, previews=previews)
    assert not plan.cluster_actions()
    assert any(
        "Serviceguard predicts package:csync|node:node2|action:starting, csync package:csync|node:node1|action:starting" in f.message for f in plan.blocked
    )


def test_a_refused_halt_leaves_the_package_running_and_blocked():
    state = with_intent(site(), "halted")
    facts = facts_with(state, view(**RUNNING), owner="node1")
    first = make_plan(state, facts)
    assert [a.kind for a in first.cluster_actions()] == ["halt-package"]
    previews = preview_of(first, ran("package:csync|node:node2|action:halting", "cmhaltpkg: Command preview completed successfully"))
    plan = make_plan(state, facts, previews=previews)
    assert not plan.cluster_actions()
    assert any(f.message.startswith("not halting package csync on node1: ") for f in plan.blocked)


def test_a_refused_enable_switching_is_blocked():
    state = site()
    facts = facts_with(state, view(**{**RUNNING, "autorun": "disabled"}), owner="node1")
    first = make_plan(state, facts)
    assert [a.kind for a in first.cluster_actions()] == ["enable-switching"]
    previews = preview_of(first, ran("package:csync|node:node2|action:starting", "cmmodpkg: Command preview completed successfully"))
    plan = make_plan(state, facts, previews=previews)
    assert not plan.cluster_actions()
    assert any(f.message.startswith("not enabling the switching of package csync: ") for f in plan.blocked)


@pytest.mark.parametrize("run", [ran("package:csync|node:node1|action:starting", DONE), PreviewRun(release="A.11.18.00", release_exit=0)])
def test_previews_that_do_not_block_change_nothing_but_the_record(run):
    """reconciler/pipeline.with_previews relies on it: it copies the plan rather than planning again."""
    state = site()
    facts = seed_facts(state)
    first = make_plan(state, facts)
    previews = preview_of(first, run)
    assert make_plan(state, facts, previews=previews) == first.model_copy(update={"previews": tuple(previews)})


def test_a_plan_without_cluster_operations_records_no_previews():
    state = site()
    assert make_plan(state, converged(state)).previews == ()


# --- the views ---------------------------------------------------------------------------------------


def test_views_show_serviceguards_prediction_beside_csyncs():
    state = site()
    facts = seed_facts(state)
    first = make_plan(state, facts)
    plan = first.model_copy(update={"previews": tuple(preview_of(first, ran("package:csync|node:node1|action:starting", DONE)))})
    text = render_text(plan)
    section = text[text.index("Cluster operations") :]
    assert (
        "  * package.csync  [start-package] on node1: cmrunpkg -n node1 csync && cmmodpkg -e csync\n"
        "      csync predicts:        package:csync|node:node1|action:starting\n"
        "      Serviceguard predicts: package:csync|node:node1|action:starting  "
        "(cmrunpkg -t -n node1 csync on node1, A.11.20.00: agrees)\n"
    ) in section
    assert "      Serviceguard:          no preview (not a Serviceguard command)" in section
    md = render_markdown(plan)
    assert ("  - Serviceguard predicts: `package:csync|node:node1|action:starting` (cmrunpkg -t -n node1 csync on node1, A.11.20.00: agrees)") in md
    assert "  - Serviceguard: no preview (not a Serviceguard command)" in md
    assert "Serviceguard:          not previewed" in render_text(first)


def test_views_list_an_operation_serviceguard_refused_as_not_planned():
    state = site()
    facts = seed_facts(state)
    plan = make_plan(state, facts, previews=preview_of(make_plan(state, facts), ran(exit_code=1, stderr=(REFUSAL,))))
    text = render_text(plan)
    assert "  x start-package:package.csync on node1: not planned (blocked by Serviceguard's preview)" in text
    assert f"      Serviceguard:          Serviceguard refuses it (exit 1): {REFUSAL}  (cmrunpkg -t -n node1 csync on node1, A.11.20.00: blocked)" in text
    md = render_markdown(plan)
    assert "- **not planned**: `start-package:package.csync` on node1, blocked by Serviceguard's preview" in md


def test_views_say_there_is_no_preview_on_an_old_release():
    state = site()
    facts = seed_facts(state)
    first = make_plan(state, facts)
    plan = first.model_copy(update={"previews": tuple(preview_of(first, PreviewRun(release="A.11.18.00", release_exit=0)))})
    assert "      Serviceguard:          no preview on this release (A.11.18.00; -t from A.11.19)" in render_text(plan)


def test_plan_json_round_trips_with_previews():
    from reconciler.plan.artefact import Plan

    state = site()
    facts = seed_facts(state)
    plan = make_plan(state, facts, previews=preview_of(make_plan(state, facts), ran(exit_code=1, stderr=(REFUSAL,))))
    assert Plan.from_json(plan.to_json()) == plan


def test_a_hung_preview_is_stopped_on_the_host_and_blocks(tmp_path):
    bin_dir = fake_serviceguard(tmp_path, "A.11.20.00")
    (bin_dir / "cmhaltpkg").write_text("#!/bin/sh\nsleep 60\n")
    script = driver.preview_script([HALT], NONCE, timeout=1, serviceguard_path=dsau.SERVICEGUARD_PATH).script
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    # its own session: the watchdog signals the script's process group, as sshd makes it
    done = subprocess.run(["/bin/sh", "-s"], input=script.encode(), capture_output=True, env=env, timeout=30, start_new_session=True)
    [run] = driver.parse_preview(CommandResult(done.returncode, done.stdout, done.stderr, 0.0), NONCE, 1)
    assert run.ran and run.exit_code is None and run.error == "timed out after 1 s; stopped on the host"
    assert judge(HALT, run).verdict == "the preview could not run on node1: timed out after 1 s; stopped on the host"


def test_a_hosts_output_reaches_the_plan_escaped_and_bounded():
    out = (
        f"\n@@{NONCE} release 0 A.11.20.00\x1b[2J\n@@{NONCE} previews\n\n@@{NONCE} begin 0\n" + "x\x1b]0;owned\x07\n" * 60 + f"\n@@{NONCE} end 0 1\n"
    ).encode()
    [run] = driver.parse_preview(CommandResult(0, out, b"", 0.0), NONCE, 1)
    assert run.release == "A.11.20.00\\x1b[2J" and run.exit_code == 1
    assert run.stdout[0] == "x\\x1b]0;owned\\x07" and len(run.stdout) == driver.MAX_LINES + 1
    assert run.stdout[-1] == "... (10 more lines)"


def test_a_preview_csync_could_not_ask_says_so():
    [message] = refusals([judge(START, PreviewRun(error="node1 did not answer the probe (connection refused)"))]).values()
    assert message == (
        "Serviceguard's preview (cmrunpkg -t -n node1 csync on node1) cannot confirm it: the preview could not run "
        "on node1: node1 did not answer the probe (connection refused). Not planned, nor what depends on it; plan again"
    )


def test_a_long_refusal_is_shortened_in_the_verdict_and_kept_whole_in_the_record():
    lines = tuple(f"cmrunpkg: reason {i}" for i in range(10))
    p = judge(START, ran(exit_code=1, stderr=lines))
    assert p.verdict == "Serviceguard refuses it (exit 1): cmrunpkg: reason 0; cmrunpkg: reason 1; cmrunpkg: reason 2; ... (7 more lines)"
    assert p.lines == lines
