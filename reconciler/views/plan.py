"""Views: plans and facts rendered for a terminal, a pull-request comment, or a machine.

The core never prints; these functions return text and the CLI writes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from reconciler.domain.preview import Preview
from reconciler.observe.facts import HostFacts
from reconciler.plan.artefact import Action, Finding, Plan
from reconciler.plan.kinds import spec_of
from reconciler.views.grouping import Group, compress, compress_files, group_actions
from reconciler.views.style import Styler, finding_line, styler


def _symbol(a: Action) -> tuple[str, str]:
    return ("-/+", "yellow") if a.replaces else spec_of(a.kind).symbol


def render_text(plan: Plan, *, color: bool = False, detail: bool = False) -> str:
    """Terraform-like text: the cluster operations first, then the actions by wave, alike
    actions as one group (``detail``: one block per action), each with host, command and why."""
    style = styler(color)
    out: list[str] = []
    if plan.cluster_key:
        out.append(f"Cluster key: {plan.cluster_key} (from {plan.cluster_key_source})")
    if plan.package_node:
        out.append(f"Package node: {plan.package_node}")
    if out:
        out.append("")
    cluster_ops = plan.cluster_actions()
    refused = _refused(plan)
    if cluster_ops or refused:
        out.append(
            style("Cluster operations", fg="magenta", bold=True) + " (they start, halt or reconfigure the package, or dispatch a "
            "member; `csync apply --auto-approve` runs them only with --allow-cluster-ops):"
        )
        for a in cluster_ops:
            out.append(f"  * {a.address}  [{a.kind}] on {a.host}: {a.command}")
            out.extend(_text_lines(_preview_lines(a, _preview_of(plan, a))))
        for p in refused:
            out.append(f"  {style('x', fg='red', bold=True)} {p.action} on {p.host}: not planned (blocked by Serviceguard's preview)")
            out.extend(_text_lines(_preview_lines(None, p)))
        out.append("")
    if not plan.actions:
        out.append(style("No changes.", bold=True) + (" The site matches its desired state." if plan.clean else ""))
    for number, wave in enumerate(plan.waves(), 1):
        out.append(style(f"Wave {number}", bold=True) + f" ({len(wave)} action{'s' * (len(wave) != 1)})")
        groups = [Group((a,)) for a in wave] if detail else _ordered(group_actions(wave))
        for g in groups:
            a = g.first
            sym, colour = _symbol(a)
            count = "" if g.single else f" x {len(g.actions)}"
            out.append(f"  {style(sym, fg=colour, bold=True)} {style(g.address, bold=True)}  [{a.kind}{count}]")
            if g.by_file:
                out.append(f"      on:   {a.host} ({a.host_address})")
                out.append(f"      files: {compress_files(g.files)} ({len(g.actions)} files, each with its own key; --detail lists them one by one)")
                out.append(f"      run:  e.g. {a.command}")
                out.append(f"      why:  e.g. {a.reason}")
            else:
                out.append(f"      on:   {a.host} ({a.host_address})" if g.single else f"      on:   {compress(g.hosts)} ({len(g.actions)} hosts)")
                out.append(f"      run:  {a.command}")
                out.append(f"      why:  {a.reason}")
            after = sorted({d for x in g.actions for d in x.depends_on})
            if after:
                out.append(f"      after: {', '.join(after)}")
        out.append("")
    out.extend(_findings("Blocked (cannot be planned until fixed)", plan.blocked, style, "red"))
    out.extend(_findings("Unknown (not probed; never assumed converged)", plan.unknown, style, "yellow"))
    out.extend(_findings("Notices", plan.notices, style, "cyan"))
    out.append(style(plan.summary(), bold=True))
    if plan.failover_ready_after is not None or plan.failover_notes:
        out.append(f"After apply: failover-ready: {_readiness(plan.failover_ready_after)}")
        out.extend(f"  - {n}" for n in plan.failover_notes)
    return "\n".join(out) + "\n"


def _ordered(groups: list[Group]) -> list[Group]:
    """Cluster operations and single actions first, then the groups (stable otherwise)."""
    return sorted(groups, key=lambda g: (not spec_of(g.first.kind).cluster_op, not g.single))


def _findings(title: str, items: Iterable[Finding], style: Styler, colour: str) -> list[str]:
    items = list(items)
    if not items:
        return []
    lines = [style(f"{title}:", fg=colour, bold=True)]
    lines += [f"  ! {finding_line(f)}" for f in items]
    return lines + [""]


# A pull-request comment: GitHub refuses one over 65,536 characters.
MARKDOWN_LIMIT = 60_000
HOSTS_INLINE = 8  # host lists longer than this (after ranges) fold into <details>


def render_markdown(plan: Plan, *, limit: int = MARKDOWN_LIMIT) -> str:
    """The plan as a pull-request comment, alike actions grouped, never longer than ``limit``
    characters: past it, host lists go first, then groups, and the comment says what was
    left out and that the JSON plan is the whole of it."""
    for hosts, max_groups in ((True, None), (False, None), (False, 200), (False, 50), (False, 10)):
        text = _markdown(plan, hosts=hosts, max_groups=max_groups)
        if len(text) <= limit:
            return text
    return text[: limit - 200] + "\n\n*(cut at the size limit of a comment: the full plan is the JSON artefact)*\n"


def _markdown(plan: Plan, *, hosts: bool, max_groups: int | None) -> str:
    out = [f"### csync plan for site `{plan.site}`", "", f"**{plan.summary()}**", ""]
    meta = [f"desired state `{plan.desired_state_digest}`"]
    if plan.git_commit:
        meta.append(f"commit `{plan.git_commit}`")
    if plan.cluster_key:
        meta.append(f"cluster key `{plan.cluster_key}`")
    if plan.package_node:
        meta.append(f"package node `{plan.package_node}`")
    out += [" · ".join(meta), ""]
    if plan.failover_ready_after is not None or plan.failover_notes:
        out += [f"Failover-ready after apply: **{_readiness(plan.failover_ready_after)}**", ""]
    cluster_ops = plan.cluster_actions()
    refused = _refused(plan)
    if cluster_ops or refused:
        out += [
            "#### Cluster operations",
            "",
            "These start, halt or reconfigure the package, or dispatch a member. Review them: "
            "`csync apply --auto-approve` runs them only with `--allow-cluster-ops`; a saved plan runs as it is.",
            "",
        ]
        for a in cluster_ops:
            out.append(f"- `{a.address}` [{a.kind}] on {a.host}: `{_md(a.command)}`")
            out += _md_lines(_preview_lines(a, _preview_of(plan, a)))
        for p in refused:
            out.append(f"- **not planned**: `{p.action}` on {p.host}, blocked by Serviceguard's preview")
            out += _md_lines(_preview_lines(None, p))
        out.append("")
    if not plan.actions:
        out += ["No changes.", ""]
    shown = left_groups = left_hosts = 0
    for number, wave in enumerate(plan.waves(), 1):
        groups = _ordered(group_actions(wave))
        out += [f"#### Wave {number}", "", "| | address | kind | hosts | command | why |", "|---|---|---|---|---|---|"]
        for g in groups:
            if max_groups is not None and shown >= max_groups and not spec_of(g.first.kind).cluster_op:
                left_groups += 1
                continue
            shown += 1
            a = g.first
            example = "e.g. " if g.by_file else ""
            if g.single:
                where = a.host
            else:
                # a group of hosts, or of files on one host
                prefix, listed, noun = (f"{a.host}: ", compress_files(g.files), "files") if g.by_file else ("", compress(g.hosts), "hosts")
                if not hosts:
                    where, left_hosts = f"{prefix}{len(g.actions)} {noun}", left_hosts + 1
                elif listed.count(",") >= HOSTS_INLINE:
                    where = f"{prefix}<details><summary>{len(g.actions)} {noun}</summary>{_md(listed)}</details>"
                else:
                    where = f"{prefix}{_md(listed)} ({len(g.actions)}{' files' if g.by_file else ''})"
            out.append(f"| `{_symbol(a)[0]}` | `{_md(g.address)}` | {a.kind} | {where} | {example}`{_md(a.command)}` | {example}{_md(a.reason)} |")
        out.append("")
    if left_hosts or left_groups:
        what = []
        if left_hosts:
            what.append(f"the host lists of {left_hosts} group(s)")
        if left_groups:
            what.append(f"{left_groups} group(s) of actions")
        out += [
            f"> **Left out to fit a comment:** {' and '.join(what)}. Every cluster operation is listed above; the "
            f"whole plan, per action, is the JSON plan file (`csync plan --out PLANFILE`, or `csync show PLANFILE`).",
            "",
        ]
    for title, items in (("Blocked", plan.blocked), ("Unknown", plan.unknown), ("Notices", plan.notices)):
        if items:
            out += [f"#### {title}", ""] + [f"- `{f.address}`{f' on {f.host}' if f.host else ''}: {_md(f.message)}" for f in items] + [""]
    out.append("<details><summary>Plan file</summary>\n\nApply exactly this plan with `csync apply PLANFILE`.\n</details>")
    return "\n".join(out) + "\n"


def _preview_of(plan: Plan, a: Action) -> Preview | None:
    return next((p for p in plan.previews if p.action == a.id), None)


def _refused(plan: Plan) -> list[Preview]:
    """Previews whose operation the plan does not hold: Serviceguard did not confirm it."""
    planned = {a.id for a in plan.actions}
    return [p for p in plan.previews if p.blocks and p.action not in planned]


def _preview_lines(a: Action | None, p: Preview | None) -> list[tuple[str, str, str]]:
    """(label, what is predicted, a note) lines showing Serviceguard's prediction of a cluster
    operation beside csync's."""
    if p is None:
        if a is not None and spec_of(a.kind).preview is None:
            return [("Serviceguard:", "", "no preview (not a Serviceguard command)")]
        return [("Serviceguard:", "", "not previewed")]
    if p.agrees is None:
        return [("Serviceguard:", "", p.verdict)]
    where = f"{p.command} on {p.host}" + (f", {p.release}" if p.release else "")
    if p.exit_code == 0:
        said, label = ", ".join(p.predicted) or "no change", "Serviceguard predicts:"
        how = "agrees" if p.agrees else "DISAGREES: blocked"
    else:
        said, label, how = p.verdict, "Serviceguard:", "blocked"
    return [("csync predicts:", ", ".join(p.expected) or "no change", ""), (label, said, f"{where}: {how}")]


def _text_lines(lines: list[tuple[str, str, str]]) -> list[str]:
    return [f"      {label:<22} {said}{'  (' + note + ')' if said and note else note}" for label, said, note in lines]


def _md_lines(lines: list[tuple[str, str, str]]) -> list[str]:
    return [f"  - {label} {_code(said) if said else ''}{' (' + _md(note) + ')' if said and note else _md(note)}" for label, said, note in lines]


def _code(text: str) -> str:
    """``text`` as inline code in markdown (no backtick of a host's message can end it)."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


def _readiness(ready: bool | None) -> str:
    return "unknown" if ready is None else "yes" if ready else "no"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def facts_json(facts: Iterable[HostFacts]) -> str:
    hosts = [f.model_dump(mode="json", exclude={"keys": {"__all__": {"pem"}}}) for f in facts]
    return json.dumps({"hosts": hosts}, indent=2, sort_keys=True) + "\n"


FACTS_COLUMNS = ("HOST", "ADDRESS", "ROLE", "STATE", "KEYS", "OWN KEY", "DETAIL")


def facts_rows(facts: Iterable[HostFacts]) -> list[tuple[str, ...]]:
    """One row per host with what csync saw, in the order of ``FACTS_COLUMNS``."""
    rows: list[tuple[str, ...]] = []
    for f in facts:
        if not f.reachable:
            rows.append((f.name, f.address, f.role, "UNREACHABLE", "-", "-", f.reason or ""))
            continue
        detail = []
        if f.hostname and f.hostname != f.name:
            detail.append(f"hostname {f.hostname}")
        if f.cluster:
            pkgs = ", ".join(f"{p.name} {p.status}" + (f" on {p.owner}" if p.owner else "") for p in f.cluster.packages.values())
            detail.append(f"cluster {f.cluster.name} {f.cluster.status}; {pkgs}")
        if f.cluster_error:
            detail.append(f.cluster_error)
        if f.package_fs and f.package_fs.mounted:
            detail.append("package filesystem mounted")
        if f.ppkeys_dir in ("symlink", "file", "other"):
            detail.append(f"ppkeys is {'a symbolic link' if f.ppkeys_dir == 'symlink' else 'not a directory'} (not read)")
        bad = [k.name for k in f.keys.values() if k.problem]
        if bad:
            detail.append(f"unusable: {', '.join(bad[:3])}{'...' if len(bad) > 3 else ''}")
        own = f.own_key.fingerprint[:19] + "…" if f.own_key and f.own_key.fingerprint else "none"
        peers = sum(1 for n in f.keys if n.startswith("root-"))
        rows.append((f.name, f.address, f.role, "ok" if f.cfengine_dir == "dir" else f"cfengine dir {f.cfengine_dir}", str(peers), own, "; ".join(detail)))
    return rows


def render_facts_text(facts: Iterable[HostFacts], *, color: bool = False) -> str:
    """The facts as plain columns (a pipe, a file, a CI log): a stable layout scripts and
    tests may read; DETAIL is last and never padded."""
    style = styler(color)
    rows = [FACTS_COLUMNS, *facts_rows(facts)]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = []
    for i, r in enumerate(rows):
        line = "  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6]
        if i == 0:
            line = style(line, bold=True)
        elif r[3] == "UNREACHABLE":
            line = style(line, fg="red")
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def _printable(text: str) -> str:
    """``text`` with control characters (a host's terminal escapes, newlines) shown as \\x.. escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


DETAIL_MIN_WIDTH = 30  # narrower than this, DETAIL goes on lines of its own under its host


def render_facts_table(facts: Iterable[HostFacts], *, width: int = 100, color: bool = True) -> str:
    """The facts drawn with rich for a terminal ``width`` columns wide: a table with a rule
    under its header whose DETAIL column wraps; on a terminal too narrow for that, each
    host's detail is wrapped on the lines under its row. Cells are rich Text, control
    characters escaped: nothing a host reports is read as markup or reaches the terminal raw."""
    from io import StringIO

    from rich import box
    from rich.console import Console, Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    rows = [tuple(_printable(c) for c in r) for r in facts_rows(facts)]
    six = [max(len(r[i]) for r in [FACTS_COLUMNS, *rows]) for i in range(6)]
    detail = min(DETAIL_MIN_WIDTH, max(len(r[6]) for r in [FACTS_COLUMNS, *rows]))
    wide = sum(six) + 3 * 6 + detail <= width  # 3: the gap between two columns
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for name in FACTS_COLUMNS[:6]:
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    if wide:
        table.add_column(FACTS_COLUMNS[6], overflow="fold", min_width=detail)

    def state(r) -> Text:
        return Text(r[3], style="green" if r[3] == "ok" else "bold" if r[3] == "UNREACHABLE" else "yellow")

    for r in rows:
        cells = [Text(r[0], style="bold"), Text(r[1]), Text(r[2]), state(r), Text(r[4]), Text(r[5])]
        table.add_row(*cells, *([Text(r[6])] if wide else []), style="red" if r[3] == "UNREACHABLE" else None)
    out = StringIO()
    console = Console(file=out, width=width, force_terminal=color, no_color=not color, highlight=False)
    if wide:
        console.print(table)
        return out.getvalue()
    lines = console.render_lines(table, pad=False)
    head = len(lines) - len(rows)  # the header and its rule: one line per host follows

    def text(line) -> Text:
        return Text.assemble(*((seg.text, seg.style or "") for seg in line))

    parts: list[Text | Padding] = [text(line) for line in lines[:head]]
    for r, line in zip(rows, lines[head:]):
        parts.append(text(line))
        if r[6]:
            parts.append(Padding(Text(r[6], style="red" if r[3] == "UNREACHABLE" else ""), (0, 0, 0, 4)))
    console.print(Group(*parts))
    return out.getvalue()
