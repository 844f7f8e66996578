"""The platforms csync meets (issue 17), through the lab: an HP-UX-like userland and a
Serviceguard release older than the line format.

- `csync lab up --userland hpux --scenario seed` (and with `--serviceguard A.11.17`), then
  plan, apply and plan again exits 0, through the command line;
- the hpux userland refuses GNU-only options, and the default one takes them: the test fails
  if the lab quietly falls back to GNU tools;
- on A.11.17, cmviewcl refuses -f line and csync reads the table format.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.desired.loader import load_desired_state
from reconciler.driver.transport import Pool
from reconciler.observe.probe import probe_site

pytestmark = pytest.mark.lab
USERLANDS = ("default", "hpux")


def csync(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=dict(os.environ))


@pytest.mark.parametrize("release", [None, "A.11.17"])
def test_seed_plans_applies_and_converges_on_the_hpux_userland(tmp_path, release):
    from tests.conftest import require_lab_machine

    require_lab_machine()
    d = tmp_path / "lab"
    up = ["lab", "up", "--dir", str(d), "--members", "3", "--clients", "4", "--scenario", "seed", "--userland", "hpux"]
    done = csync(*up, *(["--serviceguard", release] if release else []), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    try:
        assert "userland hpux" in done.stderr
        desired = str(d / "desired-state.yaml")
        plan = csync("plan", "-f", desired, "--detailed-exitcode", cwd=tmp_path)
        assert plan.returncode == 2, plan.stdout + plan.stderr  # changes to make, none unknown
        assert "unknown" not in plan.stdout.split("Plan:")[-1].split("\n")[0] or " 0 unknown" in plan.stdout
        apply = csync("apply", "-f", desired, "--auto-approve", "--allow-cluster-ops", cwd=tmp_path)
        assert apply.returncode == 0, apply.stdout[-3000:] + apply.stderr
        again = csync("plan", "-f", desired, "--detailed-exitcode", cwd=tmp_path)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr
        if release:
            state = load_desired_state([Path(desired)])
            with Pool(state.access) as pool:
                site = probe_site(state, pool)
            members = [site.hosts[m.name] for m in state.members]
            assert all(f.reachable and f.cluster_format == "table" and f.cluster for f in members)
            view = members[0].cluster.packages["csync"]
            assert view.running and view.node_order() == ["node1", "node2", "node3"]
    finally:
        csync("lab", "down", "--dir", str(d), cwd=tmp_path)


GNU_ONLY = [
    "ls --version",
    "ls -h /",
    "find / -maxdepth 1 -name x",
    "find / -name x -print0",
    "sed -i s/x/y/ /etc/hostname",
    "grep -r root /etc/passwd",
    "grep root /etc/passwd -c",
    "cksum -a crc /etc/hostname",
    "date +%s",
]


def test_the_hpux_userland_refuses_gnu_only_options_and_the_default_takes_them(lab, userland):
    sh = lab.exec("client1", "readlink /bin/sh; awk --version 2>&1 | head -n 1; grep '^root:' /etc/passwd")
    for command in GNU_ONLY:
        done = lab.exec("client1", command)
        if userland == "hpux":
            assert done.returncode != 0, f"{command} was taken: {done.stdout[:200]}"
            assert any(w in done.stderr for w in ("illegal option", "bad option", "bad format", "after an operand")), done.stderr
        else:
            assert not any(w in done.stderr for w in ("illegal option", "bad option", "after an operand")), (command, done.stderr)
    if userland == "hpux":
        assert sh.stdout.splitlines() == ["posh", "awk version 20220912", "root:x:0:0:root:/root:/bin/sh"]
        # what csync's scripts use is taken
        ok = lab.exec(
            "client1",
            "ls -lnq /var/opt/dsau/cfengine/ppkeys >/dev/null && find /var/opt/dsau/cfengine/inputs "
            "-type f -exec cksum {} + >/dev/null && grep -qxF x /etc/hostname; test $? = 1 && "
            "sed -n 1p /etc/hostname >/dev/null && echo fine",
        )
        assert ok.stdout == "fine\n", ok.stderr
    else:
        assert sh.stdout.splitlines()[0] == "dash"
