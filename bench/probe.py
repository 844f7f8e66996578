"""Probe benchmark: csync's full probe vs a bare fabric `hostname` fan-out, same lab, same run.

    python -m bench.probe [--clients 197] [--rounds 3]      (root; starts and stops a lab)
    python -m bench.probe --bound [--clients 197] [--rounds 5]

Prints wall time, commands per host and the ratio (target: probe within 1.3x of the floor).

With ``--bound``: what the probe's stdin watcher (probe.sh, BOUNDED=stdin) costs. First the
processes one probe starts on a host, bounded and not, counted with strace inside a member
and a client of the lab (programs = execve, processes = fork/clone); then the probe of the
whole site, bounded and unbounded in alternating rounds (medians of the site's wall time
and of the hosts' own probe seconds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from bench.floor import hostname_fan_out
from reconciler.desired.loader import load_desired_state
from reconciler.driver import commands
from reconciler.driver.transport import Pool
from reconciler.observe.probe import probe_site

UNBOUNDED = ("\nBOUNDED=stdin\n", "\nBOUNDED=\n")


def bare_fan_out(state) -> float:
    start = time.monotonic()
    answered = hostname_fan_out(state)
    assert answered == len(state.all_hosts), f"{answered} of {len(state.all_hosts)} hosts answered"
    return time.monotonic() - start


def full_probe(state) -> tuple[float, float]:
    seconds, per_host, _ = timed_probe(state)
    return seconds, per_host


def timed_probe(state) -> tuple[float, float, float]:
    """(site seconds, commands per host, median of the hosts' own probe seconds)."""
    start = time.monotonic()
    with Pool(state.access) as pool:
        site = probe_site(state, pool)
    assert not site.unreachable, [f.reason for f in site.unreachable][:3]
    own = statistics.median(f.probe_seconds or 0.0 for f in site.hosts.values())
    return time.monotonic() - start, statistics.mean(site.commands_sent.values()), own


def processes_of_one_probe(lab, state, host: str, role: str, bounded: bool) -> tuple[list[str], int]:
    """(programs executed, processes created) by one probe of ``host``, run in the host under
    strace with its standard input held open (a pipe from a sleep), as csync's session does."""
    script = commands.probe(state, role).script
    if not bounded:
        script = script.replace(*UNBOUNDED)
    lab.exec(host, ["/bin/sh", "-c", "cat > /tmp/csync-bench-probe.sh"], input=script, check=True)
    trace, fifo = "/tmp/csync-bench-probe.trace", "/tmp/csync-bench-probe.in"
    # as under sshd: a session of its own (setsid), SSH_CONNECTION set (the watcher arms
    # only then), and an input that stays open (a fifo a sleep holds) until the probe ends
    done = lab.exec(
        host,
        f"rm -f {trace} {fifo}; mkfifo {fifo}; sleep 600 > {fifo} & h=$!; "
        f"SSH_CONNECTION='127.0.0.1 1 127.0.0.1 22' setsid -w strace -f -qq -e trace=execve,fork,vfork,clone,clone3 -o {trace} "
        f"/bin/sh /tmp/csync-bench-probe.sh < {fifo} >/dev/null; kill $h; rm -f {fifo}; cat {trace}",
        check=True,
    )
    lines = [x for x in done.stdout.splitlines() if x.strip()]
    execs, pending = [], {}
    for x in lines:  # strace -f splits a call another process interrupted: "<unfinished ...>", then "<... execve resumed>"
        pid = x.split()[0]
        if 'execve("' in x:
            name = x.split('execve("', 1)[1].split('"', 1)[0]
            if x.rstrip().endswith("= 0"):
                execs.append(name)
            elif x.rstrip().endswith("<unfinished ...>"):
                pending[pid] = name
        elif "<... execve resumed>" in x and pid in pending and x.rstrip().endswith("= 0"):
            execs.append(pending.pop(pid))
    execs = execs[1:]  # less the traced shell itself
    processes = len({x.split()[0] for x in lines}) - 1  # every PID in the trace, less the shell's
    return execs, processes


def bound_cost(lab, state, rounds: int) -> None:
    member = lab.hosts.by_role("member")[0].name
    client = lab.hosts.by_role("client")[0].name
    for host, role in ((member, "member"), (client, "client")):
        off = processes_of_one_probe(lab, state, host, role, bounded=False)
        on = processes_of_one_probe(lab, state, host, role, bounded=True)
        print(f"one probe of a {role}: unbounded {len(off[0])} programs, {off[1]} processes; bounded {len(on[0])} programs, {on[1]} processes")
        print(f"  programs unbounded: {' '.join(p.rsplit('/', 1)[-1] for p in off[0])}; bounded: {' '.join(p.rsplit('/', 1)[-1] for p in on[0])}")
    walls: dict[bool, list[float]] = {True: [], False: []}
    own: dict[bool, list[float]] = {True: [], False: []}
    saved = commands.PROBE_CONSTANTS["BOUNDED"]
    try:
        for r in range(rounds):
            for bounded in (True, False) if r % 2 == 0 else (False, True):
                commands.PROBE_CONSTANTS["BOUNDED"] = saved if bounded else ""
                seconds, _, per_host = timed_probe(state)
                walls[bounded].append(seconds)
                own[bounded].append(per_host)
    finally:
        commands.PROBE_CONSTANTS["BOUNDED"] = saved
    for bounded, label in ((False, "unbounded"), (True, "bounded  ")):
        print(
            f"{label}: site probe median {statistics.median(walls[bounded]):.2f}s (runs {', '.join(f'{x:.2f}' for x in walls[bounded])}); "
            f"a host's own probe median {statistics.median(own[bounded]) * 1000:.1f} ms"
        )
    print(f"ratio bounded / unbounded: site {statistics.median(walls[True]) / statistics.median(walls[False]):.3f}x")


def main(argv=None) -> int:
    from reconciler.lab.runtime import Lab

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=197)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bound", action="store_true", help="measure the cost of the probe's stdin watcher instead")
    p.add_argument("--userland", default="default")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        lab = Lab(d)
        up = lab.up(members=3, clients=args.clients, scenario="fresh", userland=args.userland)
        try:
            state = load_desired_state([lab.desired_state_path])
            if args.bound:
                print(f"hosts {3 + args.clients}, userland {args.userland}; lab up {up:.2f}s")
                bound_cost(lab, state, args.rounds)
                return 0
            floor, probe, per_host = [], [], 0.0
            for _ in range(args.rounds):  # alternate: the machine is noisy
                floor.append(bare_fan_out(state))
                seconds, per_host = full_probe(state)
                probe.append(seconds)
        finally:
            lab.down()
    n = 3 + args.clients
    f, q = statistics.median(floor), statistics.median(probe)
    print(f"hosts {n}; lab up {up:.2f}s")
    print(f"bare fabric hostname fan-out: median {f:.2f}s (runs {', '.join(f'{x:.2f}' for x in floor)})")
    print(f"csync probe:                  median {q:.2f}s (runs {', '.join(f'{x:.2f}' for x in probe)}); {per_host:.0f} command(s) per host")
    print(f"ratio probe / floor: {q / f:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
