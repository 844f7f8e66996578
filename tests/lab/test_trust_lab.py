"""`csync trust` against the lab: the prediction from facts equals the live cfrun/cfagent
checks, cell by cell, for fresh, seed and hand-made breakages; the command line's exit
codes, JSON and HTML; the HTML page rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.driver import commands
from reconciler.driver.transport import Pool
from reconciler.trust.live import HostRun, TrustView, assess, interpret

pytestmark = pytest.mark.lab
USERLANDS = ("default", "hpux")  # issue 17: these run under both userlands of the lab

PP = "/var/opt/dsau/cfengine/ppkeys"
INPUTS = "/var/opt/dsau/cfengine/inputs"
PKG = "127.0.10.10"
CLIENT = {f"client{i}": f"127.0.10.{20 + i}" for i in range(1, 5)}


def csync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], capture_output=True, text=True, timeout=180)


def sh(lab, host: str, line: str) -> None:
    r = lab.exec(host, line)
    assert r.returncode == 0, f"{host}: {line}: {r.stderr}"


def sh_out(lab, host: str, line: str) -> str:
    r = lab.exec(host, line)
    assert r.returncode == 0, f"{host}: {line}: {r.stderr}"
    return r.stdout


def checked(lab) -> TrustView:
    state = load_desired_state([lab.desired_state_path])
    with Pool(state.access) as pool:
        return assess(state, pool, live=True)


def failing(view: TrustView) -> set[tuple[str, str]]:
    """The predicted failures: (member, client) for cfrun, ("cfagent", client)."""
    r = view.report
    cells = {(m, c) for m in r.members for c in r.clients if r.cfrun[m][c].ok is False}
    return cells | {("cfagent", c) for c in r.clients if r.cfagent[c].ok is False}


def assert_prediction_equals_live(view: TrustView) -> None:
    """Every cell predicted (none unknown), checked live, and the same, for the same reason."""
    r, live = view.report, view.live
    assert live is not None and live.errors == ()
    for m in r.members:
        for c in r.clients:
            predicted, got = r.cfrun[m][c], live.cfrun[m][c]
            assert got is not None and predicted.ok is not None, (m, c)
            assert predicted.ok == got.ok, f"cfrun {m} -> {c}: predicted {predicted.problems or 'ok'}, live {got.line}"
    for c in r.clients:
        predicted, got = r.cfagent[c], live.cfagent[c]
        assert got is not None and predicted.ok is not None, c
        assert predicted.ok == got.ok, f"cfagent on {c}: predicted {predicted.problems or 'ok'}, live {got.line}"
    assert view.disagreements == ()


def test_fresh_is_failover_ready_and_every_live_check_passes(reseed):
    view = checked(reseed("fresh"))
    assert_prediction_equals_live(view)
    assert failing(view) == set() and view.failover_ready and view.reasons == ()
    assert len([x for row in view.live.cfrun.values() for x in row.values() if x.ok]) == 3 * 4


def test_seed_predicts_exactly_what_cfrun_and_cfagent_do(reseed):
    view = checked(reseed("seed"))
    assert_prediction_equals_live(view)
    assert failing(view) == {("node2", "client1")} | {("node3", c) for c in CLIENT} | {("cfagent", c) for c in CLIENT}
    live = view.live
    assert live.cfrun["node2"]["client1"].where == "remote" and live.cfrun["node2"]["client1"].detail == "mismatch"
    assert live.cfrun["node3"]["client3"].path == f"{PP}/root-{CLIENT['client3']}.pub"
    assert live.cfagent["client2"].where == "local"  # its missing package key shows before the halted package
    assert live.cfagent["client1"].where == "unreachable"
    assert {t.member: t.can_take_over for t in view.report.takeover} == {"node1": True, "node2": True, "node3": False}
    assert not view.failover_ready


def test_a_missing_member_key_on_one_client(reseed):
    lab = reseed("fresh")
    sh(lab, "client3", f"rm {PP}/root-127.0.10.2.pub")
    view = checked(lab)
    assert_prediction_equals_live(view)
    assert failing(view) == {("node2", "client3")}
    assert (
        view.live.cfrun["node2"]["client3"].line == f"cfrun client3: BAD: key could not be accepted on trust [remote {PP}/root-127.0.10.2.pub missing]"
    )  # as cfrun.hosts writes it
    assert [t.can_take_over for t in view.report.takeover] == [True, True, True]
    assert view.reasons == ("1 cfrun pair(s) would fail or are unknown",)


def test_a_stale_client_key_on_one_member(reseed):
    lab = reseed("fresh")
    sh(lab, "node2", f"cp {PP}/root-{CLIENT['client2']}.pub {PP}/root-{CLIENT['client1']}.pub")
    view = checked(lab)
    assert_prediction_equals_live(view)
    assert failing(view) == {("node2", "client1")}
    assert view.live.cfrun["node2"]["client1"].where == "local" and view.live.cfrun["node2"]["client1"].detail == "mismatch"
    takeover = {t.member: t for t in view.report.takeover}
    assert takeover["node2"].can_take_over is False and "client1" in takeover["node2"].problems[0]


def test_an_unconfigured_member(reseed):
    lab = reseed("fresh")
    sh(lab, "node2", f"rm -f {PP}/* && cfkey")  # a member that never got the cluster key nor any client's
    view = checked(lab)
    assert_prediction_equals_live(view)
    assert failing(view) == {("node2", c) for c in CLIENT}
    assert "does not hold the cluster key" in {t.member: t for t in view.report.takeover}["node2"].problems[0]


def test_a_failover_to_an_unconfigured_member_breaks_cfagent_on_the_server_side(reseed):
    lab = reseed("seed")
    sh(lab, "node1", "cmrunpkg -n node3 csync")
    view = checked(lab)
    assert_prediction_equals_live(view)
    assert {("cfagent", c) for c in CLIENT} <= failing(view)
    assert view.live.cfagent["client3"].where == "remote"  # node3 lacks the client's key
    assert view.report.server == "node3"


def cfagent_check_on(lab, client: str) -> tuple[HostRun, float]:
    """csync's live cfagent check on one client, as `trust --live` runs it: (its result, seconds)."""
    state = load_desired_state([lab.desired_state_path])
    host = next(c for c in state.clients if c.name == client)
    command = commands.cfagent_check(state.server_addresses, commands.served_file(state), cfengine_path=state.platform.cfengine_path)
    with Pool(state.access) as pool:
        session = pool.connect(host)
        start = time.monotonic()
        result = session.run_script(command, timeout=state.access.command_timeout)
        seconds = time.monotonic() - start
    return interpret(client, "cfagent", list(state.server_addresses), result.exit_code, result.stdout, result.stderr), seconds


def client_files(lab) -> dict[str, dict[str, bytes]]:
    """Every client's key store and inputs, file by file."""
    out = {}
    for c in CLIENT:
        for d in (PP, INPUTS):
            out.update({f"{c}:{p}": p.read_bytes() for p in sorted(lab.host_path(c, d).iterdir())})
    return out


def test_a_client_whose_key_the_master_lacks_fails_fast_and_the_check_changes_nothing(reseed):
    lab = reseed("fresh")
    sh(lab, "node1", f"rm {PP}/root-{CLIENT['client3']}.pub")
    before = client_files(lab)
    view = checked(lab)
    assert_prediction_equals_live(view)
    assert failing(view) == {("node1", "client3"), ("cfagent", "client3")}
    got = view.live.cfagent["client3"]
    assert (got.where, got.path, got.detail) == ("remote", f"{PP}/root-{CLIENT['client3']}.pub", "missing")
    # a refusal, not a hang: well under the lab cfagent's own limit (15 s) and the check's watchdog
    run, seconds = cfagent_check_on(lab, "client3")
    assert run.problems == () and not run.results[PKG].ok and seconds < 10, seconds
    # the check wrote only in its private directory, which is gone
    assert client_files(lab) == before
    for c in CLIENT:
        assert sh_out(lab, c, "ls -d /tmp/csync-cfagent.* 2>/dev/null; true") == ""


def test_a_wrong_master_key_on_a_client_fails_its_cfagent_check(reseed):
    lab = reseed("fresh")
    sh(lab, "client2", f"cp {PP}/localhost.pub {PP}/root-{PKG}.pub")  # its own key where the cluster key belongs
    view = checked(lab)
    assert_prediction_equals_live(view)
    assert failing(view) == {("cfagent", "client2")}
    got = view.live.cfagent["client2"]
    assert (got.where, got.path, got.detail) == ("local", f"{PP}/root-{PKG}.pub", "mismatch")


def test_the_verdict_is_the_copy_a_master_that_does_not_serve_it_disagrees(reseed):
    lab = reseed("fresh")
    sh(lab, "node1", f"rm /csync/{dsau.PACKAGE_MASTER_INPUTS}/update.conf")  # keys all fine, but nothing to copy
    view = checked(lab)
    assert failing(view) == set() and view.live.errors == ()
    assert {(d.check, d.client) for d in view.disagreements} == {("cfagent", c) for c in CLIENT}
    d = view.disagreements[0]
    assert d.why.startswith("predicted ok, but the live check failed: cfagent 127.0.10.10: BAD: unable to stat file")
    assert d.live_line.endswith(f"[remote /csync/{dsau.PACKAGE_MASTER_INPUTS}/update.conf missing]")


def test_a_private_key_csync_cannot_see_is_reported_as_a_disagreement(reseed):
    lab = reseed("fresh")
    # client2's key pair replaced, its old public key put back: csync reads only the public one.
    sh(lab, "client2", f"cp {PP}/localhost.pub /tmp/old.pub && cfkey >/dev/null && cp /tmp/old.pub {PP}/localhost.pub")
    view = checked(lab)
    assert failing(view) == set() and view.report.failover_ready
    assert {(d.check, d.member, d.client) for d in view.disagreements} == {("cfrun", m, "client2") for m in ("node1", "node2", "node3")} | {
        ("cfagent", None, "client2")
    }
    assert all(d.message.endswith("(a bug in csync or a fact csync does not see)") for d in view.disagreements)
    assert not view.failover_ready
    done = csync("trust", "-f", str(lab.desired_state_path), "--live", "--format", "json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["failover_ready"] is False and doc["predicted_failover_ready"] is True and len(doc["disagreements"]) == 4


def test_a_stopped_client_is_unknown_and_exits_1(reseed):
    lab = reseed("fresh")
    lab.node_down("client4")
    view = checked(lab)
    r = view.report
    assert r.unreachable.keys() == {"client4"}
    assert {r.cfrun[m]["client4"].ok for m in r.members} == {None} and r.cfagent["client4"].ok is None
    assert view.live.cfrun["node1"]["client4"].where == "unreachable" and view.live.cfagent["client4"] is None
    assert view.disagreements == () and view.live.errors == ()
    done = csync("trust", "-f", str(lab.desired_state_path))
    assert done.returncode == 1 and done.stdout.startswith("failover-ready: no: 1 host(s) did not answer: client4")
    assert "unreachable: client4:" in done.stdout


def test_a_live_check_that_does_not_run_or_answers_garbage_is_a_problem_not_a_result(reseed):
    lab = reseed("fresh")
    sh(lab, "client1", "rm /usr/local/sbin/cfagent")
    # found first on the path: a cfrun whose output csync cannot place
    sh(lab, "node2", "printf '#!/bin/sh\\necho cfrun: warming up\\nexit 1\\n' > /opt/dsau/sbin/cfrun && chmod 755 /opt/dsau/sbin/cfrun")
    view = checked(lab)
    assert view.live.cfagent["client1"] is None and {x for x in view.live.cfrun["node2"].values()} == {None}
    assert view.live.errors[0].startswith("client1: cfagent: not found (searched /opt/dsau/sbin:")
    assert "node2: unexpected line: 'cfrun: warming up'" in view.live.errors
    assert view.disagreements == () and view.report.failover_ready and not view.failover_ready
    done = csync("trust", "-f", str(lab.desired_state_path), "--live")
    assert done.returncode == 1 and "  problem: node2: no cfrun line for client1" in done.stdout


def test_the_plans_failover_prediction_holds_after_apply(reseed, tmp_path):
    lab = reseed("seed")
    path = str(lab.desired_state_path)
    plan = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "plan", "-f", path, "--format", "json"], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["failover_ready_after"] is True
    applied = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "apply", "-f", path, "--auto-approve", "--allow-cluster-ops"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    view = checked(lab)
    assert_prediction_equals_live(view)
    assert view.failover_ready and failing(view) == set()


def test_a_standalone_master(lab_factory):
    lab = lab_factory("standalone", members=1, clients=2)
    sh(lab, "client2", f"rm {PP}/root-127.0.10.1.pub")
    view = checked(lab)
    assert_prediction_equals_live(view)
    assert failing(view) == {("master", "client2"), ("cfagent", "client2")}


# --- the command line -----------------------------------------------------------------------------


def test_cli_fresh_exits_0_with_the_verdict_first(reseed):
    lab = reseed("fresh")
    done = csync("trust", "-f", str(lab.desired_state_path), "--live")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "failover-ready: yes (predicted from the facts and confirmed by the live checks)"
    assert re.search(r"^  client1\.\.client4 \(4\)\s+ok\s+ok\s+ok\s+ok$", done.stdout, re.M), done.stdout
    assert "every live check agrees with the prediction" in done.stdout


def test_cli_seed_exits_2_and_groups_alike_clients(reseed):
    lab = reseed("seed")
    done = csync("trust", "-f", str(lab.desired_state_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("failover-ready: no: the package is not running; ")
    assert re.search(r"^  client3, client4 \(2\)\s+ok\s+ok\s+FAIL\s+FAIL$", done.stdout, re.M), done.stdout
    assert "      node3: node3 lacks root-<client>.pub (the key of <client>); <client> lacks root-127.0.10.3.pub (the key of node3)" in done.stdout
    unwritable = csync("trust", "-f", str(lab.desired_state_path), "--format", "html", "-o", "/proc/csync-trust.html")
    assert unwritable.returncode == 1 and unwritable.stderr.startswith("Error: cannot write /proc/csync-trust.html")


def test_cli_json_shape_with_live(reseed):
    lab = reseed("seed")
    done = csync("trust", "-f", str(lab.desired_state_path), "--live", "--format", "json")
    assert done.returncode == 2, done.stderr
    doc = json.loads(done.stdout)
    assert doc["failover_ready"] is False and doc["disagreements"] == [] and doc["live"]["errors"] == []
    assert len(doc["cfrun"]) == 12 and len(doc["cfagent"]) == 4 and len(doc["takeover"]) == 3
    cell = next(x for x in doc["cfrun"] if (x["member"], x["client"]) == ("node2", "client1"))
    assert cell["ok"] is False and cell["live"]["ok"] is False and cell["causes"][0]["kind"] == "other-key"
    assert {x["client"]: x["ok"] for x in doc["cfagent"]} == {c: False for c in CLIENT}


def test_cli_html_is_self_contained_and_rendered_by_chromium(reseed, tmp_path):
    lab = reseed("seed")
    page = tmp_path / "trust.html"
    done = csync("trust", "-f", str(lab.desired_state_path), "--live", "--format", "html", "-o", str(page))
    assert done.returncode == 2, done.stderr
    assert done.stdout.splitlines()[0].startswith("failover-ready: no") and "Wrote the html report" in done.stdout
    html = page.read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", html, re.I) and "<script" not in html
    shot = tmp_path / "trust.png"
    screenshot(page, shot, tmp_path / "profile")
    from PIL import Image

    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1100, 900)
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, grid and banner, not a blank page
    by_colour = {c: n for n, c in colours}
    green, red = by_colour.get((0x34, 0xA8, 0x53), 0), by_colour.get((0xD9, 0x30, 0x25), 0)
    assert green > 1000 and red > 1000, (green, red)  # the grid's ok and FAIL cells are drawn


def screenshot(page: Path, png: Path, profile: Path, size: tuple[int, int] = (1100, 900)) -> None:
    """Headless Chromium (Debian's `chromium`; --no-sandbox since the tests run as root)."""
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed: run scripts/setup-system.sh (apt-get install chromium)"
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
