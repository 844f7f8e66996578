"""Apply benchmark: `seed` applied on a lab of 3 members and N clients, against a probe of
the same lab, in the same run (target: apply within 2.5x the probe).

    python -m bench.apply [--clients 200] [--rounds 3]     (root; starts and stops a lab)

Each round reseeds the lab, then runs csync in a child process of its own (this checkout's
code, bench.proc): a probe of every host, then `run_apply` as the CLI runs it. The child
times both (wall and CPU seconds) and the parent reads the child's peak RSS from wait4, so
the lab's own memory (in this process) is not counted as csync's. Prints the medians, the
ratio, the round trips per client, and the machine's load average at each round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.proc import apply_auto, csync_env, load_average, measured_run, patient_state


def worker(state_path: str, runs: str, round_: int) -> int:
    """One round, in a process of its own: the probe, then the apply; JSON on stdout."""
    from reconciler.apply.journal import Journal
    from reconciler.desired.loader import load_desired_state
    from reconciler.driver.transport import Pool
    from reconciler.observe.probe import probe_site

    state = load_desired_state([state_path])
    with Pool(state.access) as pool:
        start, cpu = time.monotonic(), time.process_time()
        site = probe_site(state, pool)
        probe = (time.monotonic() - start, time.process_time() - cpu)
    if site.unreachable:
        print(json.dumps({"error": f"{len(site.unreachable)} hosts unreachable: {[f.reason for f in site.unreachable][:3]}"}))
        return 1
    journal = Journal(f"00000000-0000-4000-8000-{round_:012d}", Path(runs))
    start, cpu = time.monotonic(), time.process_time()
    with Pool(state.access) as pool:
        report = apply_auto(state, pool, journal, lock_timeout=0)
    apply = (time.monotonic() - start, time.process_time() - cpu)
    journal.close()
    trips = max(report.round_trips[c.name] for c in state.clients)
    print(json.dumps({"probe": probe, "apply": apply, "exit_code": report.exit_code, "trips": trips}))
    return 0


def main(argv=None) -> int:
    from reconciler.lab import Lab

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connect-timeout", type=float, default=5, help="access.connect_timeout (the lab's is 5 s; a loaded machine needs more at 2,000 hosts)")
    p.add_argument("--worker", nargs=3, metavar=("STATE", "RUNS", "ROUND"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], args.worker[1], int(args.worker[2]))
    probes, applies, probe_cpu, apply_cpu, rss, loads, trips = [], [], [], [], [], [], 0
    with tempfile.TemporaryDirectory() as d:
        lab = Lab(Path(d) / "lab")
        up = lab.up(members=3, clients=args.clients, scenario="seed")
        print(f"lab of {3 + args.clients} hosts up in {up:.1f}s ({lab.timings}); load average {load_average()}", flush=True)
        try:
            state_path = lab.desired_state_path if args.connect_timeout == 5 else patient_state(lab.desired_state_path, Path(d), args.connect_timeout)
            for round_ in range(args.rounds):
                lab.reseed("seed")
                m = measured_run([sys.executable, "-m", "bench.apply", "--worker", str(state_path), str(Path(d) / "runs"), str(round_)], env=csync_env())
                result = json.loads(m.done.stdout or "{}") if m.done.returncode == 0 else {}
                if not result or result.get("exit_code") != 0:
                    print(f"round {round_ + 1}: failed (exit {m.done.returncode}, {result}): {m.done.stdout[-300:]}{m.done.stderr[-600:]}", file=sys.stderr)
                    return 1
                probes.append(result["probe"][0])
                probe_cpu.append(result["probe"][1])
                applies.append(result["apply"][0])
                apply_cpu.append(result["apply"][1])
                rss.append(m.rss_mib)
                trips = result["trips"]
                loads.append(load_average())
                print(
                    f"round {round_ + 1}: probe {probes[-1]:.2f}s (CPU {probe_cpu[-1]:.1f}s), apply {applies[-1]:.2f}s (CPU {apply_cpu[-1]:.1f}s), "
                    f"peak RSS {rss[-1]:.0f} MiB; load average {loads[-1]}",
                    flush=True,
                )
        finally:
            lab.down()
    pm, am = statistics.median(probes), statistics.median(applies)
    print(f"hosts {3 + args.clients}, seed scenario, {args.rounds} rounds")
    print(f"probe: median {pm:.2f}s ({', '.join(f'{x:.2f}' for x in probes)}); CPU median {statistics.median(probe_cpu):.1f}s")
    print(f"apply: median {am:.2f}s ({', '.join(f'{x:.2f}' for x in applies)}); CPU median {statistics.median(apply_cpu):.1f}s; {trips} round trips per client")
    print(f"peak RSS of the csync process (probe and apply): max {max(rss):.0f} MiB (target < 500)")
    print(f"ratio apply / probe: {am / pm:.2f}x (target <= 2.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
