"""The shared views: the progress view (nothing but plain lines, or nothing, unless on a
terminal outside CI), one style helper, one spelling of a finding."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import click
import pytest

import reconciler
from reconciler.plan.artefact import Finding
from reconciler.views.progress import ProgressView, progress_mode
from reconciler.views.style import finding_line, interactive, styler, use_color

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
    assert finding_line(Finding(address="member.node3", host="node3", message="not in the cluster")) == \
        "member.node3 (on node3): not in the cluster"
    assert finding_line(Finding(address="package.csync", message="no member up")) == "package.csync: no member up"
    root = Path(reconciler.__file__).parent
    spelled = [str(p.relative_to(root)) for p in [*root.joinpath("views").glob("*.py"), *root.joinpath("cli").glob("*.py")]
               if "' (on {f.host})'" in p.read_text(encoding="utf-8")]
    assert spelled == []
