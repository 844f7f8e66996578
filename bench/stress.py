"""Stress: many `csync plan` processes at once against one lab, round after round; count crashes.

    python -m bench.stress [--processes 8] [--rounds 20] [--members 2] [--clients 3] [--dir DIR]
                                               (root; starts and stops its own lab)

Each round starts ``--processes`` `csync plan --format json --detailed-exitcode` processes
at the same instant against a lab of ``--members + --clients`` hosts (scenario `fresh`, with
the package's key file removed from the first client, so that each plan has work to agree
on) and waits for them all. A run is a **crash** when its exit code is not one that
`csync --help` documents, when it is 70 (an internal error: csync caught a bug), or when its
stderr holds a Python traceback. A run that exits 0 or 2 with every host answered must plan
the same actions as every other such run; one that does not **disagrees**. Runs that report
a host unreachable (exit 1 under load) are counted, not failed.

Prints the counts (exit codes, crashes with their stderr, disagreements, seconds per round);
exits 1 on any crash or disagreement. tests/reliability/test_stress.py runs a short version.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.proc import csync_argv, csync_env
from reconciler.domain import dsau
from reconciler.lab import Lab

PPKEYS = f"{dsau.CFENGINE_DIR}/{dsau.PPKEYS_SUBDIR}"

# `csync --help`'s exit codes; 70 is in it, and still a crash (errors.ExitCode.INTERNAL: a bug)
DOCUMENTED = frozenset({0, 1, 2, 3, 4, 5, 6, 64, 70, 130, 143})
INTERNAL = 70


@dataclass
class Outcome:
    runs: int = 0
    exits: Counter = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    unreachable: int = 0
    round_seconds: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.crashes or self.disagreements)


def crash(code: int, stderr: str) -> str | None:
    """Why a finished `csync` run is a crash, or None."""
    if "Traceback (most recent call last)" in stderr:
        return f"exit {code}, a traceback in stderr"
    if code not in DOCUMENTED:
        return f"exit {code}, not a documented exit code"
    if code == INTERNAL:
        return "exit 70, an internal error"
    return None


def one_round(path: Path, work: Path, processes: int, out: Outcome, reference: list) -> None:
    argv = csync_argv("plan", "-f", str(path), "--format", "json", "--detailed-exitcode")
    env = csync_env(CI="true")
    start = time.monotonic()
    procs = [subprocess.Popen(argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(processes)]
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
            out.crashes.append(f"pid {p.pid}: did not end within 600 s")
            continue
        out.runs += 1
        out.exits[p.returncode] += 1
        why = crash(p.returncode, stderr)
        if why:
            out.crashes.append(f"{why}: {stderr.strip()[-1500:]}")
            continue
        if p.returncode not in (0, 2):
            out.unreachable += p.returncode == 1
            continue
        plan = json.loads(stdout)
        if plan["unknown"]:
            out.unreachable += 1
            continue
        actions = [(a["kind"], a["address"], a["command"]) for a in plan["actions"]]
        if not reference:
            reference.append(actions)
        elif actions != reference[0]:
            out.disagreements.append(f"{len(actions)} actions, the first complete plan had {len(reference[0])}")
    out.round_seconds.append(time.monotonic() - start)


def stress(processes: int, rounds: int, members: int, clients: int, directory: Path | None = None, *, progress=None) -> Outcome:
    out = Outcome()
    with tempfile.TemporaryDirectory(prefix="csync-stress-") as tmp:
        base = Path(directory or tmp)
        lab = Lab(base / "lab")
        lab.up(members=members, clients=clients, scenario="fresh")
        try:
            client, package = lab.hosts.by_role("client")[0].name, lab.package
            if package is None:
                raise SystemExit("bench.stress: the fresh scenario has no package")
            lab.exec(client, ["rm", "-f", f"{PPKEYS}/{dsau.peer_key_name(package['address'])}"], check=True)
            work = base / "work"
            work.mkdir(exist_ok=True)
            reference: list = []
            for n in range(1, rounds + 1):
                one_round(lab.desired_state_path, work, processes, out, reference)
                if progress:
                    progress(n, out)
        finally:
            lab.down()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--dir", type=Path)
    args = ap.parse_args(argv)
    started = time.monotonic()
    cpu = os.times()
    out = stress(
        args.processes,
        args.rounds,
        args.members,
        args.clients,
        args.dir,
        progress=lambda n, o: print(f"round {n:>3}: {o.round_seconds[-1]:.2f}s; runs {o.runs}, crashes {len(o.crashes)}", flush=True),
    )
    used = os.times()
    children_cpu = (used.children_user - cpu.children_user) + (used.children_system - cpu.children_system)
    for c in out.crashes:
        print(f"CRASH: {c}")
    for d in out.disagreements:
        print(f"DISAGREES: {d}")
    rs = sorted(out.round_seconds)
    print(
        f"{args.processes} processes x {args.rounds} rounds on {args.members + args.clients} hosts in {time.monotonic() - started:.0f}s "
        f"(CPU of the child processes {children_cpu:.0f}s): runs {out.runs}; exits {dict(sorted(out.exits.items()))}; crashes {len(out.crashes)}; "
        f"plans that disagree {len(out.disagreements)}; with a host unreachable {out.unreachable}; "
        f"round seconds median {rs[len(rs) // 2]:.2f}, max {rs[-1]:.2f}"
    )
    return 0 if out.ok else 1


if __name__ == "__main__":
    sys.exit(main())
