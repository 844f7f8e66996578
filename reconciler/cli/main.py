"""The `csync` command line: the only module that prints for the user or exits.

Heavy modules (fabric, paramiko, rich) are imported inside the commands that need them so
that `csync validate` and `csync --help` start fast.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from reconciler import __version__
from reconciler.cli.group import ErrorMappingGroup
from reconciler.errors import ExitCode
from reconciler.views.style import use_color

DEFAULT_DESIRED_STATE = "desired-state"

EXIT_CODES_HELP = f"""
\b
Exit codes:
  {ExitCode.OK}   success (plan: no changes; apply: converged)
  {ExitCode.ERROR}   error: a host unreachable, an action failed or blocked, not converged
  {ExitCode.CHANGES}   plan --detailed-exitcode: the plan has changes
  {ExitCode.INVALID}   the desired state (or another input file) is invalid
  {ExitCode.STALE}   a saved plan is stale: the desired state or the hosts changed since
  {ExitCode.LOCKED}   another apply holds the site's lock
  {ExitCode.REFUSED}   apply --auto-approve met cluster operations without --allow-cluster-ops; nothing ran
  {ExitCode.INTERNAL}  internal error (a bug in csync; CSYNC_DEBUG=1 shows the traceback)
  {ExitCode.USAGE}  bad command line (or apply without a terminal and without --auto-approve)
  130 / 143  interrupted (SIGINT / SIGTERM): running actions finished, lock released, journal kept
"""


def desired_state_option(func):
    return click.option(
        "-f",
        "--file",
        "paths",
        multiple=True,
        type=click.Path(path_type=Path),
        help=f"Desired-state file or directory of *.yaml files (repeatable). Default: {DEFAULT_DESIRED_STATE}/",
    )(func)


# Key and known_hosts files given by the environment replace the desired state's, for every
# host: a CI job writes its keys to a temporary directory of its own (examples/ci/csync-ci.sh).
ACCESS_FROM_ENVIRONMENT = {
    "CSYNC_IDENTITY_FILE": "identity_file",
    "CSYNC_PLAN_IDENTITY_FILE": "plan_identity_file",
    "CSYNC_KNOWN_HOSTS_FILE": "known_hosts",
}


def load_state(paths: tuple[Path, ...]):
    import os

    from reconciler.desired.loader import load_desired_state

    state = load_desired_state(list(paths) or [Path(DEFAULT_DESIRED_STATE)])
    given = {field: os.environ[name] for name, field in ACCESS_FROM_ENVIRONMENT.items() if os.environ.get(name)}
    if given:
        access = state.access
        hosts = {n: h.model_copy(update={f: None for f in given if f in type(h).model_fields}) for n, h in access.hosts.items()}
        state = state.model_copy(update={"access": access.model_copy(update={**given, "hosts": hosts})})
    return state


# Commands kept in modules of their own are imported when used (cligroup.ErrorMappingGroup).
LAZY_COMMANDS = {
    "apply": "reconciler.cli.apply:apply",
    "unlock": "reconciler.cli.apply:unlock",
    "import": "reconciler.cli.importing:import_",
    "trust": "reconciler.cli.trust:trust",
    "bootstrap": "reconciler.cli.bootstrap:bootstrap",
    "lab": "reconciler.lab.cli:lab",
    "watch": "reconciler.cli.watch:watch",
}


@click.group(cls=ErrorMappingGroup, lazy=LAZY_COMMANDS, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="csync")
def main() -> None:
    """csync: reconcile a DSAU configuration-synchronization site with its desired state.

    Describe the cfengine master (a Serviceguard cluster running the csync package, or a
    standalone host), its managed clients and the key policy in YAML; `csync plan` probes
    the hosts over SSH and shows the ordered actions that would close the difference;
    `csync apply` carries them out, verifies each, and proves convergence.
    """


@main.command()
@desired_state_option
def validate(paths: tuple[Path, ...]) -> int:
    """Check the desired state without contacting any host."""
    state = load_state(paths)
    where = ", ".join(str(p) for p in paths) or f"{DEFAULT_DESIRED_STATE}/"
    if state.is_cluster:
        master = f"cluster {state.cluster_name} ({len(state.members)} members, package {state.package.name})"
    else:
        master = f"standalone master {state.standalone_host.name}"
    click.echo(f"{where}: valid: site {state.site}, {master}, {len(state.clients)} clients")
    return ExitCode.OK


@main.command()
def schema() -> int:
    """Print the JSON Schema of the desired state."""
    from reconciler.desired.schema import schema_json

    click.echo(schema_json(), nl=False)
    return ExitCode.OK


def accept_new_option(func):
    return click.option(
        "--accept-new-host-keys",
        is_flag=True,
        help="Allow first contact with hosts missing from known_hosts and record their keys (a changed key is always refused).",
    )(func)


def target_options(func):
    func = click.option("--exclude", "excludes", multiple=True, metavar="ADDR", help="Leave out actions on this resource address (repeatable).")(func)
    return click.option(
        "--target", "targets", multiple=True, metavar="ADDR", help="Only actions on this resource address and what they depend on (repeatable)."
    )(func)


def identity_option(func):
    return click.option(
        "--identity",
        type=click.Choice(["auto", "plan", "root"]),
        default="auto",
        show_default=True,
        help="The SSH identity to probe with. auto: the plan identity when access.plan_identity_file is set (it can only run "
        "csync's probe program), else access.identity_file; root: access.identity_file (before `csync bootstrap`).",
    )(func)


def read_identity(state, identity: str = "auto") -> str:
    """The identity a read-only command logs in with (docs/SECURITY.md)."""
    from reconciler.errors import InvalidInput

    if identity == "plan" and not state.access.plan_identity:
        raise InvalidInput("--identity plan: access.plan_identity_file is not set in the desired state")
    if identity == "auto":
        return "plan" if state.access.plan_identity else "root"
    return identity


def open_pool(state, accept_new: bool, identity: str = "root"):
    from reconciler.driver.transport import Pool

    return Pool(state.access, accept_new_host_keys=accept_new, identity="plan" if identity == "plan" else "root")


def plan_site(state, paths, *, accept_new: bool, quiet: bool, identity: str = "auto"):
    """Probe the site and plan; returns (plan, facts)."""
    from reconciler.pipeline import git_commit_of, refresh_and_plan
    from reconciler.views.progress import ProgressView

    with open_pool(state, accept_new, read_identity(state, identity)) as pool, ProgressView(enabled=not quiet, color=use_color(sys.stderr)) as progress:
        plan, facts = refresh_and_plan(
            state,
            pool,
            git_commit=git_commit_of(list(paths) or [Path(DEFAULT_DESIRED_STATE)]),
            on_probed=progress.task("probed", len(state.all_hosts)),
            keep_open=False,  # read once; a preview opens its member's connection again
        )
    return plan, facts


def emit_plan(plan, fmt: str, detail: bool = False) -> None:
    from reconciler.views import plan as render

    if fmt == "json":
        click.echo(plan.to_json(), nl=False)
    elif fmt == "markdown":
        click.echo(render.render_markdown(plan), nl=False)
    else:
        click.echo(render.render_text(plan, color=use_color(), detail=detail), nl=False)


detail_option = click.option("--detail", is_flag=True, help="Text: one block per action (default: alike actions grouped). JSON is always per action.")


@main.command(epilog=EXIT_CODES_HELP)
@desired_state_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan (JSON) for `csync apply PLANFILE`.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@detail_option
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when there are no changes, 2 when there are, 1 on error.")
@target_options
@accept_new_option
@identity_option
def plan(paths, out, fmt, detail, detailed_exitcode, targets, excludes, accept_new_host_keys, identity) -> int:
    """Probe the hosts and show the ordered actions that would reach the desired state.

    Never changes a host. Unreachable hosts are listed as unknown, never as converged;
    blocked work (a declared member Serviceguard does not know, no member up) is listed
    with what to do.
    """
    state = load_state(paths)
    the_plan, _ = plan_site(state, paths, accept_new=accept_new_host_keys, quiet=fmt != "text", identity=identity)
    if targets or excludes:
        the_plan = the_plan.select(targets, excludes)
    if out:
        out.write_text(the_plan.to_json(), encoding="utf-8")
    emit_plan(the_plan, fmt, detail)
    if out and fmt == "text":
        click.echo(f"Saved the plan to {out}; apply exactly it with: csync apply {out}")
    if the_plan.blocked or the_plan.unknown:
        return ExitCode.ERROR
    if detailed_exitcode and the_plan.has_changes:
        return ExitCode.CHANGES
    return ExitCode.OK


@main.command()
@click.argument("planfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@detail_option
def show(planfile, fmt, detail) -> int:
    """Render a saved plan."""
    from reconciler.plan.artefact import Plan

    emit_plan(Plan.from_json(planfile.read_text(encoding="utf-8"), source=str(planfile)), fmt, detail)
    return ExitCode.OK


@main.command()
@desired_state_option
@click.option("--host", "hosts", multiple=True, metavar="NAME", help="Only this host (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@accept_new_option
@identity_option
def facts(paths, hosts, fmt, accept_new_host_keys, identity) -> int:
    """Probe the hosts and show what csync sees (exit 1 if any host did not answer)."""
    from reconciler.errors import InvalidInput
    from reconciler.observe.probe import probe_site
    from reconciler.views import plan as render
    from reconciler.views.progress import ProgressView
    from reconciler.views.style import interactive

    state = load_state(paths)
    declared = {h.name for h in state.all_hosts}
    unknown = [h for h in hosts if h not in declared]
    if unknown:
        raise InvalidInput(f"--host {', '.join(unknown)}: not declared in the desired state (declared: {', '.join(sorted(declared))})")
    with (
        open_pool(state, accept_new_host_keys, read_identity(state, identity)) as pool,
        ProgressView(enabled=fmt == "text", color=use_color(sys.stderr)) as progress,
    ):
        site = probe_site(state, pool, only=hosts or None, on_done=progress.task("probed", len(hosts) or len(state.all_hosts)))
    if fmt == "json":
        click.echo(render.facts_json(site.hosts.values()), nl=False)
        return ExitCode.ERROR if site.unreachable else ExitCode.OK
    if interactive(sys.stdout):  # a rich table; plain columns for a pipe, a file or CI
        text = render.render_facts_table(site.hosts.values(), width=shutil.get_terminal_size().columns, color=use_color())
    else:
        text = render.render_facts_text(site.hosts.values(), color=use_color())
    click.echo(text, nl=False)
    click.echo(f"{len(site.hosts)} hosts probed in {site.seconds:.2f}s, {len(site.unreachable)} unreachable")
    return ExitCode.ERROR if site.unreachable else ExitCode.OK


if __name__ == "__main__":
    # `python -m reconciler.cli.main`: run the importable module, which the command modules
    # (LAZY_COMMANDS) import from; running this copy would import it a second time.
    from reconciler.cli.main import main as _main

    _main()
