"""The shared views: the progress view (nothing but plain lines, or nothing, unless on a
terminal outside CI), the facts table's plain layout and its rich form, one style helper,
one spelling of a finding."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import click
import pytest

import reconciler
from reconciler.observe.facts import HostFacts
from reconciler.plan.artefact import Finding
from reconciler.views import plan as views_plan
from reconciler.views.progress import ProgressView, progress_mode
from reconciler.views.style import finding_line, interactive, styler, use_color
from tests.unit.sitefacts import converged, site

ANSI = re.compile(r"\x1b\[")
BAR = "━"


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def run_tasks(view: ProgressView) -> None:
    with view:
        probed = view.task("probed", 3)
        for _ in range(3):
            probed(object())  # callbacks pass the facts, or (host, result)
        checked = view.task("live checks", 2)
        checked("host", "result")
        checked("host", "result")


# --- progress ---------------------------------------------------------------------------------


def test_progress_writes_nothing_when_the_stream_is_not_a_terminal(no_ci):
    out = io.StringIO()
    view = ProgressView(stream=out)
    assert view.mode == "off"
    run_tasks(view)
    assert out.getvalue() == ""
    assert [t.done for t in view.tasks] == [3, 2]


def test_progress_writes_nothing_when_disabled_even_on_a_terminal(no_ci):
    out = Terminal()
    view = ProgressView(stream=out, enabled=False)  # e.g. --format json
    run_tasks(view)
    assert view.mode == "off" and out.getvalue() == ""


def test_progress_in_ci_writes_plain_lines_even_on_a_terminal(monkeypatch):
    monkeypatch.setenv("CI", "true")
    out = Terminal()
    view = ProgressView(stream=out)
    assert view.mode == "lines"
    run_tasks(view)
    text = out.getvalue()
    assert not ANSI.search(text) and "\r" not in text and BAR not in text
    assert re.fullmatch(r"probed 3/3 in \d+\.\ds\nlive checks 2/2 in \d+\.\ds\n", text), text


def test_progress_in_ci_writes_nothing_when_not_a_terminal(monkeypatch):
    monkeypatch.setenv("CI", "1")
    out = io.StringIO()
    run_tasks(ProgressView(stream=out))
    assert out.getvalue() == ""


def test_progress_on_a_terminal_draws_a_rich_bar_and_prints_lines_above_it(no_ci):
    out = Terminal()
    view = ProgressView(stream=out, color=False)
    assert view.mode == "rich"
    with view:
        task = view.task("wave 1/1", 2)
        task()
        view.print("  ok      member.node1")
        task()
    text = out.getvalue()
    assert "member.node1" in text and "wave 1/1" in text and BAR in text


def test_progress_mode():
    assert progress_mode(io.StringIO()) == "off"
    assert progress_mode(Terminal(), enabled=False) == "off"


def test_interactive_and_colour_follow_the_stream_and_the_environment(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert interactive(Terminal()) and not interactive(io.StringIO())
    assert use_color(Terminal()) and not use_color(io.StringIO())
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not interactive(Terminal()) and not use_color(Terminal())


# --- the facts table ----------------------------------------------------------------------------


def sample_facts() -> list[HostFacts]:
    facts = converged(site(2, 2))
    facts["client1"] = facts["client1"].model_copy(update={"hostname": "web1.example", "ppkeys_dir": "symlink"})
    facts["client2"] = HostFacts(name="client2", address="10.1.0.22", role="client", reachable=False, reason="connection refused")
    return list(facts.values())


def fingerprints_hidden(text: str) -> str:
    return re.sub(r"SHA256:[^…]{12}…", "SHA256:xxxxxxxxxxxx…", text)


PLAIN_FACTS = """\
HOST     ADDRESS    ROLE    STATE        KEYS  OWN KEY               DETAIL
node1    10.1.0.1   member  ok           5     SHA256:xxxxxxxxxxxx…  cluster c1 up; csync up on node1; package filesystem mounted
node2    10.1.0.2   member  ok           5     SHA256:xxxxxxxxxxxx…  cluster c1 up; csync up on node1
client1  10.1.0.21  client  ok           3     SHA256:xxxxxxxxxxxx…  hostname web1.example; ppkeys is a symbolic link (not read)
client2  10.1.0.22  client  UNREACHABLE  -     -                     connection refused
"""


def test_the_plain_facts_layout_is_stable():
    assert fingerprints_hidden(views_plan.render_facts_text(sample_facts())) == PLAIN_FACTS


def test_the_plain_facts_layout_in_colour_only_adds_styles():
    text = views_plan.render_facts_text(sample_facts(), color=True)
    assert fingerprints_hidden(click.unstyle(text)) == PLAIN_FACTS
    assert text.startswith("\x1b[1mHOST")  # bold header
    assert "\x1b[31mclient2" in text  # an unreachable host in red


@pytest.mark.parametrize("width", [160, 120, 80, 60])
def test_the_rich_facts_table_fits_the_terminal_and_keeps_every_detail(width):
    text = views_plan.render_facts_table(sample_facts(), width=width, color=False)
    lines = text.splitlines()
    assert all(len(line.rstrip()) <= width for line in lines)
    assert set(lines[1].strip()) == {"─"}  # a rule under the header
    words = text.split()
    for detail in (
        "cluster c1 up; csync up on node1; package filesystem mounted",
        "connection refused",
        "hostname web1.example; ppkeys is a symbolic link (not read)",
    ):
        assert all(w in words for w in detail.split()), detail  # wrapped, never cut
    header = lines[0].split()
    if width >= 120:  # a DETAIL column
        assert header == ["HOST", "ADDRESS", "ROLE", "STATE", "KEYS", "OWN", "KEY", "DETAIL"]
        assert lines[-1].split() == ["client2", "10.1.0.22", "client", "UNREACHABLE", "-", "-", "connection", "refused"]
    else:  # too narrow for one: each detail on the lines under its host
        assert "DETAIL" not in header
        assert lines[-2].startswith("clie") and lines[-1].rstrip() == "    connection refused"
    if width >= 80:
        assert header == ["HOST", "ADDRESS", "ROLE", "STATE", "KEYS", "OWN", "KEY"] + ["DETAIL"] * (width >= 120)
        assert "client2   10.1.0.22   client   UNREACHABLE" in text


def test_the_rich_facts_table_keeps_short_details_in_a_column():
    facts = [HostFacts(name="client9", address="10.1.0.29", role="client", reachable=False, reason="refused")]
    assert views_plan.render_facts_table(facts, width=80, color=False).splitlines()[0].split()[-1] == "DETAIL"


def test_the_rich_facts_table_reads_no_markup_from_a_host():
    f = HostFacts(name="client9", address="10.1.0.29", role="client", reachable=False, reason="[bold red]boom[/] \x1b[2J\nx")
    text = views_plan.render_facts_table([f], width=120, color=True)
    assert "[bold red]boom[/] \\x1b[2J\\nx" in text and "\x1b[2J" not in text


# --- style and findings ---------------------------------------------------------------------------


def test_one_style_helper():
    assert styler(False)("Wave 1", bold=True, fg="red") == "Wave 1"
    assert styler(True)("Wave 1", bold=True) == click.style("Wave 1", bold=True)
    root = Path(reconciler.__file__).parent
    defined = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "style":
                defined.append(str(path.relative_to(root)))
    assert defined == [], f"a style() helper outside reconciler/views/style.py: {defined}"


def test_one_spelling_of_a_finding():
    assert finding_line(Finding(address="member.node3", host="node3", message="not in the cluster")) == "member.node3 (on node3): not in the cluster"
    assert finding_line(Finding(address="package.csync", message="no member up")) == "package.csync: no member up"
    root = Path(reconciler.__file__).parent
    spelled = [
        str(p.relative_to(root))
        for p in [*root.joinpath("views").glob("*.py"), *root.joinpath("cli").glob("*.py")]
        if "' (on {f.host})'" in p.read_text(encoding="utf-8")
    ]
    assert spelled == []
