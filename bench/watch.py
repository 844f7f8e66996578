"""`csync watch`'s warm cycle against a cold `csync plan`, on the same lab, in the same run.

    python -m bench.watch [--clients 197] [--cycles 200] [--cold 3] [--json FILE]   (root; starts and stops a lab)

On a lab of 3 members and N clients (scenario `fresh`), it times:

  cold plan   `csync plan --format json` as a command (interpreter start, a handshake per
              host, probe, plan), --cold times, spread over the run (before the cycles, in
              the middle, after them: the machine is shared and noisy)
  cold plan in-process  the same work without the interpreter's start (a new Pool, refresh_and_plan),
              before the first cycle and after the last (it would count in the watch's RSS)
  warm floor  `true` on every host over the watch's open sessions: the round trip, no probe
  warm cycle  one cycle of the watch (reconciler.watch.loop.Watch.cycle: probe every host over
              its open session, plan, readiness, compare with the cycle before, metrics),
              --cycles times back to back after a first (cold) one

and reports, for each, wall time and CPU seconds (the plan command's from its rusage; the
cycle's as this process's CPU time, every thread included; the lab's sshds are not counted
in either), the ratio (issue #18's target: a warm cycle at most 0.25x a cold plan), this
process's RSS at cycle 10 and at the last cycle (target: less than 5% growth), and the load
average before and after. It reports what it measured, target met or not.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reconciler.desired.loader import load_desired_state
from reconciler.driver.transport import Pool, fan_out
from reconciler.pipeline import refresh_and_plan
from reconciler.watch.log import EventLog
from reconciler.watch.loop import Watch, WatchOptions
from reconciler.watch.metrics import WatchMetrics
from reconciler.watch.source import DesiredSource

MEMBERS = 3


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cold_plan(desired: Path, cwd: Path) -> tuple[float, float]:
    """(wall, CPU) of one `csync plan` command; the fresh lab must plan nothing."""
    env = {**os.environ, "CI": "true", "PYTHONPATH": os.pathsep.join(sys.path)}
    cpu0, t0 = children_cpu(), time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "plan", "-f", str(desired), "--format", "json"], cwd=cwd, env=env, capture_output=True, text=True
    )
    wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"csync plan exited {done.returncode}: {done.stderr.strip()[:500]}")
    plan = json.loads(done.stdout)
    if plan["actions"] or plan["unknown"]:
        raise SystemExit(f"the fresh lab does not plan clean: {len(plan['actions'])} actions, {len(plan['unknown'])} unknown")
    return wall, cpu


def cold_in_process(state) -> tuple[float, float]:
    """(wall, CPU) of the plan's work without the interpreter's start: a new pool (a handshake
    per host), probe, plan, closed."""
    t0, c0 = time.monotonic(), time.process_time()
    with Pool(state.access) as pool:
        plan, _ = refresh_and_plan(state, pool)
    if plan.actions or plan.unknown:
        raise SystemExit("the fresh lab does not plan clean in-process")
    return time.monotonic() - t0, time.process_time() - c0


def warm_floor(state, pool) -> tuple[float, float]:
    """(wall, CPU) of `true` on every host over the open sessions: a warm round trip, no probe."""
    t0, c0 = time.monotonic(), time.process_time()
    done = fan_out(
        state.all_hosts, lambda h: pool.sessions[h.name].run("true", timeout=60).exit_code, parallelism=state.access.parallelism, workers=pool.workers
    )
    if any(done.values()):
        raise SystemExit("`true` failed on a host")
    return time.monotonic() - t0, time.process_time() - c0


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "min": ordered[0],
        "max": ordered[-1],
    }


def main(argv=None) -> int:
    from reconciler.lab.runtime import Lab

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=197)
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--cold", type=int, default=3, help="cold plans, spread from before the first cycle to after the last")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.cycles < 10:
        raise SystemExit("--cycles must be at least 10 (RSS is compared from cycle 10 on)")
    if args.cold < 2:
        raise SystemExit("--cold must be at least 2 (before and after the cycles)")
    n = MEMBERS + args.clients
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        lab = Lab(d)
        lab_seconds = lab.up(members=MEMBERS, clients=args.clients, scenario="fresh")
        try:
            desired = lab.desired_state_path
            cold: list[tuple[float, float]] = []
            cold_inproc: list[tuple[float, float]] = []
            floor: list[tuple[float, float]] = []
            # after how many warm cycles each cold plan runs: spread from before the first to after the last
            cold_at = sorted({round(i * args.cycles / (args.cold - 1)) for i in range(args.cold)})
            state = load_desired_state([desired])
            source = DesiredSource([desired], lambda paths: load_desired_state(list(paths)))
            watch = Watch(source, source.load(), WatchOptions(interval=1.0), log=EventLog(io.StringIO()), metrics=WatchMetrics(), identity_of=lambda s: "root")
            try:
                t0, c0 = time.monotonic(), time.process_time()
                first = watch.cycle()
                first_wall, first_cpu = time.monotonic() - t0, time.process_time() - c0
                if first is None or any(not h.up for h in first.hosts.values()) or first.drift:
                    raise SystemExit("the first cycle did not find every host up and the site converged")
                walls, cpus, rss = [], [], {}
                for i in range(1, args.cycles + 1):
                    if i - 1 in cold_at:
                        cold.append(cold_plan(desired, Path(d)))
                        floor.append(warm_floor(state, watch.pool))
                        if i == 1:  # in this process: outside the RSS window (cycle 10 to the last)
                            cold_inproc.append(cold_in_process(state))
                    t0, c0 = time.monotonic(), time.process_time()
                    snap = watch.cycle()
                    walls.append(time.monotonic() - t0)
                    cpus.append(time.process_time() - c0)
                    if snap is None or snap.drift or any(not h.up for h in snap.hosts.values()):
                        raise SystemExit(f"cycle {i}: a host was lost or drift appeared on a lab nobody changes")
                    if i % 10 == 0 or i == args.cycles:
                        rss[i] = rss_kib()
                if args.cycles in cold_at:
                    cold.append(cold_plan(desired, Path(d)))
                    floor.append(warm_floor(state, watch.pool))
                cold_inproc.append(cold_in_process(state))
                sessions = len(watch.pool.sessions)
            finally:
                watch.close()
        finally:
            lab.down()
    load_after = os.getloadavg()
    warm_wall, warm_cpu = summary(walls), summary(cpus)
    cold_wall, cold_cpu = summary([w for w, _ in cold]), summary([c for _, c in cold])
    inproc_wall, inproc_cpu = summary([w for w, _ in cold_inproc]), summary([c for _, c in cold_inproc])
    floor_wall, floor_cpu = summary([w for w, _ in floor]), summary([c for _, c in floor])
    ratio = warm_wall["median"] / cold_wall["median"]
    cpu_ratio = warm_cpu["median"] / cold_cpu["median"]
    growth = (rss[args.cycles] - rss[10]) / rss[10] * 100
    result = {
        "hosts": n,
        "lab_up_seconds": round(lab_seconds, 2),
        "cycles": args.cycles,
        "sessions_open": sessions,
        "hosts_declared": len(state.all_hosts),
        "first_cycle": {"wall": first_wall, "cpu": first_cpu},
        "warm_cycle": {"wall": warm_wall, "cpu": warm_cpu},
        "cold_plan": {"wall": cold_wall, "cpu": cold_cpu, "runs": cold},
        "cold_in_process": {"wall": inproc_wall, "cpu": inproc_cpu, "runs": cold_inproc},
        "warm_floor_true": {"wall": floor_wall, "cpu": floor_cpu, "runs": floor},
        "ratio_wall": ratio,
        "ratio_cpu": cpu_ratio,
        "rss_kib": {f"cycle_{i}": kib for i, kib in sorted(rss.items())},
        "rss_growth_percent": growth,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpus": os.cpu_count(),
    }
    print(f"hosts {n} ({MEMBERS} members, {args.clients} clients); lab up {lab_seconds:.2f}s; {os.cpu_count()} CPUs")
    print(f"load average before {', '.join(f'{x:.2f}' for x in load_before)}; after {', '.join(f'{x:.2f}' for x in load_after)}")
    print(
        f"cold `csync plan` (x{len(cold)}): wall median {cold_wall['median']:.3f}s (min {cold_wall['min']:.3f}, max {cold_wall['max']:.3f}); CPU median {cold_cpu['median']:.3f}s"
    )
    print(f"cold plan in-process (no interpreter start; x{len(cold_inproc)}): wall median {inproc_wall['median']:.3f}s; CPU median {inproc_cpu['median']:.3f}s")
    print(f"first watch cycle (handshakes): wall {first_wall:.3f}s; CPU {first_cpu:.3f}s")
    print(f"warm floor, `true` over the open sessions (x{len(floor)}): wall median {floor_wall['median']:.3f}s; CPU median {floor_cpu['median']:.3f}s")
    print(
        f"warm watch cycle (x{args.cycles}): wall median {warm_wall['median']:.3f}s (p90 {warm_wall['p90']:.3f}, max {warm_wall['max']:.3f}); "
        f"CPU median {warm_cpu['median']:.3f}s (p90 {warm_cpu['p90']:.3f})"
    )
    print(f"warm / cold: wall {ratio:.3f}x, CPU {cpu_ratio:.3f}x (target: wall <= 0.25x: {'met' if ratio <= 0.25 else 'NOT met'})")
    middle = max((i for i in rss if i <= args.cycles // 2), default=10)
    print(
        f"RSS: cycle 10 {rss[10] / 1024:.1f} MiB, cycle {middle} {rss[middle] / 1024:.1f} MiB, cycle {args.cycles} {rss[args.cycles] / 1024:.1f} MiB: "
        f"{growth:+.2f}% from cycle 10 (target < 5%: {'met' if growth < 5 else 'NOT met'})"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
