"""csync's cmviewcl parsers on the samples recorded from the lab (tests/lab/data/cmviewcl/,
rewritten with CSYNC_LAB_RECORD=1 by tests/lab/test_sg_emulation.py): every package state
csync's intent needs, in the line format (`cmviewcl -v -f line`) and the table format
(`cmviewcl -v`). Each sample gives the package's status, state, owner, AUTO_RUN, node order and
per-node switching it must; the two formats of one state give the same view; and what csync
decides from it is what the intent rules say. A sample with a column or an attribute csync does
not know gives "unknown", never a guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired.model import DesiredState
from reconciler.domain.package import decide_package
from reconciler.domain.serviceguard import ClusterView, CmviewclParseError, parse_cmviewcl_line, parse_cmviewcl_table
from tests.unit.sitefacts import converged, site

SAMPLES = Path(__file__).resolve().parent.parent / "lab" / "data" / "cmviewcl"
NODES = ["node1", "node2", "node3"]
ALL_ENABLED = {"node1": "enabled", "node2": "enabled", "node3": "enabled"}

# state -> (status, state, owner, autorun, per-node switching, node statuses)
EXPECTED = {
    "fresh": ("up", "running", "node1", "enabled", ALL_ENABLED, {"node1": "up", "node2": "up", "node3": "up"}),
    "seed": ("down", "halted", None, "disabled", ALL_ENABLED, {"node1": "up", "node2": "up", "node3": "up"}),
    "halted": ("down", "halted", None, "disabled", ALL_ENABLED, {"node1": "up", "node2": "up", "node3": "up"}),
    "switching": ("up", "running", "node1", "enabled", {**ALL_ENABLED, "node2": "disabled"}, {"node1": "up", "node2": "up", "node3": "up"}),
    "maintenance": ("up", "maintenance", "node1", "disabled", ALL_ENABLED, {"node1": "up", "node2": "up", "node3": "up"}),
    "maintenance-halted": ("down", "maintenance", None, "disabled", ALL_ENABLED, {"node1": "up", "node2": "up", "node3": "up"}),
    "detached": ("detached", "detached", "node1", "enabled", ALL_ENABLED, {"node1": "down", "node2": "up", "node3": "up"}),
    "failed": ("down", "failed", None, "disabled", {**ALL_ENABLED, "node1": "disabled"}, {"node1": "up", "node2": "up", "node3": "up"}),
}


def sample(name: str) -> list[str]:
    """A recorded sample's output lines (its first line is the command)."""
    lines = (SAMPLES / name).read_text().splitlines()
    assert lines[0].startswith("$ cmviewcl")
    return lines[1:]


def both(state: str) -> tuple[ClusterView, ClusterView]:
    return parse_cmviewcl_line(sample(f"{state}-line-v.txt")), parse_cmviewcl_table(sample(f"{state}-table-v.txt"))


def test_every_recorded_state_sample_is_checked_here():
    line = {p.name.removesuffix("-line-v.txt") for p in SAMPLES.glob("*-line-v.txt")}
    table = {p.name.removesuffix("-table-v.txt") for p in SAMPLES.glob("*-table-v.txt")}
    assert line == table == set(EXPECTED)


@pytest.mark.parametrize("state", sorted(EXPECTED))
@pytest.mark.parametrize("fmt", ["line", "table"])
def test_each_sample_gives_the_package_it_shows(state, fmt):
    view = dict(zip(("line", "table"), both(state)))[fmt]
    status, pkg_state, owner, autorun, switching, nodes = EXPECTED[state]
    pkg = view.packages["csync"]
    assert (view.name, view.status) == ("lab-cluster", "up")
    assert (pkg.status, pkg.state, pkg.owner, pkg.autorun) == (status, pkg_state, owner, autorun)
    assert pkg.node_order() == NODES and [n.order for n in sorted(pkg.nodes, key=lambda n: n.order)] == [1, 2, 3]
    assert {n.name: n.switching for n in pkg.nodes} == switching
    assert {n.name: n.status for n in view.nodes.values()} == nodes
    assert pkg.running is (state in ("fresh", "switching"))


@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_the_line_and_the_table_reading_of_a_state_agree(state):
    line, table = both(state)
    assert line == table


def lab_site(intent: str = "running") -> DesiredState:
    data = site().model_dump(mode="json")
    data["master"]["cluster"] = "lab-cluster"
    data["master"]["package"]["state"] = intent
    return DesiredState.model_validate(data)


# state -> what csync does with the package (intent running): start on a node, nothing, or a note
DECISIONS = {
    "fresh": ("nothing", None),
    "seed": ("start", "node1"),
    "halted": ("start", "node1"),
    "switching": ("nothing", None),
    "maintenance": ("blocked", "in maintenance mode"),
    "maintenance-halted": ("blocked", "in maintenance mode"),
    "detached": ("blocked", "is detached"),
    "failed": ("blocked", "never starts a failed package"),
}


@pytest.mark.parametrize("state", sorted(EXPECTED))
@pytest.mark.parametrize("fmt", ["line", "table"])
def test_what_csync_decides_from_each_sample(state, fmt):
    view = dict(zip(("line", "table"), both(state)))[fmt]
    owner = EXPECTED[state][2]
    s = lab_site()
    d = decide_package(s, converged(s, owner=owner, cluster=view))
    what, detail = DECISIONS[state]
    assert not d.halt
    if what == "start":
        assert d.start and d.node == detail
    else:
        assert not d.start and not d.enable_switching
    if what == "blocked":
        assert any(n.level == "blocked" and detail in n.message for n in d.notes), d.notes


# --- what csync does not know is unknown -----------------------------------------------------------


def test_a_package_under_columns_csync_does_not_know_is_unknown_and_never_started():
    # a release that adds a column to the package table: the package is there, every attribute unknown
    lines = [
        line.replace("AUTO_RUN     NODE", "AUTO_RUN     SYSTEM       NODE").replace("disabled     unowned", "disabled     no           unowned")
        for line in sample("halted-table-v.txt")
    ]
    assert any("SYSTEM" in line for line in lines)
    view = parse_cmviewcl_table(lines)
    pkg = view.packages["csync"]
    assert (pkg.status, pkg.state, pkg.autorun, pkg.owner) == ("unknown", "unknown", "unknown", None)
    assert pkg.node_order() == NODES  # its node switching block is read as ever
    s = lab_site()
    d = decide_package(s, converged(s, owner=None, cluster=view))
    assert not d.start and not d.halt and not d.enable_switching
    assert any(n.level == "unknown" and "is unknown/unknown" in n.message for n in d.notes), d.notes


def test_a_node_under_columns_csync_does_not_know_is_unknown_never_up():
    lines = [
        line.replace("STATUS       STATE", "STATUS       STATE        GMS_STATE") if line.split()[:1] == ["NODE"] else line
        for line in sample("fresh-table-v.txt")
    ]
    lines = [line + "      ok" if line.split()[1:3] == ["up", "running"] and line.split()[0].startswith("node") else line for line in lines]
    view = parse_cmviewcl_table(lines)
    assert {n.name: (n.status, n.state) for n in view.nodes.values()} == {n: ("unknown", "unknown") for n in NODES}
    assert view.packages["csync"].running  # the package's own table is one csync knows


def test_node_switching_columns_csync_does_not_know_make_the_view_unreadable():
    lines = [line.replace("SWITCHING    NAME", "SWITCHING    PRIORITY     NAME") for line in sample("fresh-table-v.txt")]
    with pytest.raises(CmviewclParseError, match="node switching columns csync does not know"):
        parse_cmviewcl_table(lines)


def test_a_line_format_attribute_csync_does_not_know_leaves_it_unknown():
    # a release that names the package's state otherwise: state unknown, the rest read
    lines = [line.replace("package:csync|state=", "package:csync|pkg_state=") for line in sample("halted-line-v.txt")]
    pkg = parse_cmviewcl_line(lines).packages["csync"]
    assert (pkg.status, pkg.state, pkg.autorun) == ("down", "unknown", "disabled")
    s = lab_site()
    d = decide_package(s, converged(s, owner=None, cluster=parse_cmviewcl_line(lines)))
    assert not d.start and any(n.level == "unknown" for n in d.notes)
