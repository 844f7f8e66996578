"""The emulated Serviceguard beyond the basics (issue #15): per-node switching and the node list,
the -t preview, maintenance mode, Live Application Detach, transitory states, the release, and
the lab's disturbances for the planner (a member whose inputs lag, a package on an undeclared
node). Every behaviour is HP's where HP documents it (docs/LAB.md, docs/DOMAIN-CHOICES.md).

All tests use the session lab (3 members, 4 clients), reseeded per test; one starts a small lab
of its own to check `csync lab up --sg-release`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.domain.serviceguard import parse_cmviewcl_line
from reconciler.lab import Lab, LabError
from reconciler.lab.cli import lab as lab_cli
from reconciler.lab.emulators import sgcluster

pytestmark = pytest.mark.lab

PKG_ADDRESS = "127.0.10.10"
INPUTS = f"{dsau.CFENGINE_DIR}/{dsau.INPUTS_SUBDIR}"
PREVIEW_OK = "Command preview completed successfully"


def run(lab: Lab, host: str, command: str, rc: int | None = 0):
    done = lab.exec(host, command)
    if rc is not None:
        assert done.returncode == rc, f"{host}$ {command}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done


def out(lab: Lab, host: str, command: str) -> str:
    return run(lab, host, command).stdout


def view(lab: Lab, host: str = "node2"):
    return parse_cmviewcl_line(out(lab, host, "cmviewcl -v -f line").splitlines())


def pkg_lines(lab: Lab, host: str = "node2") -> str:
    return out(lab, host, "cmviewcl -f line -p csync")


def mounted_on(lab: Lab) -> list[str]:
    return [m for m in ("node1", "node2", "node3") if lab.state.pid_of(m) and lab.exec(m, "mountpoint -q /csync").returncode == 0]


@contextlib.contextmanager
def release(lab: Lab, rel: str):
    before = lab.sg_release
    lab.set_sg_release(rel)
    try:
        yield
    finally:
        lab.set_sg_release(before)


# --- 1. per-node switching and the node list --------------------------------------------------


def test_node_switching_and_node_list_in_line_and_table_formats(lab):
    run(lab, "node1", "cmmodpkg -d -n node2 csync")
    lines = out(lab, "node1", "cmviewcl -v -f line").splitlines()
    assert [x for x in lines if x.startswith("package:csync|node:")] == [
        "package:csync|node:node1|name=node1",
        "package:csync|node:node1|switching=enabled",
        "package:csync|node:node1|order=1",
        "package:csync|node:node2|name=node2",
        "package:csync|node:node2|switching=disabled",
        "package:csync|node:node2|order=2",
        "package:csync|node:node3|name=node3",
        "package:csync|node:node3|switching=enabled",
        "package:csync|node:node3|order=3",
    ]
    table = out(lab, "node1", "cmviewcl -v -p csync")
    assert (
        "      Node_Switching_Parameters:\n"
        "      NODE_TYPE    STATUS       SWITCHING    NAME\n"
        "      Primary      up           enabled      node1          (current)\n"
        "      Alternate    up           disabled     node2\n"
        "      Alternate    up           enabled      node3\n"
    ) in table
    assert view(lab).packages["csync"].node_order() == ["node1", "node2", "node3"]


def test_cmrunpkg_refuses_a_node_with_switching_disabled_or_outside_the_node_list(lab):
    run(lab, "node1", "cmhaltpkg csync && cmmodpkg -d -n node2 csync")
    r = run(lab, "node1", "cmrunpkg -n node2 csync", rc=1)
    assert r.stdout == "" and r.stderr == (
        "cmrunpkg: Unable to run package csync on node node2: node switching is disabled for the package on this "
        "node (enable it with cmmodpkg -e -n node2 csync).\n"
    )
    r = run(lab, "node2", "cmrunpkg csync", rc=1)  # without -n: the node it is run on
    assert "on node node2: node switching is disabled" in r.stderr
    assert view(lab).packages["csync"].status == "down" and mounted_on(lab) == []

    # node3 in the cluster but no longer in the package's node list (as after cmapplyconf)
    with sgcluster.Cluster.edit(lab.state) as cluster:
        cluster.packages[0]["nodes"] = [e for e in cluster.packages[0]["nodes"] if e["name"] != "node3"]
    r = run(lab, "node1", "cmrunpkg -n node3 csync", rc=1)
    assert r.stderr == "cmrunpkg: Unable to run package csync on node node3: node is not configured to run the package.\n"
    assert run(lab, "node1", "cmmodpkg -e -n node3 csync", rc=1).stderr == "cmmodpkg: Node node3 is not configured to run package csync.\n"
    assert [n.name for n in view(lab).packages["csync"].nodes] == ["node1", "node2"]

    run(lab, "node1", "cmmodpkg -e -n node2 csync && cmrunpkg -n node2 csync")
    assert view(lab).packages["csync"].owner == "node2" and mounted_on(lab) == ["node2"]


# --- 3. the -t preview and the release ---------------------------------------------------------


def test_preview_predicts_without_acting(lab):
    before, mounts = out(lab, "node1", "cmviewcl -v -f line"), mounted_on(lab)
    r = run(lab, "node2", "cmhaltpkg -t csync")
    assert r.stdout == f"package:csync|node:node1|action:halting\ncmhaltpkg: {PREVIEW_OK}\n" and r.stderr == ""
    r = run(lab, "node2", "cmhaltnode -t -f node1")
    assert r.stdout == (f"package:csync|node:node1|action:failing\npackage:csync|node:node2|action:starting\ncmhaltnode: {PREVIEW_OK}\n")
    assert out(lab, "node2", "cmmodpkg -e -t csync") == f"cmmodpkg: {PREVIEW_OK}\n"  # already running: nothing to do
    # a refusal is the command's own, exit 1
    r = run(lab, "node2", "cmrunpkg -t -n node2 csync", rc=1)
    assert r.stdout == "" and r.stderr == "cmrunpkg: Unable to run package csync: package is already running on node node1.\n"
    assert out(lab, "node1", "cmviewcl -v -f line") == before and mounted_on(lab) == mounts

    run(lab, "node1", "cmhaltpkg csync")
    halted = out(lab, "node1", "cmviewcl -v -f line")
    assert out(lab, "node1", "cmrunpkg -t -n node3 csync") == f"package:csync|node:node3|action:starting\ncmrunpkg: {PREVIEW_OK}\n"
    assert out(lab, "node3", "cmrunpkg -t csync") == f"package:csync|node:node3|action:starting\ncmrunpkg: {PREVIEW_OK}\n"
    run(lab, "node1", "cmmodpkg -d -n node1 csync")
    assert out(lab, "node1", "cmmodpkg -e -t csync") == f"package:csync|node:node2|action:starting\ncmmodpkg: {PREVIEW_OK}\n"
    assert run(lab, "node1", "cmhaltpkg -t csync", rc=1).stderr == "cmhaltpkg: Unable to halt package csync: package is not running.\n"
    # [doc] cmmodpkg { -e [-t] | -d }: no preview of -d
    r = run(lab, "node1", "cmmodpkg -d -t csync", rc=2)
    assert r.stderr.startswith("cmmodpkg: -t previews -e only\nusage: cmmodpkg {-e|-d}")
    assert out(lab, "node1", "cmviewcl -v -f line") == halted.replace("node:node1|switching=enabled", "node:node1|switching=disabled")
    assert mounted_on(lab) == []


def test_the_release_decides_which_options_exist(lab):
    assert lab.sg_release == "A.11.20.00" and out(lab, "node1", "cmversion") == "A.11.20.00\n"
    with release(lab, "A.11.18"):
        assert out(lab, "node1", "cmversion") == "A.11.18.00\n"
        r = run(lab, "node1", "cmrunpkg -t -n node2 csync", rc=2)
        assert r.stderr == "cmrunpkg: illegal option -- t\nusage: cmrunpkg [-v] [-n node] package...\n"
        assert run(lab, "node1", "cmhaltpkg -t csync", rc=2).stderr.startswith("cmhaltpkg: illegal option -- t\n")
        assert run(lab, "node1", "cmmodpkg -e -t csync", rc=2).stderr.startswith("cmmodpkg: illegal option -- t\n")
        assert run(lab, "node1", "cmmodpkg -m on csync", rc=2).stderr.startswith("cmmodpkg: illegal option -- m\n")
        assert run(lab, "node1", "cmhaltnode -d node1", rc=2).stderr.startswith("cmhaltnode: illegal option -- d\n")
        assert view(lab).packages["csync"].owner == "node1"  # -f line exists from A.11.18
    with release(lab, "A.11.19"):
        assert out(lab, "node1", "cmhaltpkg -t csync").endswith(f"cmhaltpkg: {PREVIEW_OK}\n")
        r = run(lab, "node1", "cmhaltnode -d node1", rc=2)
        assert r.stderr.startswith("cmhaltnode: illegal option -- d\nusage: cmhaltnode [-f] [-v] [node...]\n       cmhaltnode -t [-f] [-v] [node...]\n")
    with release(lab, "A.11.17"):
        assert run(lab, "node1", "cmviewcl -f line", rc=2).stderr.startswith("cmviewcl: illegal option -- f\nusage: cmviewcl [-v] [-r {A.11.09|A.11.12}]")
        assert out(lab, "node1", "cmviewcl -l cluster").startswith("CLUSTER        STATUS\nlab-cluster    up\n")
    with pytest.raises(LabError, match="is not a Serviceguard release"):
        lab.set_sg_release("11.20")
    assert out(lab, "node1", "cmversion") == "A.11.20.00\n"


def test_lab_up_takes_the_release(tmp_path):
    d = tmp_path / "lab"
    runner = CliRunner()
    bad = runner.invoke(lab_cli, ["up", "--dir", str(d), "--members", "1", "--clients", "0", "--sg-release", "B.11.20"])
    assert bad.exit_code == 1 and "is not a Serviceguard release" in bad.output
    lab = Lab(d)
    try:
        done = runner.invoke(lab_cli, ["up", "--dir", str(d), "--members", "1", "--clients", "0", "--sg-release", "A.11.19"])
        assert done.exit_code == 0, done.output
        assert lab.sg_release == "A.11.19.00" and out(lab, "node1", "cmversion") == "A.11.19.00\n"
        lab.reseed()  # the release is the lab's, not the scenario's
        assert out(lab, "node1", "cmversion") == "A.11.19.00\n"
    finally:
        lab.down()


# --- 2. maintenance mode -----------------------------------------------------------------------


def test_maintenance_mode_of_a_running_package(lab):
    # [doc] package switching must be disabled first; a running package only on its own node
    r = run(lab, "node2", "cmmodpkg -m on csync", rc=1)
    assert r.stderr == ("cmmodpkg: Unable to place package csync in maintenance mode: package switching is enabled; disable it first (cmmodpkg -d csync).\n")
    run(lab, "node2", "cmmodpkg -d csync")
    r = run(lab, "node2", "cmmodpkg -m on -n node2 csync", rc=1)
    assert "package is running on node node1; a running package can be placed in maintenance mode only on its own node" in r.stderr
    assert out(lab, "node2", "cmmodpkg -m on csync") == "cmmodpkg: Completed successfully on all packages specified\n"
    # [doc] "the STATUS of pkg1 is up and its STATE is maintenance"
    assert pkg_lines(lab) == "name=csync\nstatus=up\nstate=maintenance\nowner=node1\nautorun=disabled\n"
    assert "    csync          up           maintenance  disabled     node1\n" in out(lab, "node2", "cmviewcl")
    # [doc] no -t on a package in maintenance mode
    for command in ("cmhaltpkg -t csync", "cmrunpkg -t -n node1 csync", "cmmodpkg -e -t csync"):
        r = run(lab, "node2", command, rc=1)
        assert r.stderr == f"{command.split()[0]}: Unable to preview: package csync is in maintenance mode on node node1.\n"
    r = run(lab, "node2", "cmmodpkg -e csync", rc=1)  # [ours]
    assert "package is in maintenance mode on node node1; take it out first (cmmodpkg -m off csync)" in r.stderr
    # [doc] a package in maintenance mode cannot be detached
    r = run(lab, "node2", "cmhaltnode -d node1", rc=1)
    assert r.stderr == "cmhaltnode: Unable to halt node node1 with -d: package csync is in maintenance mode and cannot be detached.\n"

    # [doc] halted, it stays in maintenance mode and runs only on its maintenance node
    run(lab, "node2", "cmhaltpkg csync")
    assert pkg_lines(lab) == "name=csync\nstatus=down\nstate=maintenance\nautorun=disabled\n"
    r = run(lab, "node2", "cmrunpkg -n node2 csync", rc=1)
    assert r.stderr == ("cmrunpkg: Unable to run package csync on node node2: package is in maintenance mode on node node1 and can run only there.\n")
    run(lab, "node2", "cmrunpkg -n node1 csync")
    assert pkg_lines(lab).splitlines()[1:4] == ["status=up", "state=maintenance", "owner=node1"]
    assert mounted_on(lab) == ["node1"]
    run(lab, "node2", "cmmodpkg -m off csync")
    assert pkg_lines(lab) == "name=csync\nstatus=up\nstate=running\nowner=node1\nautorun=disabled\n"


def test_maintenance_mode_of_a_halted_package_and_its_node_leaving(lab):
    run(lab, "node2", "cmhaltpkg csync")
    r = run(lab, "node2", "cmmodpkg -m on csync", rc=1)  # [doc] a halted package needs -n
    assert r.stderr == "cmmodpkg: Unable to place package csync in maintenance mode: package is not running; name the node with -n.\n"
    run(lab, "node2", "cmmodpkg -m on -n node3 csync")
    assert pkg_lines(lab) == "name=csync\nstatus=down\nstate=maintenance\nautorun=disabled\n"
    assert "    csync          down         maintenance  disabled     unowned\n" in out(lab, "node2", "cmviewcl")
    run(lab, "node2", "cmmodpkg -e csync", rc=1)  # never started by Serviceguard while in maintenance
    run(lab, "node2", "cmrunpkg -n node3 csync")
    # [doc] its node crashing takes it out of maintenance mode; it is not restarted
    lab.node_down("node3")
    assert pkg_lines(lab) == "name=csync\nstatus=down\nstate=halted\nautorun=disabled\n" and mounted_on(lab) == []


# --- 2. Live Application Detach ----------------------------------------------------------------


def test_cmhaltnode_d_detaches_the_package_which_keeps_running(lab):
    assert run(lab, "node2", "cmhaltnode -d -f node1", rc=2).stderr.startswith("cmhaltnode: -d and -f are mutually exclusive\n")
    assert out(lab, "node2", "cmhaltnode -d node1") == (
        "Package csync detached on node node1.\nNode node1 halted.\ncmhaltnode: Completed successfully on all nodes specified\n"
    )
    # [doc] "cmviewcl reports the status and state of detached packages as detached"
    assert pkg_lines(lab) == "name=csync\nstatus=detached\nstate=detached\nowner=node1\nautorun=enabled\n"
    table = out(lab, "node2", "cmviewcl")
    assert (
        "  NODE           STATUS       STATE\n  node1          down         halted\n\n"
        "    PACKAGE        STATUS       STATE        AUTO_RUN     NODE\n"
        "    csync          detached     detached     enabled      node1\n"
    ) in table
    v = view(lab)
    assert (v.nodes["node1"].status, v.packages["csync"].status, v.packages["csync"].running) == ("down", "detached", False)
    # it still runs: mounted on node1, which answers at the package address; no failover
    assert mounted_on(lab) == ["node1"]
    assert out(lab, "client1", "cfagent") == f"cfagent {PKG_ADDRESS}: ok\n"
    r = run(lab, "node2", "cmrunpkg -n node2 csync", rc=1)  # [doc] a detached package cannot be run
    assert r.stderr == "cmrunpkg: Unable to run package csync: package is detached on node node1. Halt it first (cmhaltpkg csync).\n"
    assert run(lab, "node2", "cmmodpkg -e -t csync", rc=1).stderr == (
        "cmmodpkg: Unable to preview: cmmodpkg -e -t is not supported for detached package csync.\n"
    )
    assert run(lab, "node2", "cmmodpkg -m on -n node2 csync", rc=1).stderr.startswith(
        "cmmodpkg: Unable to place package csync in maintenance mode: package is detached on node node1."
    )

    # [doc] restarting the node re-attaches it
    assert "Package csync re-attached on node node1.\n" in out(lab, "node2", "cmrunnode node1")
    assert pkg_lines(lab) == "name=csync\nstatus=up\nstate=running\nowner=node1\nautorun=enabled\n"


def test_a_detached_package_is_halted_from_another_node_and_not_while_the_cluster_is_down(lab):
    run(lab, "node1", "cmhaltnode -d")
    assert out(lab, "node2", "cmhaltpkg -n node1 csync").endswith("cmhaltpkg: All specified packages are halted\n")
    assert pkg_lines(lab) == "name=csync\nstatus=down\nstate=halted\nautorun=disabled\n" and mounted_on(lab) == []
    run(lab, "node2", "cmrunnode node1 && cmrunpkg -n node1 csync && cmmodpkg -e csync")

    r = run(lab, "node2", "cmhaltcl", rc=1)
    assert r.stderr.startswith("cmhaltcl: Unable to halt cluster lab-cluster: package csync is running.")
    assert out(lab, "node2", "cmhaltcl -d").endswith("cmhaltcl: Completed successfully\n")
    v = view(lab)
    assert v.status == "down" and {n.status for n in v.nodes.values()} == {"down"}
    assert v.packages["csync"].status == "detached" and mounted_on(lab) == ["node1"]
    r = run(lab, "node2", "cmhaltpkg csync", rc=1)  # [doc] not while the cluster is down
    assert "package is detached and the cluster is down" in r.stderr
    assert out(lab, "node2", "cmruncl").endswith("cmruncl: Completed successfully\n")
    assert view(lab).packages["csync"].running and mounted_on(lab) == ["node1"]


def test_a_detached_package_whose_node_dies_fails_over_when_the_node_rejoins(lab):
    run(lab, "node2", "cmhaltnode -d node1")
    lab.node_down("node1")  # [doc] not monitored: still reported detached
    assert view(lab).packages["csync"].status == "detached" and mounted_on(lab) == []
    lab.node_up("node1")  # re-attached, found failed, restarted on another eligible node [doc]
    pkg = view(lab).packages["csync"]
    assert (pkg.status, pkg.state, pkg.owner) == ("up", "running", "node2") and mounted_on(lab) == ["node2"]


# --- 2. a package failure (the lab's own control) ----------------------------------------------


def test_a_package_that_fails_fails_over_or_stays_failed(lab):
    # AUTO_RUN enabled: it halts on node1, switching to node1 is disabled, it starts on node2
    assert lab.pkg_fail("csync") == "node2"
    pkg = view(lab).packages["csync"]
    assert (pkg.status, pkg.state, pkg.owner, pkg.autorun) == ("up", "running", "node2", "enabled") and mounted_on(lab) == ["node2"]
    assert {n.name: n.switching for n in pkg.nodes} == {"node1": "disabled", "node2": "enabled", "node3": "enabled"}
    # AUTO_RUN disabled: down and failed, unowned, unmounted
    run(lab, "node1", "cmmodpkg -d csync")
    assert lab.pkg_fail("csync") == "failed"
    assert pkg_lines(lab) == "name=csync\nstatus=down\nstate=failed\nautorun=disabled\n" and mounted_on(lab) == []
    assert "    csync          down         failed       disabled     unowned\n" in out(lab, "node3", "cmviewcl")
    with pytest.raises(LabError, match="only a running package"):
        lab.pkg_fail("csync")
    # [doc] re-enabling switching starts it on an eligible node (node2's switching is disabled now too)
    run(lab, "node1", "cmmodpkg -e csync")
    assert view(lab).packages["csync"].owner == "node3" and mounted_on(lab) == ["node3"]


# --- recorded samples of every package state csync's intent needs, in both formats ------------
# tests/lab/data/cmviewcl/<state>-line-v.txt and <state>-table-v.txt, written from the lab with
# CSYNC_LAB_RECORD=1; tests/unit/test_cmviewcl_samples.py reads them with csync's parsers.

SAMPLES = Path(__file__).parent / "data" / "cmviewcl"
STATE_SETUPS: dict[str, list] = {
    "halted": ["cmhaltpkg csync"],
    "switching": ["cmmodpkg -d -n node2 csync"],
    "maintenance": ["cmmodpkg -d csync", "cmmodpkg -m on csync"],
    "maintenance-halted": ["cmhaltpkg csync", "cmmodpkg -m on -n node3 csync"],
    "detached": ["cmhaltnode -d node1"],
    "failed": ["cmmodpkg -d csync", lambda lab: lab.pkg_fail("csync")],
}


@pytest.mark.parametrize("state", sorted(STATE_SETUPS))
def test_cmviewcl_prints_the_recorded_state_samples(lab, state):
    for step in STATE_SETUPS[state]:
        step(lab) if callable(step) else run(lab, "node1", step)
    for fmt, command in (("line", "cmviewcl -v -f line"), ("table", "cmviewcl -v")):
        text = f"$ {command}\n{out(lab, 'node2', command)}"
        path = SAMPLES / f"{state}-{fmt}-v.txt"
        if os.environ.get("CSYNC_LAB_RECORD"):
            path.write_text(text)
        assert text == path.read_text(), f"{path.name} differs from the lab's output (CSYNC_LAB_RECORD=1 rewrites it)"


# --- 2. transitory states (the lab's own control) ----------------------------------------------


def test_a_package_held_starting_or_halting(lab):
    lab.pkg_state("csync", "halting")
    assert pkg_lines(lab) == "name=csync\nstatus=halting\nstate=halting\nowner=node1\nautorun=enabled\n"
    for command, what in (("cmhaltpkg csync", "halt"), ("cmrunpkg -n node2 csync", "run")):
        r = run(lab, "node2", command, rc=1)  # [doc] not in a transitory state
        assert r.stderr == (
            f"{command.split()[0]}: Unable to {what} package csync: package is halting on node node1; try again when it is no longer in a transitory state.\n"
        )
    assert mounted_on(lab) == ["node1"]
    lab.pkg_state("csync", "release")
    assert pkg_lines(lab) == "name=csync\nstatus=down\nstate=halted\nautorun=disabled\n" and mounted_on(lab) == []

    lab.pkg_state("csync", "starting", node="node3")
    assert pkg_lines(lab) == "name=csync\nstatus=starting\nstate=starting\nowner=node3\nautorun=disabled\n"
    assert "    csync          starting     starting     disabled     node3\n" in out(lab, "node2", "cmviewcl")
    assert run(lab, "node2", "cmrunpkg -t -n node2 csync", rc=1).stderr.endswith(
        "package is starting on node node3; try again when it is no longer in a transitory state.\n"
    )
    assert mounted_on(lab) == []
    with pytest.raises(LabError, match="only a halted package can be starting"):
        lab.pkg_state("csync", "starting")
    lab.pkg_state("csync", "release")
    assert pkg_lines(lab) == "name=csync\nstatus=up\nstate=running\nowner=node3\nautorun=disabled\n"
    assert mounted_on(lab) == ["node3"]
    with pytest.raises(LabError, match="not starting or halting"):
        lab.pkg_state("csync", "release")

    result = CliRunner().invoke(lab_cli, ["pkg-state", "--dir", str(lab.dir), "csync", "halting"])
    assert result.exit_code == 0 and view(lab).packages["csync"].status == "halting"


# --- 4. disturbances for the planner -----------------------------------------------------------


def test_a_member_whose_inputs_lag_the_masters(lab):
    line = lab.lag_inputs("node2", "cfagent.conf")
    master = out(lab, "node1", f"cat /csync/{dsau.PACKAGE_MASTER_INPUTS}/cfagent.conf")
    assert master.endswith(line + "\n")
    for host in ("node1", "node3", "client1"):  # their cfagent has run since the commit
        assert out(lab, host, f"cat {INPUTS}/cfagent.conf") == master
    lagging = out(lab, "node2", f"cat {INPUTS}/cfagent.conf")
    assert lagging + line + "\n" == master
    diff = run(lab, "node1", f"diff -rq /csync/{dsau.PACKAGE_MASTER_INPUTS} {INPUTS}", rc=0)
    assert diff.stdout == ""
    for name in ("update.conf", "cf.motd", "cfservd.conf"):  # exactly one file differs
        assert out(lab, "node2", f"cat {INPUTS}/{name}") == out(lab, "node1", f"cat {INPUTS}/{name}")
    with pytest.raises(LabError, match="not a cluster member"):
        lab.lag_inputs("client1")
    with pytest.raises(LabError, match="no file nope"):
        lab.lag_inputs("node2", "nope")


def test_the_package_on_a_node_the_desired_state_does_not_declare(lab, tmp_path):
    run(lab, "node1", "cmhaltpkg csync && cmrunpkg -n node3 csync && cmmodpkg -e csync")
    assert view(lab).packages["csync"].owner == "node3" and mounted_on(lab) == ["node3"]
    path = tmp_path / "without-node3.yaml"
    result = CliRunner().invoke(lab_cli, ["desired-state", "--dir", str(lab.dir), "--without", "node3", "-o", str(path)])
    assert result.exit_code == 0, result.output
    state = load_desired_state([path])
    assert [m.name for m in state.master.members] == ["node1", "node2"]
    assert state.master.package.node == "node1" and state.access.port == lab.port
    # the preferred node left out: the first member left takes its place
    text = lab.desired_state_text(["node1"])
    assert "node: node2," in text and "name: node1" not in text
    with pytest.raises(LabError, match="not a cluster member"):
        lab.desired_state_text(["client1"])
    with pytest.raises(LabError, match="at least one member"):
        lab.desired_state_text(["node1", "node2", "node3"])
