"""`csync lab`: start, stop and disturb the local emulated site."""

from __future__ import annotations

import sys

import click

from reconciler.errors import CsyncError


class LabFailed(CsyncError):
    pass


def _lab(directory: str):
    from reconciler.lab.runtime import Lab

    return Lab(directory)


def _guard(fn):
    from reconciler.lab.runtime import LabError

    try:
        return fn()
    except LabError as e:
        raise LabFailed(str(e)) from None


dir_option = click.option("--dir", "directory", default=".csync/lab", show_default=True, help="The lab's directory.")


@click.group()
def lab() -> None:
    """The local lab: an emulated DSAU site of real sshd hosts on 127.0.10.0/24 (needs root)."""


@lab.command()
@dir_option
@click.option("--members", default=3, show_default=True, help="Cluster members (1-9).")
@click.option("--clients", default=10, show_default=True, help="Managed clients (0-230).")
@click.option("--scenario", type=click.Choice(["fresh", "seed", "standalone"]), default="fresh", show_default=True)
def up(directory, members, clients, scenario) -> int:
    """Start the lab and print the desired state that describes it."""
    lab_ = _lab(directory)
    seconds = _guard(lambda: lab_.up(members=members, clients=clients, scenario=scenario))
    click.echo(lab_.desired_state_path.read_text(), nl=False)
    click.echo(f"lab up ({scenario}, {len(lab_.hosts)} hosts) in {seconds:.2f}s; desired state: {lab_.desired_state_path}", err=True)
    return 0


@lab.command()
@dir_option
def down(directory) -> int:
    """Stop every host of the lab (no process, mount or listener is left)."""
    _guard(_lab(directory).down)
    click.echo("lab down", err=True)
    return 0


@lab.command()
@dir_option
def status(directory) -> int:
    """List the lab's hosts and whether each runs."""
    from pathlib import Path

    lab_ = _lab(directory)
    state = _guard(lab_.load)
    for h in lab_.hosts:
        pid = state["pids"].get(h.name)
        running = pid is not None and Path(f"/proc/{pid}").exists()
        click.echo(f"{h.name:<10} {h.address:<14} {h.role:<7} {'up' if running else 'down'}")
    return 0


@lab.command()
@dir_option
@click.argument("name")
def isolate(directory, name) -> int:
    """Make a host stop answering ssh, keeping its files."""
    _guard(lambda: _lab(directory).isolate(name))
    return 0


@lab.command()
@dir_option
@click.argument("name")
def restore(directory, name) -> int:
    """Undo isolate."""
    _guard(lambda: _lab(directory).restore(name))
    return 0


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@dir_option
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(directory, name, command) -> int:
    """Run a command inside a host, as root (not through ssh)."""
    import shlex

    done = _guard(lambda: _lab(directory).exec(name, shlex.join(command)))
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode
