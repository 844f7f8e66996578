"""Probe benchmark: csync's full probe vs a bare fabric `hostname` fan-out, same lab, same run.

    python -m bench.probe [--clients 197] [--rounds 3]      (root; starts and stops a lab)

Prints wall time, commands per host and the ratio (target: probe within 1.3x of the floor).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from bench.floor import hostname_fan_out
from reconciler.desired.loader import load_desired_state
from reconciler.driver.transport import Pool
from reconciler.observe.probe import probe_site


def bare_fan_out(state) -> float:
    start = time.monotonic()
    answered = hostname_fan_out(state)
    assert answered == len(state.all_hosts), f"{answered} of {len(state.all_hosts)} hosts answered"
    return time.monotonic() - start


def full_probe(state) -> tuple[float, float]:
    start = time.monotonic()
    with Pool(state.access) as pool:
        site = probe_site(state, pool)
    assert not site.unreachable, [f.reason for f in site.unreachable][:3]
    return time.monotonic() - start, statistics.mean(site.commands_sent.values())


def main(argv=None) -> int:
    from reconciler.lab.runtime import Lab

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=197)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        lab = Lab(d)
        up = lab.up(members=3, clients=args.clients, scenario="fresh")
        try:
            state = load_desired_state([lab.desired_state_path])
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
