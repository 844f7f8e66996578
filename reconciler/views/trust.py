"""Views of the trust matrix (`csync trust`): text for a terminal, JSON, a self-contained HTML page.

The core never prints; these functions return text and the CLI writes it. Clients whose
row of cells is the same (the same outcome for every member's cfrun and for cfagent, for
the same reasons with the client's own name and address taken out) are shown as one
group, so a site of 8 members and 200 clients fits a terminal: a converged site is one
line, and each kind of breakage one group that names its causes once. A group names its
clients with the plan's ranges (`client1..client200`), every client exactly once. With
``detail`` the text and the HTML show one row per client instead; JSON is always the whole
per-client matrix.
"""

from __future__ import annotations

import dataclasses
import html
import json
import textwrap
from dataclasses import dataclass

from reconciler.domain import dsau
from reconciler.domain.keys import show_key
from reconciler.trust.live import SUFFIX, LiveResult, TrustView
from reconciler.trust.predict import Cause, Check, Column, TrustReport
from reconciler.views.grouping import compress
from reconciler.views.style import styler

FORMAT_VERSION = 1
CLIENT = "<client>"
AGENT = "cfagent"


def verdict_line(view: TrustView) -> str:
    if view.failover_ready:
        checked = " (predicted from the facts and confirmed by the live checks)" if view.live else " (predicted from the facts)"
        return f"failover-ready: yes{checked}"
    return f"failover-ready: no: {'; '.join(view.reasons)}"


# --- grouping ------------------------------------------------------------------------------


def _normal(cause: Cause, client: str, address: str) -> Cause:
    """``cause`` with the client's own name and key file replaced by placeholders."""
    own_file = dsau.peer_key_name(address)
    return dataclasses.replace(
        cause,
        host=CLIENT if cause.host == client else cause.host,
        whose=CLIENT if cause.whose == client else cause.whose,
        file=f"root-{CLIENT}.pub" if cause.file == own_file else cause.file,
    )


def _problems(check: Check, client: str, address: str) -> tuple[str, ...]:
    return tuple(_normal(c, client, address).describe() for c in check.causes)


def _key(column: Column) -> str | None:
    """The cell's key in a TrustView's disagreements: the column's label; None for cfagent
    against the master's address."""
    return None if column.label == AGENT else column.label


def _columns(r: TrustReport) -> tuple[Column, ...]:
    """The matrix's columns: the report's, or for a report without them, members then cfagent."""
    if r.columns:
        return r.columns
    return tuple(Column(m, "cfrun", m, r.addresses.get(m, "")) for m in r.members) + (Column(AGENT, "cfagent", None, r.server_address),)


def _cell(view: TrustView, column: Column, client: str) -> str:
    check = view.report.check(column, client)
    return check.symbol + ("!" if view.disagrees(_key(column), client) else "")


@dataclass(frozen=True)
class ClientGroup:
    clients: tuple[str, ...]
    cells: tuple[str, ...]  # one per column (cfrun from each member address, then cfagent): ok | FAIL | ? (+ "!" when the live check disagrees)
    problems: tuple[tuple[str, tuple[str, ...]], ...]  # (column, causes with <client> for the client)

    @property
    def ok(self) -> bool:
        return all(c == "ok" for c in self.cells)


def group_clients(view: TrustView, *, detail: bool = False) -> list[ClientGroup]:
    """Clients with identical rows, in order of first appearance; with ``detail``, one group
    per client (in declared order), each with its own causes."""
    r = view.report
    columns = _columns(r)

    def own(c: str) -> ClientGroup:
        checks = [(col.label, r.check(col, c)) for col in columns]
        cells = tuple(_cell(view, col, c) for col in columns)
        return ClientGroup((c,), cells, tuple((col, chk.problems) for col, chk in checks if chk.ok is not True))

    if detail:
        return [own(c) for c in r.clients]
    groups: dict[tuple, list[str]] = {}
    for c in r.clients:
        address = r.addresses.get(c, "")
        checks = [(col.label, r.check(col, c)) for col in columns]
        cells = tuple(_cell(view, col, c) for col in columns)
        problems = tuple((col, _problems(chk, c, address)) for col, chk in checks if chk.ok is not True)
        groups.setdefault((cells, problems), []).append(c)
    # a group of one names its client in its causes
    return [own(names[0]) if len(names) == 1 else ClientGroup(tuple(names), cells, problems) for (cells, problems), names in groups.items()]


def client_label(names: tuple[str, ...] | list[str]) -> str:
    """'client1..client180, client190 (181)': every client of a group, runs of names in
    sequence as ranges (the plan's own spelling, views.grouping.compress), and the count."""
    return f"{compress(names)} ({len(names)})"


# --- text ----------------------------------------------------------------------------------

_COLOURS = {"ok": "green", "FAIL": "red", "?": "yellow"}


LABEL_WIDTH = 44  # a longer group label goes on lines of its own, above its cells
WRAP = 100  # ... wrapped at this width, between two names


def render_text(view: TrustView, *, color: bool = False, detail: bool = False) -> str:
    """The verdict, the takeover table and the matrix, alike clients grouped (``detail``: one
    row per client)."""
    style = styler(color)

    def cell(symbol: str, w: int) -> str:
        padded = symbol.ljust(w)
        return style(padded, fg="magenta" if symbol.endswith("!") else _COLOURS.get(symbol, None), bold=symbol != "ok")

    r = view.report
    out = [style(verdict_line(view), bold=True, fg="green" if view.failover_ready else "red"), ""]
    if r.package:
        where = f"package {r.package} at {r.server_address}, " + (f"running on {r.server}" if r.server else "not running")
        out.append(f"site {r.site}: {where}" + (f"; cluster key {show_key(r.cluster_key, r.cluster_key_md5)}" if r.cluster_key else "; cluster key unknown"))
    else:
        out.append(f"site {r.site}: standalone master {r.server} at {r.server_address}")
    for host, why in r.unreachable.items():
        out.append(style(f"  unreachable: {host}: {why}", fg="yellow"))
    out.append("")

    if r.package:
        out.append(style("Takeover", bold=True) + " (can each member run the package and serve every client?)")
    else:
        out.append(style("Master", bold=True) + " (does it hold every client's key?)")
    name_w = max([len(t.member) for t in r.takeover] + [4])
    for t in r.takeover:
        sym = "?" if t.can_take_over is None else ("yes" if t.can_take_over else "no")
        colour = "yellow" if t.can_take_over is None else ("green" if t.can_take_over else "red")
        out.append(f"  {t.member.ljust(name_w)}  {style(sym.ljust(3), fg=colour, bold=sym != 'yes')}  {'; '.join(t.problems)}".rstrip())
    out.append("")

    matrix = _columns(r)
    labels_of = {col.label: col.label for col in matrix}
    columns = [col.label for col in matrix]
    widths = [max(len(c), 5) for c in columns]
    legend = []
    if sum(w + 1 for w in widths) > 60:  # long member names or extra addresses: short column labels
        cfrun_cols = [col for col in matrix if col.tool == "cfrun"]
        agent_cols = [col for col in matrix if col.tool == "cfagent"]
        short = [f"m{i}" for i in range(1, len(cfrun_cols) + 1)] + [AGENT if col.label == AGENT else f"a{i}" for i, col in enumerate(agent_cols, 1)]
        legend = [f"  {sh} = {col.label}" for sh, col in zip(short, cfrun_cols + agent_cols) if sh != col.label]
        labels_of = {col.label: sh for col, sh in zip(cfrun_cols + agent_cols, short)}
        columns = [labels_of[col.label] for col in matrix]
        widths = [max(len(c), 5) for c in columns]
    groups = group_clients(view, detail=detail)
    labels = [g.clients[0] if detail else client_label(g.clients) for g in groups]
    label_w = max([len(x) for x in labels if len(x) <= LABEL_WIDTH] + [7])
    agents = ", ".join(col.address for col in matrix if col.tool == "cfagent")
    how = "one row per client" if detail else "alike clients grouped"
    out.append(style("Clients", bold=True) + f" (cfrun from each member address; cfagent against {agents}); {how}")
    out.extend(legend)
    out.append("  " + "".ljust(label_w) + "  " + " ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for g, label in zip(groups, labels):
        cells = " ".join(cell(s, w) for s, w in zip(g.cells, widths)).rstrip()
        if len(label) > label_w:
            out.extend(f"  {line}" for line in textwrap.wrap(label, WRAP, break_long_words=False, break_on_hyphens=False))
            label = ""
        out.append(f"  {label.ljust(label_w)}  {cells}")
        if len(g.problems) > 1 and len({p for _, p in g.problems}) == 1:  # e.g. a client that did not answer
            out.append(f"      all: {'; '.join(g.problems[0][1])}")
            continue
        for column, problems in g.problems:
            out.append(f"      {labels_of.get(column, column)}: {'; '.join(problems)}")
    out.append("")
    if view.live is not None:
        live = view.live
        ran = (
            sum(1 for row in live.cfrun.values() for x in row.values() if x)
            + sum(1 for x in live.cfagent.values() if x)
            + sum(1 for row in live.cfagent_extra.values() for x in row.values() if x)
        )
        out.append(style("Live checks", bold=True) + f": {ran} answered in {live.seconds:.1f}s")
        if view.disagreements:
            out.append(style(f"  {len(view.disagreements)} disagreement(s) with the prediction ({SUFFIX}):", fg="magenta", bold=True))
            out.extend(f"  ! {d.where}: {d.why}" for d in view.disagreements)
        else:
            out.append("  every live check agrees with the prediction")
        out.extend(style(f"  problem: {e}", fg="yellow") for e in live.errors)
        out.append("")
    out.append(
        "ok: will authenticate; FAIL: will not (causes listed under the row); ?: unknown (a host did not answer)"
        + ("; !: the live check disagrees" if view.live is not None else "")
    )
    return "\n".join(out) + "\n"


# --- JSON ----------------------------------------------------------------------------------


def _live_dict(result: LiveResult | None) -> dict | None:
    return None if result is None else dataclasses.asdict(result)


def _check_dict(check: Check) -> dict:
    return {"ok": check.ok, "problems": list(check.problems), "causes": [dataclasses.asdict(c) for c in check.causes]}


def to_dict(view: TrustView) -> dict:
    r = view.report
    doc: dict = {
        "format_version": FORMAT_VERSION,
        "site": r.site,
        "failover_ready": view.failover_ready,
        "reasons": list(view.reasons),
        "predicted_failover_ready": r.failover_ready,
        "server_address": r.server_address,
        "server": r.server,
        "package_node": r.package_node,
        "cluster_key": r.cluster_key,
        "cluster_key_md5": r.cluster_key_md5,
        "members": list(r.members),
        "columns": [dataclasses.asdict(col) for col in _columns(r)],
        "clients": list(r.clients),
        "unreachable": dict(r.unreachable),
        "takeover": [dataclasses.asdict(t) for t in r.takeover],
        "cfrun": [],
        "cfagent": [],
        "cfagent_extra": [],
    }
    for col in _columns(r):
        for c in r.clients:
            if col.tool == "cfrun":
                cell = {"member": col.member, "column": col.label, "address": col.address, "client": c, **_check_dict(r.check(col, c))}
                where = "cfrun"
            else:
                cell = {"client": c, **_check_dict(r.check(col, c))}
                where = "cfagent"
                if col.label != AGENT:
                    cell = {"address": col.address, **cell}
                    where = "cfagent_extra"
            if view.live is not None:
                cell["live"] = _live_dict(view.live.result(col, c))
            doc[where].append(cell)
    if view.live is not None:
        doc["live"] = {"seconds": round(view.live.seconds, 3), "errors": list(view.live.errors)}
        doc["disagreements"] = [{**dataclasses.asdict(d), "predicted_problems": list(d.predicted_problems), "message": d.message} for d in view.disagreements]
    return doc


def render_json(view: TrustView) -> str:
    return json.dumps(to_dict(view), indent=2) + "\n"


# --- HTML ----------------------------------------------------------------------------------

_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 24px; color: #1d2330; background: #fff; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 22px 0 8px; }
.verdict { padding: 12px 16px; border-radius: 6px; font-size: 18px; font-weight: bold; color: #fff; }
.verdict.yes { background: #1e7d32; } .verdict.no { background: #b3261e; }
.verdict ul { margin: 6px 0 0; font-size: 14px; font-weight: normal; }
.meta { color: #444; font-size: 14px; margin: 10px 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #c9ced6; padding: 4px 8px; text-align: center; }
th { background: #eef1f5; }
th.client, td.client { text-align: left; font-weight: bold; background: #f7f8fa; }
td.ok { background: #34a853; color: #fff; }
td.fail { background: #d93025; color: #fff; font-weight: bold; }
td.unknown { background: #9aa0a6; color: #fff; }
td.disagree { outline: 3px solid #8e24aa; outline-offset: -3px; }
td.problems { text-align: left; max-width: 640px; overflow-wrap: anywhere; }
td.problems ul { margin: 0; padding-left: 16px; }
td.client { max-width: 360px; overflow-wrap: anywhere; }
td.client details { font-weight: normal; }
td.client summary { font-weight: bold; cursor: pointer; }
.legend span { display: inline-block; padding: 2px 8px; margin-right: 10px; border-radius: 3px; color: #fff; font-size: 13px; }
.legend .ok { background: #34a853; } .legend .fail { background: #d93025; } .legend .unknown { background: #9aa0a6; }
.legend .disagree { background: #fff; color: #1d2330; outline: 3px solid #8e24aa; }
ul.causes { margin: 4px 0 10px; font-size: 13px; }
.note { font-size: 13px; color: #444; }
"""

_CLASS = {True: "ok", False: "fail", None: "unknown"}
_SHOW = {True: "ok", False: "FAIL", None: "?"}


def _td(check: Check, disagree: bool, live: LiveResult | None, with_live: bool) -> str:
    tip = "; ".join(check.problems) or "will authenticate"
    if with_live:
        tip += f"\nlive: {live.line if live else 'no answer'}"
    cls = _CLASS[check.ok] + (" disagree" if disagree else "")
    return f'<td class="{cls}" title="{html.escape(tip)}">{_SHOW[check.ok]}{"!" if disagree else ""}</td>'


CLIENTS_INLINE = 8  # a group's client list longer than this (after ranges) folds into <details>


def _clients_cell(names: tuple[str, ...]) -> str:
    """Every client of a group, as ranges; a long list folded (no script: <details>)."""
    listed = compress(names)
    if listed.count(",") < CLIENTS_INLINE:
        return f"{html.escape(listed)} ({len(names)})"
    return f"<details><summary>{len(names)} clients</summary>{html.escape(listed)}</details>"


def _group_td(view: TrustView, g: ClientGroup, col: Column, symbol: str, causes: tuple[str, ...]) -> str:
    """A group's cell: its symbol and, as the tooltip, the causes it shares (``<client>``: each
    client of the group) and, with --live, how many of its clients' checks answered."""
    disagree = symbol.endswith("!")
    shown = symbol.rstrip("!")
    tip = "; ".join(causes) or "will authenticate"
    if view.live is not None:
        answered = sum(1 for c in g.clients if view.live.result(col, c) is not None)
        tip += f"\nlive: {answered} of {len(g.clients)} answered"
        if answered:
            tip += "; the live check disagrees (see Live checks)" if disagree else "; agrees with the prediction"
    cls = {"ok": "ok", "FAIL": "fail"}.get(shown, "unknown") + (" disagree" if disagree else "")
    return f'<td class="{cls}" title="{html.escape(tip)}">{html.escape(symbol)}</td>'


def render_html(view: TrustView, *, detail: bool = False) -> str:
    """A self-contained page (inline CSS, no scripts, no network resources): alike clients
    as one row with their shared causes (``detail``: one row per client, each cell's causes
    as its tooltip, and the grouped problems under the grid)."""
    r = view.report
    e = html.escape
    live = view.live
    with_live = live is not None
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>csync trust: site {e(r.site)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>csync trust: site {e(r.site)}</h1>",
        f'<div class="verdict {"yes" if view.failover_ready else "no"}">failover-ready: {"yes" if view.failover_ready else "no"}',
    ]
    if view.reasons:
        parts.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in view.reasons) + "</ul>")
    parts.append("</div>")
    if r.package:
        where = f"package {r.package} at {r.server_address}, " + (f"running on {r.server}" if r.server else "not running")
        where += f"; cluster key {show_key(r.cluster_key, r.cluster_key_md5) if r.cluster_key else 'unknown'}"
    else:
        where = f"standalone master {r.server} at {r.server_address}"
    parts.append(
        f'<p class="meta">{e(where)}; {len(r.members)} member(s), {len(r.clients)} client(s)'
        + ("; live checks run" if with_live else "; predicted from the facts (no live checks)")
        + "</p>"
    )
    if r.unreachable:
        parts.append('<p class="meta">Unreachable: ' + "; ".join(f"{e(h)}: {e(w)}" for h, w in r.unreachable.items()) + "</p>")

    parts.append('<h2>Takeover</h2><table><tr><th class="client">member</th><th>can take over</th><th>problems</th></tr>')
    for t in r.takeover:
        sym = "?" if t.can_take_over is None else ("yes" if t.can_take_over else "no")
        parts.append(
            f'<tr><td class="client">{e(t.member)}</td><td class="{_CLASS[t.can_take_over]}">{sym}</td>'
            f'<td class="problems">{e("; ".join(t.problems))}</td></tr>'
        )
    parts.append("</table>")

    parts.append(
        f'<h2>Trust matrix</h2><p class="note">cfrun from each member address to each client; cfagent on each client '
        f"against {e(', '.join(col.address for col in _columns(r) if col.tool == 'cfagent'))}. Hover a cell for its causes.</p>"
    )
    parts.append(
        '<p class="legend"><span class="ok">ok: will authenticate</span><span class="fail">FAIL: will not</span>'
        '<span class="unknown">?: unknown (a host did not answer)</span>'
        + ('<span class="disagree">!: the live check disagrees</span>' if with_live else "")
        + "</p>"
    )
    matrix = _columns(r)
    header = "".join(f'<th title="{e(col.address)}">{e(col.label)}</th>' for col in matrix)
    if detail:
        parts.append(f'<table><tr><th class="client">client</th>{header}</tr>')
        for c in r.clients:
            cells = "".join(_td(r.check(col, c), view.disagrees(_key(col), c), live.result(col, c) if live is not None else None, with_live) for col in matrix)
            parts.append(f'<tr><td class="client" title="{e(r.addresses.get(c, ""))}">{e(c)}</td>{cells}</tr>')
        parts.append("</table>")
        failing = [g for g in group_clients(view) if not g.ok]
        if failing:
            parts.append("<h2>Problems</h2>")
            for g in failing:
                parts.append(f'<p><b>{e(client_label(g.clients))}</b></p><ul class="causes">')
                for column, problems in g.problems:
                    parts.append(f"<li><b>{e(column)}</b>: {e('; '.join(problems))}</li>")
                parts.append("</ul>")
    else:
        parts.append(f'<table><tr><th class="client">clients</th>{header}<th>causes (<code>&lt;client&gt;</code>: each client of the row)</th></tr>')
        for g in group_clients(view):
            causes = dict(g.problems)
            cells = "".join(_group_td(view, g, col, symbol, causes.get(col.label, ())) for col, symbol in zip(matrix, g.cells))
            listed = "".join(f"<li><b>{e(col)}</b>: {e('; '.join(problems))}</li>" for col, problems in g.problems)
            parts.append(
                f'<tr><td class="client">{_clients_cell(g.clients)}</td>{cells}<td class="problems">{f"<ul>{listed}</ul>" if listed else ""}</td></tr>'
            )
        parts.append("</table>")
        parts.append('<p class="note">Alike clients are one row; <code>csync trust --detail --format html</code> shows one row per client.</p>')
    if live is not None:
        parts.append("<h2>Live checks</h2>")
        if view.disagreements:
            parts.append(f'<p>{len(view.disagreements)} disagreement(s) with the prediction ({e(SUFFIX)}):</p><ul class="causes">')
            parts.extend(f"<li>{e(d.where)}: {e(d.why)}</li>" for d in view.disagreements)
            parts.append("</ul>")
        else:
            parts.append("<p>Every live check agrees with the prediction.</p>")
        if live.errors:
            parts.append('<ul class="causes">' + "".join(f"<li>{e(x)}</li>" for x in live.errors) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
