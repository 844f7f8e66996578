"""Issue #20 on the lab: the seed scenario at 3 members and 200 clients, as a reviewer reads it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.lab


def csync(cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"}
    )


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
    import json

    changed = {a["host"] for a in json.loads(js.stdout)["actions"]}
    assert len(changed) == 201  # node1 (start, dispatch) and every client
    assert len(text.stdout.splitlines()) <= 80, text.stdout
    assert len(md.stdout) < 10_000
    assert changed <= named(text.stdout) and changed <= named(md.stdout)
    detail = csync(tmp_path, "show", "plan.json", "--detail")
    assert len(detail.stdout.splitlines()) > 1000  # one block per action, on request
