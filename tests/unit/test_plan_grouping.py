"""Issue #20: plans a reviewer can read at 2,000 clients. Alike actions are one group whose
hosts are written as ranges; the markdown comment never exceeds GitHub's limit; JSON stays
per action."""

from __future__ import annotations

import re
import zlib

from reconciler.plan.planner import make_plan
from reconciler.views.grouping import compress
from reconciler.views.plan import MARKDOWN_LIMIT, render_markdown, render_text
from tests import keys as test_keys
from tests.unit.sitefacts import client_ip, converged, member_ip, site, with_keys
from tests.unit.test_planner import seed_facts


def seed_plan(clients: int):
    state = site(clients=clients)
    return make_plan(state, seed_facts(state))


def test_names_in_sequence_are_ranges():
    assert compress([f"client{i}" for i in range(1, 201)]) == "client1..client200"
    assert compress(["client1", "client2", "client4", "node3"]) == "client1, client2, client4, node3"
    assert compress(["web08", "web09", "web10", "web11"]) == "web08..web11"
    assert compress(["a", "b", "c"], shown=2) == "a, b (+1 more)"


def test_the_seed_plan_at_200_clients_is_short_and_names_every_host():
    plan = seed_plan(200)
    text = render_text(plan)
    assert len(text.splitlines()) <= 80, text
    assert "on:   client1..client200 (200 hosts)" in text  # every client lacks node3's key: one group
    assert len(render_text(plan, detail=True).splitlines()) > 1000  # --detail: one block per action
    # the cluster operations come first, each on its own line
    assert text.index("Cluster operations") < text.index("Wave 1")
    md = render_markdown(plan)
    assert len(md) < 10_000
    mentioned = set(re.findall(r"client\d+", md)) | {f"client{i}" for a, b in re.findall(r"client(\d+)\.\.client(\d+)", md) for i in range(int(a), int(b) + 1)}
    assert {a.host for a in plan.actions if a.host.startswith("client")} <= mentioned


def test_the_markdown_comment_stays_under_the_limit_at_2000_clients(monkeypatch):
    # 2,000 clients' own keys from a pool of 40 real keys: RSA generation would dominate
    pooled = test_keys.public
    monkeypatch.setattr(test_keys, "public", lambda label: pooled(f"pool-{zlib.crc32(label.encode()) % 40}"))
    monkeypatch.setattr(test_keys, "fp", lambda label: test_keys.public_key_fingerprint(test_keys.public(label))[0])
    plan = seed_plan(2000)
    md = render_markdown(plan)
    assert len(md) < MARKDOWN_LIMIT
    assert "start-package" in md and "dispatch-member" in md  # every cluster operation is kept
    assert len(plan.actions) > 2000  # the JSON artefact stays per action


def test_past_the_limit_host_lists_go_first_and_the_comment_says_what_was_left_out():
    state = site(clients=300)
    facts = seed_facts(state)
    for i in range(2, 301, 2):  # every other client already holds node3's key: a list, not a range
        facts[f"client{i}"] = with_keys(facts[f"client{i}"], **{member_ip(3): "cluster"})
    plan = make_plan(state, facts)
    full = render_markdown(plan)
    limit = len(full) - 1000  # the host list of the one big group no longer fits
    cut = render_markdown(plan, limit=limit)
    assert len(cut) <= limit and "client1, client3" in full and "client1, client3" not in cut
    assert "150 hosts" in cut
    assert "Left out to fit a comment" in cut and "JSON plan file" in cut
    assert "start-package" in cut and "dispatch-member" in cut


def test_one_host_missing_many_alike_files_is_one_group_by_file():
    # a member missing the keys of 30 clients: 30 install-key actions on one host, each its own
    # file and key; they read as one group listing the files, and --detail keeps one per action
    state = site(clients=31)
    facts = converged(state)
    facts["node2"] = with_keys(facts["node2"], drop=tuple(client_ip(i) for i in range(1, 31)))
    facts["node3"] = with_keys(facts["node3"], drop=(client_ip(31),))  # alone: stays a single action
    plan = make_plan(state, facts)
    assert len([a for a in plan.actions if a.host == "node2"]) == 30
    text = render_text(plan)
    assert "member.node2.key[*]  [install-key x 30]" in text
    assert f"files: root-{{{client_ip(1)}..{client_ip(30)}}}.pub (30 files" in text
    assert "run:  e.g. install " in text and "why:  e.g. " in text
    assert f"member.node3.key[root-{client_ip(31)}.pub]  [install-key]" in text  # one file: its own block
    assert len(text.splitlines()) < 25, text
    assert text.count("[install-key") == 2
    detail = render_text(plan, detail=True)
    assert all(f"member.node2.key[root-{client_ip(i)}.pub]" in detail for i in range(1, 31))
    md = render_markdown(plan)
    assert "node2: <details><summary>30 files</summary>" not in md  # a range is short: inline
    assert f"node2: root-{{{client_ip(1)}..{client_ip(30)}}}.pub (30 files)" in md and "e.g. `install " in md


def test_files_alike_but_for_a_different_cause_stay_apart():
    # node2 lacks 3 client keys and holds 3 others that differ: two groups, never one
    state = site(clients=6)
    facts = converged(state)
    facts["node2"] = with_keys(facts["node2"], drop=tuple(client_ip(i) for i in (1, 2, 3)), **{client_ip(i): "stranger" for i in (4, 5, 6)})
    text = render_text(plan := make_plan(state, facts))
    assert len([a for a in plan.actions if a.host == "node2"]) == 6
    assert text.count("member.node2.key[*]") == 2, text
