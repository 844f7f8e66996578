"""The `csync` command line: the only module that prints for the user or exits.

Heavy modules (fabric, paramiko, rich) are imported inside the commands that need them so
that `csync validate` and `csync --help` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from reconciler import __version__
from reconciler.errors import CsyncError, ExitCode

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
  {ExitCode.USAGE}  bad command line
"""


def _fail(error: CsyncError) -> NoReturn:
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_code)


def desired_state_option(func):
    return click.option(
        "-f",
        "--file",
        "paths",
        multiple=True,
        type=click.Path(path_type=Path),
        help=f"Desired-state file or directory of *.yaml files (repeatable). Default: {DEFAULT_DESIRED_STATE}/",
    )(func)


def load_state(paths: tuple[Path, ...]):
    from reconciler.loader import load_desired_state

    return load_desired_state(list(paths) or [Path(DEFAULT_DESIRED_STATE)])


class CsyncGroup(click.Group):
    """Maps every CsyncError to its message and exit code, and usage errors to 64.

    click exits 2 on usage errors, which would read as "changes" to a CI job running
    `plan --detailed-exitcode`; csync keeps 2 for that alone.
    """

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(ExitCode.ERROR)
        except click.UsageError as e:
            e.show()
            sys.exit(ExitCode.USAGE)
        except click.ClickException as e:
            e.show()
            sys.exit(ExitCode.ERROR)
        except CsyncError as e:
            _fail(e)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else ExitCode.OK)


@click.group(cls=CsyncGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
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
        master = f"cluster {state.master.cluster} ({len(state.members)} members, package {state.master.package.name})"
    else:
        master = f"standalone master {state.master.host.name}"
    click.echo(f"{where}: valid: site {state.site}, {master}, {len(state.clients)} clients")
    return ExitCode.OK


@main.command()
def schema() -> int:
    """Print the JSON Schema of the desired state."""
    from reconciler.schema import schema_json

    click.echo(schema_json(), nl=False)
    return ExitCode.OK


def _register_subcommands() -> None:
    from reconciler.lab.cli import lab

    main.add_command(lab)


try:
    _register_subcommands()
except ImportError:  # pragma: no cover - only while a subpackage is being written
    pass
