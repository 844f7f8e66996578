"""The shared views: one style helper, one spelling of a finding."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import click

import reconciler
from reconciler.plan.artefact import Finding
from reconciler.views.style import finding_line, styler, use_color


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_colour_follows_the_stream_and_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(Terminal()) and not use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Terminal())


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
