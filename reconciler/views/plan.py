"""Views: plans and facts rendered for a terminal, a pull-request comment, or a machine.

The core never prints; these functions return text and the CLI writes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from reconciler.observe.facts import HostFacts
from reconciler.plan.artefact import Action, Finding, Plan
from reconciler.plan.kinds import spec_of
from reconciler.views.style import Styler, finding_line, styler


def _symbol(a: Action) -> tuple[str, str]:
    return ("-/+", "yellow") if a.replaces else spec_of(a.kind).symbol


def render_text(plan: Plan, *, color: bool = False) -> str:
    """Terraform-like text: actions grouped by wave, each with host, command and why."""
    style = styler(color)
    out: list[str] = []
    if plan.cluster_key:
        out.append(f"Cluster key: {plan.cluster_key} (from {plan.cluster_key_source})")
    if plan.package_node:
        out.append(f"Package node: {plan.package_node}")
    if out:
        out.append("")
    if not plan.actions:
        out.append(style("No changes.", bold=True) + (" The site matches its desired state." if plan.clean else ""))
    for number, wave in enumerate(plan.waves(), 1):
        out.append(style(f"Wave {number}", bold=True) + f" ({len(wave)} action{'s' * (len(wave) != 1)})")
        for a in wave:
            sym, colour = _symbol(a)
            out.append(f"  {style(sym, fg=colour, bold=True)} {style(a.address, bold=True)}  [{a.kind}]")
            out.append(f"      on:   {a.host} ({a.host_address})")
            out.append(f"      run:  {a.command}")
            out.append(f"      why:  {a.reason}")
            if a.depends_on:
                out.append(f"      after: {', '.join(a.depends_on)}")
        out.append("")
    out.extend(_findings("Blocked (cannot be planned until fixed)", plan.blocked, style, "red"))
    out.extend(_findings("Unknown (not probed; never assumed converged)", plan.unknown, style, "yellow"))
    out.extend(_findings("Notices", plan.notices, style, "cyan"))
    out.append(style(plan.summary(), bold=True))
    if plan.failover_ready_after is not None:
        out.append(f"After apply: failover-ready: {'yes' if plan.failover_ready_after else 'no'}")
        out.extend(f"  - {n}" for n in plan.failover_notes)
    return "\n".join(out) + "\n"


def _findings(title: str, items: Iterable[Finding], style: Styler, colour: str) -> list[str]:
    items = list(items)
    if not items:
        return []
    lines = [style(f"{title}:", fg=colour, bold=True)]
    lines += [f"  ! {finding_line(f)}" for f in items]
    return lines + [""]


def render_markdown(plan: Plan) -> str:
    """The plan as a pull-request comment."""
    out = [f"### csync plan for site `{plan.site}`", "", f"**{plan.summary()}**", ""]
    meta = [f"desired state `{plan.desired_state_digest}`"]
    if plan.git_commit:
        meta.append(f"commit `{plan.git_commit}`")
    if plan.cluster_key:
        meta.append(f"cluster key `{plan.cluster_key}`")
    if plan.package_node:
        meta.append(f"package node `{plan.package_node}`")
    out += [" · ".join(meta), ""]
    if plan.failover_ready_after is not None:
        out += [f"Failover-ready after apply: **{'yes' if plan.failover_ready_after else 'no'}**", ""]
    if not plan.actions:
        out += ["No changes.", ""]
    for number, wave in enumerate(plan.waves(), 1):
        out += [f"#### Wave {number}", "", "| | address | kind | host | command | why |", "|---|---|---|---|---|---|"]
        for a in wave:
            out.append(f"| `{_symbol(a)[0]}` | `{a.address}` | {a.kind} | {a.host} | `{_md(a.command)}` | {_md(a.reason)} |")
        out.append("")
    for title, items in (("Blocked", plan.blocked), ("Unknown", plan.unknown), ("Notices", plan.notices)):
        if items:
            out += [f"#### {title}", ""] + [f"- `{f.address}`{f' on {f.host}' if f.host else ''}: {_md(f.message)}" for f in items] + [""]
    out.append("<details><summary>Plan file</summary>\n\nApply exactly this plan with `csync apply PLANFILE`.\n</details>")
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def facts_json(facts: Iterable[HostFacts]) -> str:
    hosts = [f.model_dump(mode="json", exclude={"keys": {"__all__": {"pem"}}}) for f in facts]
    return json.dumps({"hosts": hosts}, indent=2, sort_keys=True) + "\n"


def render_facts_text(facts: Iterable[HostFacts], *, color: bool = False) -> str:
    """A table: one row per host with what csync saw."""
    rows = [("HOST", "ADDRESS", "ROLE", "STATE", "KEYS", "OWN KEY", "DETAIL")]
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
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    style = styler(color)
    lines = []
    for i, r in enumerate(rows):
        line = "  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6]
        if i == 0:
            line = style(line, bold=True)
        elif r[3] == "UNREACHABLE":
            line = style(line, fg="red")
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"
