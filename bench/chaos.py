"""Chaos: SIGKILL csync at a random moment of an apply, over and over, and check what is left.

    python -m bench.chaos [--runs 30] [--members 3] [--clients 30] [--seed 1] [--dir DIR]
                                               (root; starts and stops its own lab)

Each run reseeds the lab to `seed`, saves a plan, starts `csync apply PLANFILE` as a process
(the site lock's lease shortened to 3 s) and kills it with SIGKILL after a random delay
drawn over the length of an uninterrupted apply (measured first). After each kill:

- every key file on every host is absent or a whole public key: never partial, and no
  draft (*.tmp) is left once the host scripts have ended;
- the next plan is truthful: nothing unknown, and every action it plans is one of the
  killed plan's (work not done yet), never something new;
- the next apply takes the dead run's lock over once its lease has ended, and converges.

The counts are printed (runs, kills before/while/after the waves, locks taken over,
convergence); exit 1 if any run broke a rule. tests/reliability/test_chaos.py runs 5.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.proc import csync_argv, csync_env
from reconciler.domain import dsau
from reconciler.domain.keys import public_key_fingerprint
from reconciler.lab import Lab

PPKEYS = f"{dsau.CFENGINE_DIR}/{dsau.PPKEYS_SUBDIR}"
LEASE = "3"


@dataclass
class Run:
    number: int
    delay: float
    phase: str = ""  # before the waves / during / after
    partial: list[str] = field(default_factory=list)
    drafts: list[str] = field(default_factory=list)
    untruthful: list[str] = field(default_factory=list)
    took_over: bool = False
    converged: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return not (self.partial or self.drafts or self.untruthful or self.error) and self.converged


def csync(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        csync_argv(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=csync_env(CI="true", CSYNC_LOCK_LEASE_SECONDS=LEASE),
    )


def key_files(lab: Lab) -> tuple[list[str], list[str]]:
    """(key files that are not a whole public key, drafts left) on every host that is up."""
    partial, drafts = [], []
    for h in lab.status().hosts:
        if h.state != "up":
            continue
        # one exec per host: every entry's name, and each public key file's bytes after it
        dump = lab.exec(
            h.name, f'cd {PPKEYS} 2>/dev/null && for f in .* *; do [ -f "$f" ] || continue; echo "@@ $f"; case $f in *.pub) cat "$f" ;; esac; done; true'
        ).stdout
        for block in dump.split("@@ ")[1:]:
            name, _, text = block.partition("\n")
            if name.endswith(".tmp"):
                drafts.append(f"{h.name}:{name}")
            elif name.endswith(".pub") and public_key_fingerprint(text)[1] is not None:
                partial.append(f"{h.name}:{name}")
    return partial, drafts


def one_run(lab: Lab, work: Path, number: int, delay: float) -> Run:
    run = Run(number, round(delay, 3))
    lab.reseed("seed")
    path = str(lab.desired_state_path)
    r = csync(work, "plan", "-f", path, "--format", "json", "--out", "plan.json")
    plan = json.loads(r.stdout)
    ids = {a["kind"] + ":" + a["address"] for a in plan["actions"]}
    journals = work / ".csync" / "runs"
    before = set(journals.glob("*")) if journals.exists() else set()
    proc = subprocess.Popen(
        csync_argv("apply", "plan.json", "-f", path),
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=csync_env(CI="true", CSYNC_LOCK_LEASE_SECONDS=LEASE),
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    new = sorted(set(journals.glob("*")) - before) if journals.exists() else []
    text = new[0].read_text() if new else ""
    run.phase = "after" if '"run-end"' in text else "during" if '"action-start"' in text else "before"
    time.sleep(1.0)  # host scripts the kill orphaned finish (each file change is one rename)
    run.partial, run.drafts = key_files(lab)
    r = csync(work, "plan", "-f", path, "--format", "json")
    left = json.loads(r.stdout) if r.stdout.strip() else {}
    if left.get("unknown"):
        run.untruthful.append(f"unknown: {left['unknown']}")
    # A start-package is two commands (cmrunpkg, then cmmodpkg -e); killed between them, the
    # package runs with switching disabled, and enabling it is the rest of that same work.
    rest_of = {f"enable-switching:{i.split(':', 1)[1]}" for i in ids if i.startswith("start-package:")}
    new_work = {a["kind"] + ":" + a["address"] for a in left.get("actions", ())} - ids - rest_of
    if new_work:
        run.untruthful.append(f"work the killed plan did not have: {sorted(new_work)}")
    r = csync(work, "apply", "-f", path, "--auto-approve", "--allow-cluster-ops", "--lock-timeout", "30")
    run.took_over = "Took over an expired lock" in r.stdout
    run.converged = r.returncode == 0  # exit 0: every action done and verified, and a fresh plan is clean
    if not run.converged:
        run.error = (r.stdout + r.stderr)[-600:]
    return run


def measure_apply(lab: Lab, work: Path) -> float:
    lab.reseed("seed")
    path = str(lab.desired_state_path)
    csync(work, "plan", "-f", path, "--out", "plan.json")
    start = time.monotonic()
    r = csync(work, "apply", "plan.json", "-f", path)
    if r.returncode != 0:
        raise SystemExit(f"an uninterrupted apply failed: {r.stdout[-500:]}{r.stderr[-500:]}")
    return time.monotonic() - start


def chaos(runs: int, members: int, clients: int, seed: int, directory: Path | None = None) -> list[Run]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="csync-chaos-") as tmp:
        base = Path(directory or tmp)
        lab = Lab(base / "lab")
        lab.up(members=members, clients=clients, scenario="seed")
        try:
            work = base / "work"
            work.mkdir(exist_ok=True)
            length = measure_apply(lab, work)
            return [one_run(lab, work, i, rng.uniform(0.0, length * 1.1)) for i in range(1, runs + 1)]
        finally:
            lab.down()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path)
    args = ap.parse_args(argv)
    started = time.monotonic()
    results = chaos(args.runs, args.members, args.clients, args.seed, args.dir)
    for r in results:
        status = "ok" if r.ok else "BROKEN"
        print(
            f"run {r.number:>3}: killed after {r.delay:.2f}s ({r.phase} the waves); took over: {r.took_over}; "
            f"converged: {r.converged}; {status}" + (f" {r.partial or ''}{r.drafts or ''}{r.untruthful or ''}{r.error}" if not r.ok else "")
        )
    phases = {p: sum(1 for r in results if r.phase == p) for p in ("before", "during", "after")}
    print(
        f"{len(results)} runs in {time.monotonic() - started:.0f}s: killed before the waves {phases['before']}, during "
        f"{phases['during']}, after {phases['after']}; locks taken over {sum(r.took_over for r in results)}; partial key "
        f"files {sum(len(r.partial) for r in results)}; drafts left {sum(len(r.drafts) for r in results)}; untruthful plans "
        f"{sum(bool(r.untruthful) for r in results)}; converged {sum(r.converged for r in results)}/{len(results)}"
    )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
