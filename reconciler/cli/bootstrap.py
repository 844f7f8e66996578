"""`csync bootstrap` (registered on the main group by reconciler/cli/main.py): set up the plan
identity (docs/SECURITY.md). Prints the plan key's authorized_keys line; with the root
identity, installs csync's probe program on every host (and with --authorize, the line in
root's authorized_keys), one round trip per host; then proves it: one probe of every host
through the plan identity."""

from __future__ import annotations

import os
from pathlib import Path

import click

from reconciler.cli.main import accept_new_option, desired_state_option, load_state, open_pool
from reconciler.errors import ExitCode, InvalidInput
from reconciler.views.style import styler, use_color


def plan_public_key(state, public_key: Path | None):
    """The plan key's public half: --public-key, else plan_identity_file's .pub, else derived
    from that private key."""
    import paramiko

    from reconciler.driver.commands import UnsafeValue
    from reconciler.driver.probeprogram import parse_public_key

    try:
        if public_key is not None:
            return parse_public_key(public_key.read_text(encoding="ascii", errors="replace"))
        private = state.access.plan_identity_file
        if private is None:
            raise InvalidInput("no plan key: set access.plan_identity_file in the desired state, or give --public-key FILE")
        path = Path(os.path.expanduser(private))
        pub = path.with_name(path.name + ".pub")
        if pub.is_file():
            return parse_public_key(pub.read_text(encoding="ascii", errors="replace"))
        key = paramiko.PKey.from_path(str(path))
        return parse_public_key(f"{key.get_name()} {key.get_base64()}")
    except UnsafeValue as e:
        raise InvalidInput(f"the plan's public key: {e}") from None
    except (OSError, paramiko.SSHException, ValueError) as e:
        raise InvalidInput(f"cannot read the plan key: {e}") from None


def root_public_blob(state) -> str | None:
    import paramiko

    try:
        return paramiko.PKey.from_path(os.path.expanduser(state.access.identity_file)).get_base64()
    except (OSError, paramiko.SSHException, ValueError):
        return None


@click.command()
@desired_state_option
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The plan key's public key (default: access.plan_identity_file + .pub, or derived from that private key).",
)
@click.option(
    "--from",
    "from_patterns",
    multiple=True,
    metavar="PATTERN",
    help="Accept the plan key only from these addresses or names (authorized_keys from=; repeatable), e.g. the CI runner's address.",
)
@click.option("--authorize", is_flag=True, help="Also put the plan key's line in root's authorized_keys on every host (replacing any line with the same key).")
@click.option(
    "--syntax",
    type=click.Choice(["openssh", "hpux"]),
    default="openssh",
    show_default=True,
    help="The line --authorize writes: openssh (restrict, OpenSSH 7.2 and later) or hpux (HP-UX Secure Shell: the restrictions named one by one).",
)
@click.option("--host", "hosts", multiple=True, metavar="NAME", help="Only this host (repeatable).")
@click.option("--print-only", is_flag=True, help="Print the authorized_keys lines; contact no host.")
@accept_new_option
def bootstrap(paths, public_key, from_patterns, authorize, syntax, hosts, print_only, accept_new_host_keys) -> int:
    """Set up the plan identity: a key that can only run csync's probe program.

    Prints the authorized_keys line of the plan key (OpenSSH, and HP-UX Secure Shell's
    syntax). Then, logged in with the root identity (access.identity_file), installs csync's
    probe program on every declared host (or --host), and with --authorize the line in root's
    authorized_keys; then probes every host through the plan identity to prove it works.
    `csync apply` keeps the program up to date afterwards (action install-probe).

    Exit 0 when every host has the program and, if the plan identity is set, answered
    through it; 1 otherwise.
    """
    from reconciler.domain import dsau
    from reconciler.driver import probeprogram
    from reconciler.driver.commands import RemoteCommand, UnsafeValue
    from reconciler.driver.transport import TransportError, fan_out
    from reconciler.observe.probe import probe_site

    state = load_state(paths)
    declared = {h.name for h in state.all_hosts}
    unknown = [h for h in hosts if h not in declared]
    if unknown:
        raise InvalidInput(f"--host {', '.join(unknown)}: not declared in the desired state (declared: {', '.join(sorted(declared))})")
    key = plan_public_key(state, public_key)
    if key.blob == root_public_blob(state):
        raise InvalidInput("the plan key is the root identity's key: the plan identity needs a key of its own (ssh-keygen)")
    try:
        lines = {s: probeprogram.authorized_keys_line(key, from_patterns=tuple(from_patterns), syntax=s) for s in ("openssh", "hpux")}
    except UnsafeValue as e:
        raise InvalidInput(str(e)) from None
    style = styler(use_color())
    click.echo(f"The plan key {key.fingerprint}, for root's authorized_keys on every host:")
    click.echo(f"  OpenSSH 7.2 and later:\n{lines['openssh']}")
    click.echo(f"  HP-UX Secure Shell (and OpenSSH before 7.2):\n{lines['hpux']}")
    if print_only:
        return ExitCode.OK

    targets = [h for h in state.all_hosts if not hosts or h.name in hosts]
    install = probeprogram.install(state.platform)
    script = install.script
    if authorize:
        script += "\n" + probeprogram.authorize(lines[syntax], key).script
    command = RemoteCommand(script, install.display)
    click.echo(
        f"\nInstalling {dsau.PROBE_PROGRAM} (version {probeprogram.PROGRAM_VERSION}, {probeprogram.program_digest(state.platform)})"
        + (" and authorizing the plan key" if authorize else "")
        + f" on {len(targets)} host(s), as root:"
    )
    failed = 0
    with open_pool(state, accept_new_host_keys, "root") as pool:

        def run(host):
            try:
                result = pool.connect(host).run_script(command, timeout=state.access.command_timeout)
            except TransportError as e:
                return e.reason
            return None if result.ok else f"exit {result.exit_code}: {result.stderr_text(300)}"

        results = fan_out(targets, run, parallelism=state.access.parallelism)
    for host in targets:
        problem = results[host.name]
        failed += problem is not None
        click.echo(f"  {style('FAILED', fg='red', bold=True) + ' ' + problem if problem else style('ok', fg='green')}  {host.name}")
    if not state.access.plan_identity:
        click.echo("\naccess.plan_identity_file is not set: not checking the plan identity.")
        return ExitCode.ERROR if failed else ExitCode.OK
    click.echo("\nProbing every host through the plan identity:")
    with open_pool(state, accept_new_host_keys, "plan") as pool:
        site = probe_site(state, pool, only=[h.name for h in targets])
    for host in targets:
        f = site.hosts[host.name]
        failed += not f.reachable
        mark = style("ok", fg="green") if f.reachable else style("FAILED", fg="red", bold=True) + f" {f.reason}"
        click.echo(f"  {mark}  {host.name}")
    return ExitCode.ERROR if failed else ExitCode.OK
