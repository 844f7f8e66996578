"""Issue #20 on the lab: the seed scenario at 3 members and 200 clients, as a reviewer reads it:
the plan, and the trust matrix (text and HTML)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

pytestmark = pytest.mark.lab


def csync(cwd, *args: str) -> subprocess.CompletedProcess:
    """csync, run in ``cwd`` (outside the repository) as this test's interpreter imports it."""
    env = {**os.environ, "CI": "true", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def named(text: str) -> set[str]:
    hosts = set(re.findall(r"\b(client\d+|node\d+)\b", text))
    for prefix, a, b in re.findall(r"\b(client|node)(\d+)\.\.(?:client|node)(\d+)\b", text):
        hosts |= {f"{prefix}{i}" for i in range(int(a), int(b) + 1)}
    return hosts


def test_a_200_client_seed_plan_fits_a_screen_and_a_comment_and_names_every_host(lab_factory, tmp_path):
    lab = lab_factory("seed", members=3, clients=200)
    path = str(lab.desired_state_path)
    text = csync(tmp_path, "plan", "-f", path)
    md = csync(tmp_path, "plan", "-f", path, "--format", "markdown")
    js = csync(tmp_path, "plan", "-f", path, "--format", "json", "--out", "plan.json")

    changed = {a["host"] for a in json.loads(js.stdout)["actions"]}
    assert len(changed) == 201  # node1 (start, dispatch) and every client
    assert len(text.stdout.splitlines()) <= 80, text.stdout
    assert len(md.stdout) < 10_000
    assert changed <= named(text.stdout) and changed <= named(md.stdout)
    detail = csync(tmp_path, "show", "plan.json", "--detail")
    assert len(detail.stdout.splitlines()) > 1000  # one block per action, on request


def matrix_clients(text: str) -> Counter:
    """How many times the trust matrix's labels name each client (ranges expanded): its label
    lines are those under the header that start with a client's name."""
    section = text.split("\nClients (", 1)[1].split("\n\n", 1)[0]
    labels = "\n".join(line for line in section.splitlines() if re.match(r"^  client\d", line))
    return Counter(expanded(labels))


def expanded(text: str) -> list[str]:
    names: list[str] = []
    for a, b in re.findall(r"\bclient(\d+)(?:\.\.client(\d+))?\b", text):
        names += [f"client{i}" for i in range(int(a), int(b or a) + 1)]
    return names


def test_a_200_client_trust_matrix_is_short_and_names_every_client_once(lab_factory, tmp_path):
    """The seed lab at 200 clients, and 23 clients (client40..client59, client77, client99,
    client150) without node1's key: `csync trust` is four rows of clients, in text and HTML;
    --detail is one row per client; JSON is the whole matrix."""
    from reconciler.desired.loader import load_desired_state

    lab = lab_factory("seed", members=3, clients=200)
    path = str(lab.desired_state_path)
    state = load_desired_state([lab.desired_state_path])
    node1 = next(m.address for m in state.members if m.name == "node1")
    broken = [*range(40, 60), 77, 99, 150]
    for i in broken:
        r = lab.exec(f"client{i}", f"rm /var/opt/dsau/cfengine/ppkeys/root-{node1}.pub")
        assert r.returncode == 0, r.stderr
    clients = Counter(c.name for c in state.clients)
    assert len(clients) == 200

    text = csync(tmp_path, "trust", "-f", path)
    assert text.returncode == 2, text.stdout + text.stderr  # not failover-ready
    lines = text.stdout.splitlines()
    assert len(lines) <= 40, text.stdout
    assert matrix_clients(text.stdout) == clients  # every client, exactly once
    assert "  client40..client59, client77, client99, client150 (23)" in lines
    assert f"      node1: <client> lacks root-{node1}.pub (the key of node1)" in lines

    page = tmp_path / "trust.html"
    done = csync(tmp_path, "trust", "-f", path, "--format", "html", "-o", str(page))
    assert done.returncode == 2 and "Wrote the html report" in done.stdout, done.stderr
    matrix = page.read_text().split("<h2>Trust matrix</h2>", 1)[1]
    rows = re.findall(r'<tr><td class="client">(.*?)</td>', matrix)
    assert len(rows) == 4 and Counter(expanded("\n".join(rows))) == clients

    detail = csync(tmp_path, "trust", "-f", path, "--detail")
    assert detail.returncode == 2 and matrix_clients(detail.stdout) == clients
    assert len(detail.stdout.splitlines()) > 3 * 200  # one row per client and its causes
    doc = json.loads(csync(tmp_path, "trust", "-f", path, "--format", "json").stdout)
    assert len(doc["cfrun"]) == 3 * 200 and len(doc["cfagent"]) == 200
    assert {x["client"] for x in doc["cfrun"] if x["member"] == "node1" and x["ok"] is False} == {f"client{i}" for i in broken}
