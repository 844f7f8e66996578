"""Issue #20 for `csync trust`: clients whose rows are alike (the same cells, for the same
causes) are one row naming them as the plan names hosts (`client1..client200`), every client
exactly once; a row that differs in one cell, or in its causes, stays apart; `--detail` gives
one row per client; JSON stays the whole per-client matrix."""

from __future__ import annotations

import json
import re
from collections import Counter

from reconciler.trust.live import LiveReport, LiveResult, TrustView, compare, verdict
from reconciler.trust.predict import trust_report
from reconciler.views.trust import CLIENTS_INLINE, group_clients, render_html, render_json, render_text
from tests.unit.sitefacts import client_ip, converged, member_ip, site, with_keys
from tests.unit.test_planner import seed_facts


def view_of(state, facts, live: LiveReport | None = None) -> TrustView:
    report = trust_report(state, facts)
    disagreements = compare(report, live) if live is not None else []
    ready, reasons = verdict(report, live, disagreements)
    return TrustView(report, ready, reasons, live, tuple(disagreements))


def expand(text: str) -> list[str]:
    """The client names a label writes, ranges expanded (client3..client6 is four names)."""
    names: list[str] = []
    for item in re.findall(r"client\d+(?:\.\.client\d+)?", text):
        if ".." in item:
            a, b = (int(x.removeprefix("client")) for x in item.split(".."))
            names += [f"client{i}" for i in range(a, b + 1)]
        else:
            names.append(item)
    return names


def matrix_labels(text: str) -> list[str]:
    """The label lines of the text matrix: after its header, two spaces then a client's name
    (a group's causes are indented further)."""
    section = text.split("\nClients (", 1)[1].split("\n\n", 1)[0]
    return [line for line in section.splitlines() if re.match(r"^  client\d", line)]


def scattered(clients: int = 200) -> tuple:
    """The seed excerpt at ``clients`` clients, and every client from 40 to 59, 77, 99 and 150
    lacks node1's key: four kinds of row."""
    state = site(clients=clients)
    facts = seed_facts(state)
    for i in [n for n in (*range(40, 60), 77, 99, 150) if n <= clients]:
        facts[f"client{i}"] = with_keys(facts[f"client{i}"], drop=(member_ip(1),))
    return state, facts


def test_identical_rows_are_one_group_and_every_client_is_named_exactly_once():
    state, facts = scattered()
    view = view_of(state, facts)
    groups = group_clients(view)
    assert [len(g.clients) for g in groups] == [1, 1, 175, 23]
    assert Counter(c for g in groups for c in g.clients) == Counter(c.name for c in state.clients)
    report = view.report
    for g in groups:  # every client of a group has the group's cells
        for c in g.clients:
            assert tuple(report.check(col, c).symbol for col in report.columns) == g.cells
    text = render_text(view)
    labels = matrix_labels(text)
    assert Counter(expand("\n".join(labels))) == Counter(c.name for c in state.clients)
    assert "  client40..client59, client77, client99, client150 (23)" in labels
    assert "  client3..client39, client60..client76, client78..client98, client100..client149," in labels  # wrapped between two names
    # a group's causes once, the client written <client>; a group of one names its client
    assert text.count("node1: <client> lacks root-10.1.0.1.pub (the key of node1)") == 1
    assert "node3: node3 lacks root-10.1.0.22.pub (the key of client2)" in text
    assert len(text.splitlines()) <= 40 and max(len(line) for line in labels) <= 102


def test_a_row_that_differs_in_one_cell_is_kept_apart():
    state = site(members=3, clients=10)
    facts = converged(state)
    facts["client5"] = with_keys(facts["client5"], drop=(member_ip(2),))
    groups = group_clients(view_of(state, facts))
    assert [g.clients for g in groups] == [("client1", "client2", "client3", "client4", "client6", "client7", "client8", "client9", "client10"), ("client5",)]
    alike, apart = groups
    assert [i for i, (a, b) in enumerate(zip(alike.cells, apart.cells)) if a != b] == [1]  # node2's column alone
    assert alike.ok and alike.problems == ()
    assert apart.problems == (("node2", (f"client5 lacks root-{member_ip(2)}.pub (the key of node2)",)),)
    text = render_text(view_of(state, facts))
    assert matrix_labels(text) == [
        "  client1..client4, client6..client10 (9)  ok    ok    ok    ok",
        "  client5 (1)                              ok    FAIL  ok    ok",
    ]


def test_the_same_cells_for_other_causes_are_kept_apart():
    """client3 and client6 lack node2's key, node2 lacks client4's: all FAIL in node2's column
    alone, for causes on different hosts."""
    state = site(members=2, clients=6)
    facts = converged(state)
    facts["client3"] = with_keys(facts["client3"], drop=(member_ip(2),))
    facts["client6"] = with_keys(facts["client6"], drop=(member_ip(2),))
    facts["node2"] = with_keys(facts["node2"], drop=(client_ip(4),))
    groups = group_clients(view_of(state, facts))
    assert [g.clients for g in groups] == [("client1", "client2", "client5"), ("client3", "client6"), ("client4",)]
    assert groups[1].cells == groups[2].cells == ("ok", "FAIL", "ok")
    assert groups[1].problems == (("node2", (f"<client> lacks root-{member_ip(2)}.pub (the key of node2)",)),)
    assert groups[2].problems == (("node2", (f"node2 lacks root-{client_ip(4)}.pub (the key of client4)",)),)


def test_a_live_disagreement_keeps_its_client_apart():
    state = site(members=2, clients=5)
    facts = converged(state)
    report = trust_report(state, facts)
    ok = {c: LiveResult(ok=True, line=f"cfrun {c}: ok") for c in report.clients}
    bad = LiveResult(ok=False, line="cfrun 10.1.0.23: no answer [unreachable timeout]", where="unreachable", detail="timeout")
    live = LiveReport(
        cfrun={"node1": dict(ok), "node2": {**ok, "client3": bad}},
        cfagent={c: LiveResult(ok=True, line=f"cfagent {c}: ok") for c in report.clients},
    )
    view = view_of(state, facts, live)
    groups = group_clients(view)
    assert [g.clients for g in groups] == [("client1", "client2", "client4", "client5"), ("client3",)]
    assert groups[1].cells == ("ok", "ok!", "ok")
    page = render_html(view)
    assert "live: 4 of 4 answered; agrees with the prediction" in page
    assert "live: 1 of 1 answered; the live check disagrees (see Live checks)" in page and 'class="ok disagree"' in page


def test_detail_gives_one_row_per_client_with_its_own_causes():
    state, facts = scattered(clients=60)
    view = view_of(state, facts)
    text = render_text(view, detail=True)
    labels = matrix_labels(text)
    assert [line.split()[0] for line in labels] == [f"client{i}" for i in range(1, 61)]
    assert "<client>" not in text and "one row per client" in text
    assert "      node1: client45 lacks root-10.1.0.1.pub (the key of node1)" in text
    assert len(group_clients(view, detail=True)) == 60


def test_a_scattered_group_is_listed_whole_and_wrapped():
    """Every other client of 200 lacks node2's key: two groups of 100 names that are no run."""
    state = site(members=2, clients=200)
    facts = converged(state)
    for i in range(2, 201, 2):
        facts[f"client{i}"] = with_keys(facts[f"client{i}"], drop=(member_ip(2),))
    view = view_of(state, facts)
    labels = matrix_labels(render_text(view))
    assert Counter(expand("\n".join(labels))) == Counter(c.name for c in state.clients)
    assert len(labels) <= 2 * 12 and max(len(line) for line in labels) <= 102  # 100 names a group, wrapped at 100 columns
    page = render_html(view)
    matrix = page.split("<h2>Trust matrix</h2>")[1]
    assert matrix.count("<details><summary>100 clients</summary>") == 2  # a long list folds; no script
    assert Counter(expand(matrix)) == Counter(c.name for c in state.clients)
    assert CLIENTS_INLINE < 100


def test_json_stays_the_whole_per_client_matrix():
    state, facts = scattered()
    doc = json.loads(render_json(view_of(state, facts)))
    assert len(doc["cfrun"]) == 3 * 200 and len(doc["cfagent"]) == 200
    assert [x["client"] for x in doc["cfagent"]] == [f"client{i}" for i in range(1, 201)]
    cell = next(x for x in doc["cfrun"] if (x["member"], x["client"]) == ("node1", "client45"))
    assert cell["ok"] is False and cell["problems"] == ["client45 lacks root-10.1.0.1.pub (the key of node1)"]
