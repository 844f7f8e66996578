"""`csync trust` (registered on the main group by reconciler/cli.py): the members x clients
trust matrix and the failover verdict, from the facts and optionally from live checks.

The work is reconciler.trust's (prediction) and reconciler.trust_live's (live checks); the
views are reconciler.render_trust's. This module probes, prints and picks the exit code.
Nothing here changes a host.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli import Progress, _color, accept_new_option, desired_state_option, load_state, open_pool
from reconciler.errors import CsyncError, ExitCode

NOT_READY = 2

TRUST_EXIT_CODES = f"""
\b
Exit codes:
  {ExitCode.OK}   failover-ready (with --live: and every live check ran and agrees)
  {ExitCode.ERROR}   a host did not answer, a live check did not run, or a live check
      disagrees with the prediction: the verdict cannot be trusted
  {NOT_READY}   not failover-ready: the matrix says why
  {ExitCode.INVALID}   the desired state is invalid
  {ExitCode.USAGE}  bad command line
"""


@click.command(epilog=TRUST_EXIT_CODES)
@desired_state_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("--live", is_flag=True, help="Also run the site's own checks (cfrun on each member to every client, cfagent on each "
              "client against the master's address) and report every disagreement with the prediction.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report (in --format) to FILE; standard output then gets the verdict line only.")
@accept_new_option
def trust(paths, fmt, live, out, accept_new_host_keys) -> int:
    """Show whether the site is failover-ready: the members x clients trust matrix.

    From the facts alone (one probe per host; nothing is changed): will cfrun from each
    member to each client authenticate in both directions, will cfagent on each client
    authenticate the master at the package address, can each member take over the package.
    Clients whose rows are alike are grouped. See docs/TRUST.md.
    """
    from reconciler import render_trust
    from reconciler.probe import probe_site
    from reconciler.trust import trust_report
    from reconciler.trust_live import compare, run_live_checks, verdict

    state = load_state(paths)
    interactive = fmt == "text" and out is None
    progress = Progress(len(state.all_hosts), "probed", enabled=interactive)
    with open_pool(state, accept_new_host_keys) as pool:
        site = probe_site(state, pool, on_done=progress)
        progress.finish()
        report = trust_report(state, site.hosts)
        live_report = None
        if live:
            checks = Progress(len(state.all_hosts) - len(report.unreachable), "live checks", enabled=interactive)
            live_report = run_live_checks(state, pool, report, on_done=lambda _h, _r: checks())
            checks.finish()
    disagreements = compare(report, live_report) if live_report is not None else []
    ready, reasons = verdict(report, live_report, disagreements)
    view = render_trust.TrustView(report, ready, reasons, live_report, tuple(disagreements))
    if fmt == "json":
        text = render_trust.render_json(view)
    elif fmt == "html":
        text = render_trust.render_html(view)
    else:
        text = render_trust.render_text(view, color=out is None and _color())
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as e:
            raise CsyncError(f"cannot write {out}: {e.strerror or e}") from None
        click.echo(render_trust.verdict_line(view))
        click.echo(f"Wrote the {fmt} report to {out}")
    else:
        click.echo(text, nl=False)
    if report.unreachable or disagreements or (live_report is not None and not live_report.complete):
        return ExitCode.ERROR
    return ExitCode.OK if ready else NOT_READY
