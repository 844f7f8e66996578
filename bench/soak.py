"""Soak: apply/perturb cycles on a lab; every cycle must converge, or report exactly the
hosts that were unreachable.

    python -m bench.soak [--cycles 50] [--members 3] [--clients 50] [--seed 1] [--dir DIR]
                                               (root; starts and stops its own lab)

Each cycle first undoes the previous cycle's outages (a downed member boots again, an
isolated client is restored), then perturbs the site at random with 1-4 of:

- delete a peer key file (root-<IP>.pub) on a host;
- corrupt one (its bytes replaced by text that is not a key);
- make one writable by others (mode 666);
- fail the package over: the member running it goes down (node-down), Serviceguard moves
  the package and its filesystem to the next node;
- isolate a client (its processes frozen: connections accepted, never answered);

then runs `csync apply` (in this process, as the CLI does, without a prompt) and checks:
with no host out, exit 0 and a clean final plan; with hosts out, the final plan's
unreachable hosts are exactly those hosts, no action failed and nothing remains to do on
the hosts that answered. The figures (per cycle and totals) are printed; exit 1 if any
cycle broke the rule. tests/reliability/test_soak.py runs 5 cycles on a small lab.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.proc import apply_auto
from reconciler.apply.journal import Journal
from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.driver.transport import Pool

PPKEYS = f"{dsau.CFENGINE_DIR}/{dsau.PPKEYS_SUBDIR}"


@dataclass
class Cycle:
    number: int
    perturbations: list[str] = field(default_factory=list)
    out: set[str] = field(default_factory=set)  # hosts down or isolated during the apply
    actions: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    converged: bool = False
    reported_unreachable: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def package_owner(lab) -> str | None:
    return next((p.get("owner") for p in lab.status().cluster["packages"]), None)


def perturb(lab, rng: random.Random, cycle: Cycle) -> None:
    """1-4 random disturbances; at most one member down and one client isolated."""
    hosts = [h for h in lab.hosts]
    clients = [h.name for h in hosts if h.role == "client"]
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["delete", "corrupt", "chmod", "delete", "corrupt", "failover", "isolate"])
        up = [h.name for h in hosts if h.name not in cycle.out]
        if kind in ("delete", "corrupt", "chmod"):
            host = rng.choice(up)
            files = lab.exec(host, f"cd {PPKEYS} && ls root-*.pub 2>/dev/null").stdout.split()
            if not files:
                continue
            f = rng.choice(files)
            command = {"delete": f"rm -f {PPKEYS}/{f}", "corrupt": f"echo 'not a key (soak)' > {PPKEYS}/{f}", "chmod": f"chmod 666 {PPKEYS}/{f}"}[kind]
            lab.exec(host, command, check=True)
            cycle.perturbations.append(f"{kind} {host}:{f}")
        elif kind == "failover":
            owner = package_owner(lab)
            if owner is None or any(lab.hosts[n].role == "member" for n in cycle.out):
                continue
            lab.node_down(owner)
            cycle.out.add(owner)
            cycle.perturbations.append(f"node-down {owner} (package moves to {package_owner(lab)})")
        elif kind == "isolate":
            candidates = [c for c in clients if c not in cycle.out]
            if not candidates or any(lab.hosts[n].role == "client" for n in cycle.out):
                continue
            c = rng.choice(candidates)
            lab.isolate(c)
            cycle.out.add(c)
            cycle.perturbations.append(f"isolate {c}")


def recover(lab, out: set[str]) -> None:
    for name in sorted(out):
        if lab.hosts[name].role == "member":
            lab.node_up(name)
        else:
            lab.restore(name)


def check(state, report, cycle: Cycle) -> None:
    final = report.final_plan
    cycle.actions = len(report.plan.actions) if report.plan else 0
    cycle.done = sum(1 for r in report.results if r.outcome == "done")
    cycle.failed = sum(1 for r in report.results if r.outcome != "done")
    if final is None:
        cycle.problems.append(f"no final plan (exit {report.exit_code}, lock: {report.lock_problem}, interrupted: {report.interrupted})")
        return
    cycle.converged = report.converged
    role = {h.name: ("member" if state.is_cluster and h in state.members else "client") for h in state.all_hosts}
    unreachable = {f.host for f in final.unknown if f.host and f.address == f"{role[f.host]}.{f.host}" and f.message.startswith("unreachable")}
    cycle.reported_unreachable = unreachable
    if not cycle.out:
        if report.exit_code != 0 or not final.clean:
            cycle.problems.append(
                f"not converged with every host up: exit {report.exit_code}; remaining "
                f"{[a.address for a in final.actions]}, blocked {[f.message for f in final.blocked]}, "
                f"unknown {[f.address for f in final.unknown]}"
            )
        return
    if unreachable != cycle.out:
        cycle.problems.append(f"unreachable reported {sorted(unreachable)}, expected {sorted(cycle.out)}")
    failed = [f"{r.action.address}: {r.detail}" for r in report.results if r.outcome != "done" and r.action.host not in cycle.out]
    if failed:
        cycle.problems.append(f"actions failed on hosts that answered: {failed}")
    left = [a.address for a in final.actions if a.host not in cycle.out]
    if left:
        cycle.problems.append(f"work left on hosts that answered: {left}")
    if final.blocked:
        cycle.problems.append(f"blocked: {[f.message for f in final.blocked]}")


def soak(lab, cycles: int, seed: int, workdir: Path, *, out=print) -> list[Cycle]:
    """Run ``cycles`` perturb/apply cycles on a running lab (fresh scenario)."""
    rng = random.Random(seed)
    text = lab.desired_state_path.read_text().replace("  connect_timeout: 5\n", "  connect_timeout: 2\n")
    path = workdir / "desired-state.yaml"
    path.write_text(text)
    state = load_desired_state([path])
    results: list[Cycle] = []
    previous: set[str] = set()
    for n in range(1, cycles + 1):
        recover(lab, previous)
        cycle = Cycle(n)
        perturb(lab, rng, cycle)
        journal = Journal(f"00000000-0000-4000-8000-{seed % 10000:04d}{n:08d}", workdir / "runs")
        start = time.monotonic()
        try:
            with Pool(state.access) as pool:
                report = apply_auto(state, pool, journal, lock_timeout=30)
            check(state, report, cycle)
        except Exception as e:  # a cycle that raises is a failed cycle, with the reason
            cycle.problems.append(f"{type(e).__name__}: {e}")
        finally:
            journal.close()
        cycle.seconds = time.monotonic() - start
        previous = cycle.out
        results.append(cycle)
        status = "converged" if cycle.converged else f"unreachable {sorted(cycle.reported_unreachable)}" if cycle.out else "NOT converged"
        out(
            f"cycle {n:3d}: {'ok  ' if cycle.ok else 'FAIL'} {cycle.seconds:5.1f}s  {cycle.done:3d} done {cycle.failed:2d} not done  "
            f"{status}; {'; '.join(cycle.perturbations)}"
        )
        for p in cycle.problems:
            out(f"           problem: {p}")
    recover(lab, previous)
    return results


def summary(results: list[Cycle]) -> list[str]:
    secs = [c.seconds for c in results]
    with_out = [c for c in results if c.out]
    return [
        f"cycles: {len(results)}, ok: {sum(c.ok for c in results)}, failed the rule: {sum(not c.ok for c in results)}",
        f"converged: {sum(c.converged for c in results)}; with hosts out: {len(with_out)} "
        f"(unreachable reported exactly: {sum(c.reported_unreachable == c.out for c in with_out)})",
        f"perturbations: {sum(len(c.perturbations) for c in results)}; actions planned: {sum(c.actions for c in results)}, "
        f"done: {sum(c.done for c in results)}, not done: {sum(c.failed for c in results)}",
        f"apply seconds: median {statistics.median(secs):.2f}, max {max(secs):.2f}, total {sum(secs):.1f}",
    ]


def main(argv=None) -> int:
    from reconciler.lab import Lab

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cycles", type=int, default=50)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        lab = Lab(work / "lab")
        lab.up(members=args.members, clients=args.clients, scenario="fresh")
        try:
            print(f"soak: {args.cycles} cycles, {args.members} members + {args.clients} clients, seed {args.seed}")
            results = soak(lab, args.cycles, args.seed, work)
        finally:
            lab.down()
    for line in summary(results):
        print(line)
    return 0 if all(c.ok for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
