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
from tests.unit.sitefacts import member_ip, site, with_keys
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
