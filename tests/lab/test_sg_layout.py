"""Serviceguard for Linux's layout in the lab (`csync lab up --sg-layout linux`, issue 17) and
the desired state's `platform:` against it.

- the layout: the Serviceguard commands in /usr/local/cmcluster/bin and nowhere else, the
  members' /etc/cmcluster.conf naming SGSBIN and SGCONF, the package's files in $SGCONF/csync;
- the seed scenario plans, applies and converges with the desired state the lab writes
  (`paths.package_files_dir`, `platform.serviceguard_path`), through the command line;
- without `platform:` the default search path finds the commands (it holds Serviceguard for
  Linux's directories), and a search path that leaves them out gives a "not found" unknown;
- `csync import` writes the layout it found.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.lab.topology import SG_LAYOUTS

pytestmark = pytest.mark.lab

LINUX = SG_LAYOUTS["linux"]
MEMBERS = ("node1", "node2", "node3")


def csync(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def with_platform(lab_state: Path, out: Path, platform: str | None) -> Path:
    """The lab's desired state with another `platform:` line (None: no platform section)."""
    lines = [line for line in lab_state.read_text().splitlines() if not line.startswith("platform:")]
    out.write_text("\n".join(lines + ([f"platform: {platform}"] if platform else [])) + "\n")
    return out


def test_the_linux_layout_keeps_serviceguard_where_serviceguard_for_linux_does(lab_factory, tmp_path):
    lab = lab_factory("seed", members=3, clients=2, sg_layout="linux")
    for m in MEMBERS:
        where = lab.exec(
            m, f"PATH={LINUX.sbin}:$PATH; for c in cmviewcl cmrunpkg cmmodpkg cmhaltpkg cmversion; do command -v $c; done", check=True
        ).stdout.split()
        assert where == [f"{LINUX.sbin}/{c}" for c in ("cmviewcl", "cmrunpkg", "cmmodpkg", "cmhaltpkg", "cmversion")]
        assert lab.exec(m, "command -v cmviewcl").returncode != 0  # not on the login PATH either
        assert lab.exec(m, "ls /usr/sbin/cmviewcl /usr/local/sbin/cmviewcl /etc/cmcluster 2>&1").stdout.count("No such file") == 3
        conf = lab.exec(m, "cat /etc/cmcluster.conf", check=True).stdout
        assert f"SGSBIN={LINUX.sbin} " in conf and f"SGCONF={LINUX.conf} " in conf
    # the package's files: on the configured members, not on the member added while the package was down
    assert [lab.exec(m, f"test -f {LINUX.package_files_dir}/csync.conf").returncode for m in MEMBERS] == [0, 0, 1]
    assert lab.exec("client1", "command -v cmviewcl; test -e /etc/cmcluster.conf").returncode != 0  # clients have no Serviceguard

    state = load_desired_state([lab.desired_state_path])
    assert state.paths.package_files_dir == LINUX.package_files_dir and state.platform.serviceguard_path == LINUX.sbin

    desired = str(lab.desired_state_path)
    plan = csync(tmp_path, "plan", "-f", desired, "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "[dispatch-member]" in plan.stdout and "[start-package]" in plan.stdout and "unknown" not in plan.stdout.split("Plan:")[-1]
    apply = csync(tmp_path, "apply", "-f", desired, "--auto-approve", "--allow-cluster-ops")
    assert apply.returncode == 0, apply.stdout[-3000:] + apply.stderr
    again = csync(tmp_path, "plan", "-f", desired, "--detailed-exitcode")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    # the dispatcher configured node3 where this Serviceguard keeps the package's files
    assert lab.exec("node3", f"test -f {LINUX.package_files_dir}/csync.conf").returncode == 0

    # without platform: the default search path holds /usr/local/cmcluster/bin: converged too
    default = csync(tmp_path, "plan", "-f", str(with_platform(lab.desired_state_path, tmp_path / "default.yaml", None)), "--detailed-exitcode")
    assert default.returncode == 0, default.stdout + default.stderr
    # a search path without it: the cluster is unknown, saying where csync looked; nothing is planned
    hpux = csync(
        tmp_path, "plan", "-f", str(with_platform(lab.desired_state_path, tmp_path / "hpux.yaml", "{serviceguard_path: /usr/sbin}")), "--detailed-exitcode"
    )
    assert hpux.returncode == 1, hpux.stdout + hpux.stderr
    assert "cluster state unknown (node1: cmviewcl failed (exit 127): cmviewcl: command not found (searched /usr/sbin and PATH)" in hpux.stdout
    assert "[start-package]" not in hpux.stdout and "[halt-package]" not in hpux.stdout


def test_import_writes_where_the_site_keeps_serviceguard(lab_factory, tmp_path):
    """The commands moved to /opt/sg/bin (named by SGSBIN), outside csync's default search
    path: import finds them through /etc/cmcluster.conf and writes platform.serviceguard_path;
    the package's files in $SGCONF/csync give paths.package_files_dir."""
    lab = lab_factory("fresh", members=3, clients=2, sg_layout="linux")
    for m in MEMBERS:
        lab.exec(
            m,
            f"mkdir -p /opt/sg/bin && mv {LINUX.sbin}/cm* /opt/sg/bin/ && "
            f"sed 's#^SGSBIN=.*#SGSBIN=/opt/sg/bin#' /etc/cmcluster.conf > /tmp/c && cat /tmp/c > /etc/cmcluster.conf",
            check=True,
        )
    out = tmp_path / "site.yaml"
    r = csync(tmp_path, "import", "--from", "127.0.10.2", "--access", str(lab.desired_state_path), "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "written as platform.serviceguard_path" in r.stderr and "written as paths.package_files_dir" in r.stderr
    imported = load_desired_state([out])
    assert imported.platform.serviceguard_path == "/opt/sg/bin" and imported.platform.cfengine_path == dsau.CFENGINE_PATH
    assert imported.paths.package_files_dir == LINUX.package_files_dir
    assert [m.name for m in imported.members] == list(MEMBERS) and len(imported.clients) == 2
    plan = csync(tmp_path, "plan", "-f", str(out), "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    # the lab's own desired state (platform: /usr/local/cmcluster/bin) no longer finds them
    lost = csync(tmp_path, "plan", "-f", str(lab.desired_state_path), "--detailed-exitcode")
    assert lost.returncode == 1 and "command not found (searched /usr/local/cmcluster/bin and PATH)" in lost.stdout
