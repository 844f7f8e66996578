"""Issue #20: the markdown plan as GitHub shows it. A CommonMark renderer with GitHub's tables
(markdown-it-py, which rich already brings) turns it into HTML, and headless Chromium draws
it. CSYNC_UPDATE_SCREENSHOTS=1 also writes the picture docs/GITOPS.md shows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from markdown_it import MarkdownIt
from PIL import Image

from reconciler.plan.planner import make_plan
from reconciler.views.plan import render_markdown
from tests.lab.test_trust_lab import screenshot
from tests.unit.sitefacts import site
from tests.unit.test_planner import seed_facts

DOCS_IMAGE = Path(__file__).resolve().parent.parent / "docs" / "img" / "plan-comment.png"
STYLE = """body{font:14px -apple-system,'DejaVu Sans',sans-serif;margin:24px;color:#1f2328;max-width:1040px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}
th{background:#f6f8fa}code{background:#eff1f3;padding:1px 4px;border-radius:4px;font-size:12px}
blockquote{border-left:4px solid #d0d7de;margin:0;padding:0 12px;color:#59636e}"""


def test_the_markdown_plan_renders_as_a_pull_request_comment(tmp_path):
    state = site(clients=40)
    md = render_markdown(make_plan(state, seed_facts(state)))
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    assert html.count("<table>") == 3 and "<details>" in html  # one table per wave; a long host list folds
    assert "<td>client1..client40 (40)</td>" in html or "client1..client40" in html
    page = tmp_path / "comment.html"
    page.write_text(f"<!doctype html><meta charset=utf-8><style>{STYLE}</style>{html}")
    shot = tmp_path / "comment.png"
    screenshot(page, shot, tmp_path / "profile", size=(1100, 1000))
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text and tables, not a blank page
    if os.environ.get("CSYNC_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, DOCS_IMAGE)
