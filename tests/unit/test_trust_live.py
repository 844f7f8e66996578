"""`csync trust --live` without hosts: the cfrun/cfagent output parser, the comparison with the
prediction, the verdict, the grouped text view, JSON and the self-contained HTML page."""

from __future__ import annotations

import json
import re

from reconciler.driver import commands
from reconciler.trust.live import (
    LiveReport,
    LiveResult,
    TrustView,
    compare,
    interpret,
    parse_cfagent_output,
    parse_check_output,
    verdict,
    without_cfrun_banners,
)
from reconciler.trust.predict import trust_report
from reconciler.views.trust import (
    client_label,
    group_clients,
    render_html,
    render_json,
    render_text,
    verdict_line,
)
from tests.unit.sitefacts import (
    PKG_IP,
    client_ip,
    converged,
    member_ip,
    site,
    with_keys,
)
from tests.unit.test_planner import seed_facts

PP = "/var/opt/dsau/cfengine/ppkeys"
A, B, C = "127.0.10.21", "127.0.10.22", "127.0.10.23"

# docs/LAB.md's samples of the output grammar
SAMPLES = f"""cfrun {A}: ok
cfrun {B}: BAD: key could not be accepted on trust [remote {PP}/root-127.0.10.3.pub missing]
cfrun {C}: Key-authentication for {C} failed [local {PP}/root-{C}.pub mismatch]
"""


def test_parses_every_line_of_the_grammar():
    results, problems = parse_check_output("cfrun", SAMPLES, [A, B, C])
    assert problems == []
    assert results[A] == LiveResult(ok=True, line=f"cfrun {A}: ok")
    assert results[B] == LiveResult(
        ok=False,
        line=SAMPLES.splitlines()[1],
        message="BAD: key could not be accepted on trust",
        where="remote",
        path=f"{PP}/root-127.0.10.3.pub",
        detail="missing",
    )
    assert (results[C].where, results[C].detail, results[C].message) == ("local", "mismatch", f"Key-authentication for {C} failed")


def test_parses_unreachable_with_its_free_text_reason():
    line = f"cfagent {PKG_IP}: Couldn't connect to {PKG_IP} [unreachable package csync is not running]"
    results, problems = parse_cfagent_output(f"{line}\ncsync-cfagent {PKG_IP} absent 0 30\n", [PKG_IP])
    assert problems == [] and results[PKG_IP].where == "unreachable"
    assert results[PKG_IP].detail == "package csync is not running" and results[PKG_IP].path == ""


def test_malformed_lines_are_problems_never_results():
    text = (
        "Warning: something chatty\n"
        f"cfrun {A}: ok\n"
        f"cfrun {B}: BAD: keys did not match [remote somewhere odd]\n"  # a file detail must be '<path> missing|mismatch|unreadable'
        f"cfrun {C}: BAD: no bracket\n"
        "\n"
    )
    results, problems = parse_check_output("cfrun", text, [A, B, C])
    assert list(results) == [A]
    assert problems == [
        "unexpected line: 'Warning: something chatty'",
        "unexpected remote detail for 127.0.10.22: 'somewhere odd'",
        f"unexpected line: 'cfrun {C}: BAD: no bracket'",
        f"no cfrun line for {B}",
        f"no cfrun line for {C}",
    ]


def test_a_target_answered_twice_or_not_asked_for_is_not_trusted():
    text = f"cfrun {A}: ok\ncfrun {A}: BAD: keys did not match [remote {PP}/root-1.pub mismatch]\ncfrun 10.9.9.9: ok\ncfagent {B}: ok\n"
    results, problems = parse_check_output("cfrun", text, [A, B])
    assert results == {}
    assert problems == [
        "a line for 10.9.9.9, which was not asked for: 'cfrun 10.9.9.9: ok'",
        f"a cfagent line in cfrun's output: 'cfagent {B}: ok'",
        f"2 cfrun lines for {A}; trusting none",
        f"no cfrun line for {B}",
    ]


def test_truncated_output_leaves_the_rest_without_a_result():
    results, problems = parse_check_output("cfrun", SAMPLES[: SAMPLES.index(f"cfrun {C}") + 12], [A, B, C])
    assert set(results) == {A, B} and problems[-1] == f"no cfrun line for {C}"


def test_interpret_maps_exit_codes():
    missing = interpret("node1", "cfrun", [A], commands.LIVE_TOOL_MISSING, b"", b"cfrun: not found (searched x)\n")
    assert missing.error == "cfrun: not found (searched x)" and missing.results == {}
    usage = interpret("node1", "cfrun", [A], 2, b"", b"cfrun: bad\nusage: cfrun [-T SECONDS] ADDRESS...\n")
    assert usage.error == "cfrun exited 2: usage: cfrun [-T SECONDS] ADDRESS..."
    # cfagent exits 0 whatever its copy did (cfengine 2): the check's verdict is the copy
    failed = interpret(
        "node1",
        "cfagent",
        [PKG_IP],
        0,
        f"cfagent {PKG_IP}: BAD: keys did not match [remote {PP}/root-1.pub mismatch]\ncsync-cfagent {PKG_IP} absent 0 30\n".encode(),
        b"",
    )
    assert failed.problems == () and failed.results[PKG_IP].detail == "mismatch"
    setup = interpret("node1", "cfagent", [PKG_IP], 3, b"", b"mkdir: cannot create directory '/tmp/csync-cfagent.1': File exists\n")
    assert setup.error == "cfagent exited 3: mkdir: cannot create directory '/tmp/csync-cfagent.1': File exists" and setup.results == {}
    as_cfengine = interpret("node1", "cfrun", [A, B, C], 0, SAMPLES.encode(), b"")  # cfrun exits 0 whatever happened
    assert as_cfengine.problems == () and len(as_cfengine.results) == 3
    ok = interpret("node1", "cfrun", [A, B, C], 1, SAMPLES.encode(), b"")
    assert ok.error is None and ok.problems == () and len(ok.results) == 3


def test_cfruns_questions_and_notices_are_not_results():
    text = (
        f"WARNING - You do not have a public key from host {A} = {A}\n"
        "          Do you want to accept one on trust? (yes/no)\n\n"
        f"--> cfrun {A}: Not authorized to trust the server={A}'s public key (trustkey=false) [local {PP}/root-{A}.pub unreadable]\n"
        f"Accepting public key from {B}\ncfrun {B}: ok\n"
    )
    results, problems = parse_check_output("cfrun", text, [A, B])
    assert problems == [] and results[B].ok and (results[A].where, results[A].detail) == ("local", "unreadable")
    banner = f"cfrun(3):         .......... [ Hailing {A} ] ..........\n"
    assert parse_check_output("cfrun", banner + f"cfrun {A}: ok\n", [A]) == ({A: LiveResult(ok=True, line=f"cfrun {A}: ok")}, [])
    assert without_cfrun_banners(banner + f"--> cfrun {A}: ok\n" + banner) == f"--> cfrun {A}: ok\n"


def test_live_commands_are_quoted_and_refuse_unsafe_values():
    script = commands.cfrun_check([A, B], cfengine_dir="/var/opt/site cf").script
    assert "k='/var/opt/site cf/ppkeys'" in script  # the site's cfengine directory, quoted
    # cfengine 2's syntax; never -T (it stores keys)
    assert [line for line in script.splitlines() if line.startswith("cfrun")] == ["cfrun -f \"$f\" <<'CSYNC_ANSWERS' &"]
    assert f"{A} {A} root-{A}.pub\n{B} {B} root-{B}.pub\nCSYNC_TARGETS" in script and "maxchild = " in script
    for bad in (["1.2.3.4; rm -rf /"], []):
        try:
            commands.cfrun_check(bad, cfengine_dir="/var/opt/dsau/cfengine")
        except commands.UnsafeValue:
            continue
        raise AssertionError(f"accepted {bad}")


# --- comparison -------------------------------------------------------------------------------


def live_from(report, overrides: dict | None = None) -> LiveReport:
    """A live report that says exactly what ``report`` predicts, cell by cell, with the
    predicted first cause as the live complaint; ``overrides`` replaces cells."""

    def line(tool, chk, address):
        if chk.ok:
            return LiveResult(ok=True, line=f"{tool} {address}: ok")
        cause = chk.causes[0]
        if cause.kind == "no-server":
            return LiveResult(ok=False, line="x", where="unreachable", detail="package csync is not running")
        where = "local" if cause.host in (report.members + (tool,)) or (tool == "cfagent" and cause.host in report.clients) else "remote"
        return LiveResult(ok=False, line="x", where=where, path=f"{PP}/{cause.file}", detail="missing" if cause.kind == "missing" else "mismatch")

    addr = report.addresses
    cfrun = {m: {c: line("cfrun", report.cfrun[m][c], addr[c]) for c in report.clients} for m in report.members}
    cfagent = {c: line("cfagent", report.cfagent[c], report.server_address) for c in report.clients}
    for (m, c), result in (overrides or {}).items():
        if m is None:
            cfagent[c] = result
        else:
            cfrun[m][c] = result
    return LiveReport(cfrun=cfrun, cfagent=cfagent)


def test_a_live_check_that_says_what_was_predicted_agrees():
    state = site()
    report = trust_report(state, seed_facts(state))
    assert compare(report, live_from(report)) == []


def test_an_unexpected_live_failure_is_a_disagreement_naming_its_line():
    state = site()
    report = trust_report(state, converged(state))
    bad = LiveResult(
        ok=False,
        line=f"cfrun {client_ip(1)}: BAD: keys did not match [remote {PP}/root-{member_ip(1)}.pub mismatch]",
        where="remote",
        path=f"{PP}/root-{member_ip(1)}.pub",
        detail="mismatch",
    )
    [d] = compare(report, live_from(report, {("node1", "client1"): bad}))
    assert (d.check, d.member, d.client, d.predicted, d.live) == ("cfrun", "node1", "client1", "ok", "FAIL")
    assert d.message.startswith("cfrun node1 -> client1: predicted ok, but the live check failed: cfrun")
    assert d.message.endswith("(a bug in csync or a fact csync does not see)")


def test_an_unexpected_live_success_is_a_disagreement():
    state = site()
    facts = converged(state)
    facts["client2"] = with_keys(facts["client2"], drop=(PKG_IP,))
    report = trust_report(state, facts)
    [d] = compare(report, live_from(report, {(None, "client2"): LiveResult(ok=True, line="cfagent: ok")}))
    assert d.where == "cfagent on client2" and "predicted to fail" in d.why and "but the live check succeeded" in d.why


def test_a_failure_for_another_reason_is_a_disagreement():
    state = site()
    facts = converged(state)
    facts["node2"] = with_keys(facts["node2"], drop=(client_ip(1),))
    report = trust_report(state, facts)
    other = LiveResult(ok=False, line="other", where="local", path=f"{PP}/localhost.priv", detail="unreadable")
    [d] = compare(report, live_from(report, {("node2", "client1"): other}))
    assert d.why.startswith("both fail, but the live failure has no predicted cause")
    # the predicted file, on the right host, is an explanation
    same = LiveResult(ok=False, line="same", where="local", path=f"{PP}/root-{client_ip(1)}.pub", detail="missing")
    assert compare(report, live_from(report, {("node2", "client1"): same})) == []
    # ... but not on the other host
    wrong_side = LiveResult(ok=False, line="w", where="remote", path=f"{PP}/root-{client_ip(1)}.pub", detail="missing")
    assert len(compare(report, live_from(report, {("node2", "client1"): wrong_side}))) == 1


def test_unknown_cells_and_missing_live_results_are_not_compared():
    state = site()
    report = trust_report(state, converged(state))
    assert compare(report, live_from(report, {("node1", "client1"): None})) == []


def test_verdict_needs_complete_and_agreeing_live_checks():
    state = site()
    report = trust_report(state, converged(state))
    assert verdict(report, None, []) == (True, ())
    assert verdict(report, live_from(report), []) == (True, ())
    incomplete = LiveReport(cfrun={}, cfagent={}, errors=("node1: cfrun exited 2",))
    ready, reasons = verdict(report, incomplete, [])
    assert not ready and reasons == ("1 live check problem(s): node1: cfrun exited 2",)
    bad = LiveResult(ok=False, line="x", where="unreachable", detail="no answer within 5s")
    live = live_from(report, {("node1", "client1"): bad})
    ready, reasons = verdict(report, live, compare(report, live))
    assert not ready and "1 live check(s) disagree with the prediction" in reasons[0]


# --- views ------------------------------------------------------------------------------------


def big_view(members=8, clients=200) -> TrustView:
    """8 members x 200 clients: client190..client200 lack node8's key; client7 lacks the package key."""
    state = site(members=members, clients=clients)
    facts = converged(state)
    for i in range(190, clients + 1):
        facts[f"client{i}"] = with_keys(facts[f"client{i}"], drop=(member_ip(members),))
    if clients >= 7:
        facts["client7"] = with_keys(facts["client7"], drop=(PKG_IP,))
    report = trust_report(state, facts)
    ready, reasons = verdict(report, None, [])
    return TrustView(report, ready, reasons)


def test_alike_clients_are_grouped_with_their_causes_once():
    view = big_view()
    groups = group_clients(view)
    assert [client_label(g.clients) for g in groups] == [
        "client1..client6, client8..client189 (188)",
        "client7 (1)",
        "client190..client200 (11)",
    ]
    assert groups[0].ok and groups[0].cells == ("ok",) * 9
    assert groups[2].cells == ("ok",) * 7 + ("FAIL", "ok")
    assert groups[2].problems == (("node8", (f"<client> lacks root-{member_ip(8)}.pub (the key of node8)",)),)
    assert groups[1].problems == (("cfagent", (f"client7 lacks root-{PKG_IP}.pub (the key of node1 (answering at {PKG_IP}))",)),)


def test_text_fits_a_terminal_for_8_members_and_200_clients():
    text = render_text(big_view())
    lines = text.splitlines()
    assert lines[0] == "failover-ready: no: cfagent would fail or is unknown on 1 client(s); 11 cfrun pair(s) would fail or are unknown"
    assert len(lines) < 40 and max(len(x) for x in lines) <= 160
    assert any(re.match(r"^  client1\.\.client6, client8\.\.client189 \(188\)\s+ok( +ok){8}$", x) for x in lines), text
    assert f"      node8: <client> lacks root-{member_ip(8)}.pub (the key of node8)" in lines


def test_verdict_line_says_yes_and_how_it_was_reached():
    state = site()
    report = trust_report(state, converged(state))
    assert verdict_line(TrustView(report, True, ())) == "failover-ready: yes (predicted from the facts)"
    assert render_text(TrustView(report, True, ())).splitlines()[0] == "failover-ready: yes (predicted from the facts)"


def test_json_has_the_verdict_cells_takeover_and_cfagent():
    doc = json.loads(render_json(big_view(members=2, clients=3)))
    assert doc["failover_ready"] is True and doc["reasons"] == []
    assert len(doc["cfrun"]) == 6 and set(doc["cfrun"][0]) == {"member", "column", "address", "client", "ok", "problems", "causes"}
    assert [t["member"] for t in doc["takeover"]] == ["node1", "node2"]
    assert [c["client"] for c in doc["cfagent"]] == ["client1", "client2", "client3"]
    assert "disagreements" not in doc  # only with --live


def test_json_with_live_lists_disagreements():
    state = site(members=2, clients=2)
    report = trust_report(state, converged(state))
    bad = LiveResult(ok=False, line="cfrun x", where="unreachable", detail="no answer within 5s")
    live = live_from(report, {("node2", "client2"): bad})
    disagreements = compare(report, live)
    ready, reasons = verdict(report, live, disagreements)
    doc = json.loads(render_json(TrustView(report, ready, reasons, live, tuple(disagreements))))
    assert doc["failover_ready"] is False and doc["predicted_failover_ready"] is True
    [d] = doc["disagreements"]
    assert (d["member"], d["client"], d["predicted"], d["live"]) == ("node2", "client2", "ok", "FAIL")
    assert d["message"].endswith("(a bug in csync or a fact csync does not see)")
    assert doc["cfrun"][0]["live"]["ok"] is True


def test_html_is_self_contained_and_escaped():
    view = big_view(members=3, clients=12)
    page = render_html(view)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    assert "failover-ready: no" in page and "lacks root-127.0.10.3.pub" not in page
    # alike clients are one row: client7 (it lacks the package's key) and the other 11
    rows = re.findall(r'<tr><td class="client">(.*?)</td>', page.split("<h2>Trust matrix</h2>")[1])
    assert rows == ["client1..client6, client8..client12 (11)", "client7 (1)"]
    # --detail: one row per client, each cell's own causes as its tooltip
    detail = render_html(view, detail=True)
    assert detail.count('class="ok"') >= 3 * 12 and 'class="fail"' in detail
    assert re.findall(r'<tr><td class="client" title="[^"]*">(client\d+)</td>', detail) == [f"client{i}" for i in range(1, 13)]
    assert 'title="&lt;client&gt;' not in detail


# --- the command line without hosts -------------------------------------------------------------


def csync(*args: str, cwd=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_cli_invalid_desired_state_exits_3_with_the_file_and_line(tmp_path):
    bad = tmp_path / "site.yaml"
    bad.write_text("version: 1\nsite: lab\nmaster: {mode: standalone}\n")
    done = csync("trust", "-f", str(bad))
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.startswith("Error:") and f"{bad}:3" in done.stderr and "Traceback" not in done.stderr


def test_cli_bad_format_is_a_usage_error():
    done = csync("trust", "--format", "xml")
    assert done.returncode == 64 and "Invalid value for '--format'" in done.stderr
