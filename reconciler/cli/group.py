"""The click group behaviour every csync command line shares: csync's own errors become
their message and exit code, never a traceback; usage errors exit 64.

click exits 2 on usage errors, which would read as "changes" to a CI job running
`plan --detailed-exitcode`; csync keeps 2 for that alone. Kept apart from reconciler/cli/main.py
so `csync lab` can run on its own without importing the whole command line.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import NoReturn

import click

from reconciler.errors import CsyncError, ExitCode


def fail(error: CsyncError) -> NoReturn:
    text = str(error)
    # A one-line error reads "Error: ..."; diagnostics keep one per line, each starting with
    # file:line:col for editors and CI annotations.
    click.echo(f"Error: {text}" if "\n" not in text else f"Error:\n{text}", err=True)
    sys.exit(error.exit_code)


class ErrorMappingGroup(click.Group):
    """``lazy``: subcommands by name -> "module:attribute", imported only when they run (or
    when help lists them): `csync plan` need not load the lab, trust or import code."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, _, attr = self.lazy[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

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
            fail(e)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception as e:  # a bug: one line for the user, the traceback on request
            if os.environ.get("CSYNC_DEBUG") == "1":
                raise
            detail = " ".join(str(e).split())[:300]
            click.echo(
                f"Error: internal error: {type(e).__name__}: {detail} (this is a bug in csync; "
                f"CSYNC_DEBUG=1 shows the traceback; a run's journal, if one was open, records it)",
                err=True,
            )
            sys.exit(ExitCode.INTERNAL)
        sys.exit(rv if isinstance(rv, int) else ExitCode.OK)
