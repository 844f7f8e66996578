"""`csync trust` (registered on the main group by reconciler/cli.py): the members x clients
trust matrix and the failover verdict, from the facts and optionally from live checks.

The work is reconciler.trust.predict's (prediction) and reconciler.trust.live's (live checks); the
views are reconciler.views.trust's. This module probes, prints and picks the exit code.
Nothing here changes a host.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.main import (
    Progress,
    accept_new_option,
    desired_state_option,
    load_state,
    open_pool,
)
from reconciler.errors import CsyncError, ExitCode
from reconciler.views.style import use_color

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
    from reconciler.trust.live import assess
    from reconciler.views import trust as render_trust

    state = load_state(paths)
    interactive = fmt == "text" and out is None
    probed = Progress(len(state.all_hosts), "probed", enabled=interactive)
    checked = Progress(len(state.all_hosts), "live checks", enabled=interactive)
    with open_pool(state, accept_new_host_keys) as pool:
        view = assess(state, pool, live=live, on_probed=probed, on_checked=lambda _h, _r: checked())
    probed.finish()
    checked.finish()
    if fmt == "json":
        text = render_trust.render_json(view)
    elif fmt == "html":
        text = render_trust.render_html(view)
    else:
        text = render_trust.render_text(view, color=out is None and use_color())
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as e:
            raise CsyncError(f"cannot write {out}: {e.strerror or e}") from None
        click.echo(render_trust.verdict_line(view))
        click.echo(f"Wrote the {fmt} report to {out}")
    else:
        click.echo(text, nl=False)
    return exit_code(view)


def exit_code(view) -> int:
    """0 ready; 1 the verdict cannot be trusted (a host silent, live checks incomplete or
    disagreeing); 2 not ready."""
    if view.report.unreachable or view.disagreements or (view.live is not None and not view.live.complete):
        return ExitCode.ERROR
    return ExitCode.OK if view.failover_ready else NOT_READY
