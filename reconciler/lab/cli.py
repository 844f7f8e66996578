"""`csync lab`: start, inspect, disturb and stop the local emulated site.

Registered under ``csync`` as ``csync lab``; also runnable on its own:
``python -c "from reconciler.lab.cli import lab; lab()" up``. Every failure is one
``Error: ...`` line on stderr and a non-zero exit (1; 64 for a bad command line), never a
traceback.
"""

from __future__ import annotations

import json
import sys

import click

from reconciler.cli.group import ErrorMappingGroup
from reconciler.errors import ExitCode


def _lab(directory: str):
    from reconciler.lab.runtime import Lab

    return Lab(directory)


dir_option = click.option("--dir", "directory", default=".csync/lab", show_default=True, metavar="DIR", help="The lab's directory.")


@click.group(cls=ErrorMappingGroup, context_settings={"help_option_names": ["-h", "--help"]})
def lab() -> None:
    """The local lab: an emulated DSAU site of real sshd hosts on 127.0.10.0/24 (needs root).

    Members node1..N on 127.0.10.1..N, the csync package on 127.0.10.10 (mounted at
    /csync on its node), clients from 127.0.10.21; a standalone master `master` on
    127.0.10.1. See docs/LAB.md.
    """


@lab.command()
@dir_option
@click.option("--members", default=3, show_default=True, help="Cluster members (1-9).")
@click.option("--clients", default=10, show_default=True, help="Managed clients (0-2000).")
@click.option(
    "--scenario",
    type=click.Choice(["fresh", "seed", "standalone"]),
    default="fresh",
    show_default=True,
    help="fresh: converged; seed: the manual's excerpt (a member added while the package was down); standalone: a converged standalone master.",
)
@click.option(
    "--sg-release",
    "--serviceguard",
    "sg_release",
    default=None,
    metavar="RELEASE",
    help="The emulated Serviceguard's release (default A.11.20.00; --serviceguard is the same option). "
    "Before A.11.18 cmviewcl has no -f line (tables only); before A.11.19 the commands have no -t "
    "preview and no maintenance mode; before A.11.20 no -d (detach).",
)
@click.option(
    "--userland",
    type=click.Choice(["default", "hpux"]),
    default="default",
    show_default=True,
    help="The hosts' sh, awk and tools: the machine's, or hpux (posh as sh, the one-true-awk, and find, ls, "
    "cksum, sed, grep, date that refuse GNU-only options).",
)
@click.option(
    "--sg-layout",
    type=click.Choice(["default", "linux"]),
    default="default",
    show_default=True,
    help="Where the members keep Serviceguard: default (the commands in /usr/local/sbin, its files in /etc/cmcluster), "
    "or linux (Serviceguard for Linux: the commands in /usr/local/cmcluster/bin, /etc/cmcluster.conf naming SGSBIN and "
    "SGCONF, the package's files in $SGCONF/csync); the desired state written declares it (paths:, platform:).",
)
@click.option(
    "--extra-addresses",
    is_flag=True,
    help="Give each member (or the standalone master) a second address, 127.0.20.<n>, where its sshd "
    "and cfservd listen too, and the package a second address, 127.0.20.10 (a second LAN).",
)
def up(directory: str, members: int, clients: int, scenario: str, sg_release: str | None, extra_addresses: bool, userland: str, sg_layout: str) -> int:
    """Start the lab; print its desired state (YAML) on stdout."""
    lab_ = _lab(directory)
    lab_.up(members=members, clients=clients, scenario=scenario, sg_release=sg_release, extra_addresses=extra_addresses, userland=userland, sg_layout=sg_layout)
    click.echo(lab_.desired_state_path.read_text(), nl=False)
    t = lab_.timings
    n = len(lab_.hosts)
    click.echo(
        f"lab up: {n} hosts, scenario {scenario}, userland {userland}, Serviceguard {lab_.sg_release} ({sg_layout} layout), port {lab_.port}, "
        f"ready in {t['total']:.2f}s "
        f"(keys {t['keys']:.2f}s, files {t['files']:.2f}s, sshd start {t['start']:.2f}s)",
        err=True,
    )
    if lab_.port != 22:
        click.echo(
            f"note: port 22 is taken on the lab's addresses; the hosts listen on {lab_.port} (the desired state above carries access.port: {lab_.port})",
            err=True,
        )
    click.echo(f"desired state written to {lab_.desired_state_path}", err=True)
    return ExitCode.OK


@lab.command()
@dir_option
def down(directory: str) -> int:
    """Stop every host (no process, mount or listener is left)."""
    lab_ = _lab(directory)
    if not (lab_.state_dir / "lab.json").exists():
        click.echo(f"nothing to stop: no lab in {lab_.dir}", err=True)
        return ExitCode.OK
    lab_.down()
    click.echo(f"lab down ({lab_.dir})", err=True)
    return ExitCode.OK


@lab.command()
@dir_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(directory: str, fmt: str) -> int:
    """List the hosts (up, down, isolated) and the cluster; exit 1 if no host is up."""
    st = _lab(directory).status()
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "directory": str(st.directory),
                    "scenario": st.scenario,
                    "port": st.port,
                    "cluster": st.cluster,
                    "package": st.package,
                    "hosts": [
                        {"name": h.name, "address": h.address, "extra_addresses": list(h.extra_addresses), "role": h.role, "state": h.state, "pid": h.pid}
                        for h in st.hosts
                    ],
                },
                indent=2,
            )
        )
    else:
        click.echo(f"lab {st.directory} (scenario {st.scenario}, port {st.port})")
        for h in st.hosts:
            extra = f" (also {', '.join(h.extra_addresses)})" if h.extra_addresses else ""
            click.echo(f"  {h.name:<10} {h.address:<15} {h.role:<7} {h.state:<9} {h.pid or ''}{extra}")
        if st.cluster:
            extra = f" (also {', '.join(st.package['extra_addresses'])})" if st.package and st.package["extra_addresses"] else ""
            for p in st.cluster["packages"]:
                click.echo(f"  package {p['name']}: {p['status']}/{p['state']} on {p.get('owner') or 'no node'}, AUTO_RUN {p['autorun']}{extra}")
    return ExitCode.OK if st.up else ExitCode.ERROR


@lab.command()
@dir_option
@click.option("--scenario", type=click.Choice(["fresh", "seed", "standalone"]), default=None, help="Default: the scenario the lab was started with.")
def reseed(directory: str, scenario: str | None) -> int:
    """Reset every host's files and the cluster to a scenario, without restarting sshd."""
    lab_ = _lab(directory)
    seconds = lab_.reseed(scenario)
    click.echo(f"lab reseeded ({scenario or lab_.scenario}) in {seconds:.2f}s", err=True)
    return ExitCode.OK


def _simple(name: str, method: str, doc: str, done: str):
    @lab.command(name=name, help=doc)
    @dir_option
    @click.argument("host")
    def command(directory: str, host: str) -> int:
        getattr(_lab(directory), method)(host)
        click.echo(done.format(host=host), err=True)
        return ExitCode.OK

    return command


_simple("node-down", "node_down", "Kill a host (its files stay); a member's package fails over.", "{host} is down")
_simple("node-up", "node_up", "Boot a host again; a member rejoins the cluster.", "{host} is up")
_simple("isolate", "isolate", "Freeze a host: it stops answering ssh, keeping its files.", "{host} is isolated")
_simple("restore", "restore", "Undo isolate.", "{host} answers again")


@lab.command(name="pkg-state")
@dir_option
@click.option("--node", default=None, metavar="NODE", help="starting: the node it starts on (default: its first eligible node).")
@click.argument("package")
@click.argument("state", type=click.Choice(["starting", "halting", "release"]))
def pkg_state(directory: str, node: str | None, package: str, state: str) -> int:
    """Hold PACKAGE in a transitory state (starting, halting) or finish it (release). [lab only]

    As a run or halt script that has not finished: cmviewcl shows it, cmrunpkg and cmhaltpkg
    refuse it. release completes the transition (running, or halted)."""
    _lab(directory).pkg_state(package, state, node)
    click.echo(f"package {package}: {state}", err=True)
    return ExitCode.OK


@lab.command(name="pkg-fail")
@dir_option
@click.argument("package")
def pkg_fail(directory: str, package: str) -> int:
    """A service of the running PACKAGE fails on its node. [lab only]

    It halts there and switching to that node is disabled; with AUTO_RUN enabled it fails over
    to the next eligible node, else it stays down/failed (cmviewcl: STATE failed)."""
    where = _lab(directory).pkg_fail(package)
    click.echo(f"package {package}: {'down/failed' if where == 'failed' else 'failed over to ' + where}", err=True)
    return ExitCode.OK


@lab.command(name="lag-inputs")
@dir_option
@click.option("--file", "file_", default="cf.motd", show_default=True, help="The inputs file the commit changes.")
@click.argument("member")
def lag_inputs(directory: str, file_: str, member: str) -> int:
    """A policy commit MEMBER has not fetched yet: one master inputs file changes, every other
    host's copy follows, MEMBER's stays old (as before cfagent's hourly run)."""
    line = _lab(directory).lag_inputs(member, file_)
    click.echo(f"inputs/{file_} of {member} now lags the master's (added: {line})", err=True)
    return ExitCode.OK


@lab.command(name="desired-state")
@dir_option
@click.option("--without", multiple=True, metavar="MEMBER", help="Leave this member out (repeatable).")
@click.option("-o", "--output", default=None, metavar="FILE", help="Write it to FILE instead of stdout.")
def desired_state(directory: str, without: tuple[str, ...], output: str | None) -> int:
    """Print the lab's desired state (YAML), less the members given with --without."""
    text = _lab(directory).desired_state_text(without)
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            with open(output, "w") as f:
                f.write(text)
        except OSError as e:
            raise click.ClickException(f"cannot write {output}: {e.strerror}") from None
        click.echo(f"desired state written to {output}", err=True)
    return ExitCode.OK


@lab.command(name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@dir_option
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(directory: str, host: str, command: tuple[str, ...]) -> int:
    """Run COMMAND inside HOST as root, not through ssh: csync lab exec node1 -- cmviewcl -v.

    One argument is a shell command line; several are an argv."""
    argv = list(command)
    if argv and argv[0] == "--":  # click passes the separator through after HOST
        argv = argv[1:]
    if not argv:
        raise click.UsageError("give the command to run after --")
    done = _lab(directory).exec(host, argv[0] if len(argv) == 1 else argv, timeout=3600)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode
