"""`csync trust` (registered on the main group by reconciler/cli/main.py): the members x clients
trust matrix and the failover verdict, from the facts and optionally from live checks.

The work is reconciler.trust.predict's (prediction) and reconciler.trust.live's (live checks); the
views are reconciler.views.trust's. This module probes, prints and picks the exit code.
Nothing here changes a host.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reconciler.cli.main import (
    accept_new_option,
    desired_state_option,
    identity_option,
    load_state,
    open_pool,
    read_identity,
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
@click.option(
    "--live",
    is_flag=True,
    help="Also run the site's own checks (cfrun on each member to every client, cfagent on each "
    "client against the master's address) and report every disagreement with the prediction.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report (in --format) to FILE; standard output then gets the verdict line only.",
)
@click.option(
    "--detail",
    is_flag=True,
    help="Text and HTML: one row per client, each with its own causes (default: alike clients grouped). JSON is always the whole per-client matrix.",
)
@accept_new_option
@identity_option
def trust(paths, fmt, live, out, detail, accept_new_host_keys, identity) -> int:
    """Show whether the site is failover-ready: the members x clients trust matrix.

    From the facts alone (one probe per host; nothing is changed): will cfrun from each
    member to each client authenticate in both directions, will cfagent on each client
    authenticate the master at the package address, can each member take over the package.
    Clients whose rows are alike are grouped (--detail: one row each). See docs/TRUST.md. --live logs in with the
    root identity (access.identity_file); without it, the plan identity when one is set.
    """
    from reconciler.trust.live import assess
    from reconciler.views import trust as render_trust
    from reconciler.views.progress import ProgressView

    if live and identity == "plan":
        raise click.UsageError("--live runs cfrun and cfagent on the hosts: it needs the root identity, not --identity plan")
    state = load_state(paths)
    # --live runs the site's own cfrun and cfagent: root's identity; the probe alone can use the plan's
    with (
        open_pool(state, accept_new_host_keys, "root" if live else read_identity(state, identity)) as pool,
        ProgressView(enabled=fmt == "text" and out is None, color=use_color(sys.stderr)) as progress,
    ):
        on_probed, on_checked = progress_tasks(progress, state, live)
        view = assess(state, pool, live=live, on_probed=on_probed, on_checked=on_checked)
    if fmt == "json":
        text = render_trust.render_json(view)
    elif fmt == "html":
        text = render_trust.render_html(view, detail=detail)
    else:
        text = render_trust.render_text(view, color=out is None and use_color(), detail=detail)
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


def progress_tasks(progress, state, live: bool):
    """``(on_probed, on_checked)`` for trust.live.assess: the probe's counter and, with
    ``live``, the live checks' counter, added once the probe is done. The live checks run on
    every client that answered, then on every master host that answered if there are
    clients (trust.live.run_live_checks), so that is their total."""
    probed = progress.task("probed", len(state.all_hosts))
    if not live:
        return probed, None
    clients = {c.name for c in state.clients}
    answered = {"clients": 0, "masters": 0}
    checked = None

    def on_probed(facts) -> None:
        nonlocal checked
        probed()
        if facts.reachable:
            answered["clients" if facts.name in clients else "masters"] += 1
        if probed.done == probed.total:
            checked = progress.task("live checks", answered["clients"] + (answered["masters"] if clients else 0))

    def on_checked(_host, _result) -> None:
        if checked is not None:
            checked()

    return on_probed, on_checked


def exit_code(view) -> int:
    """0 ready; 1 the verdict cannot be trusted (a host silent, live checks incomplete or
    disagreeing); 2 not ready."""
    if view.report.unreachable or view.report.unsure or view.disagreements or (view.live is not None and not view.live.complete):
        return ExitCode.ERROR
    return ExitCode.OK if view.failover_ready else NOT_READY
