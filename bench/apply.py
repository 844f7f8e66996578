"""Apply benchmark: `seed` applied on a lab of 3 members and N clients, against a probe of
the same lab, in the same run (target: apply within 3x the probe).

    python -m bench.apply [--clients 200] [--rounds 3]     (root; starts and stops a lab)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reconciler.apply.events import Events, StopFlag
from reconciler.apply.journal import Journal
from reconciler.apply.run import ApplyOptions, run_apply
from reconciler.desired.loader import load_desired_state
from reconciler.driver.transport import Pool
from reconciler.observe.probe import probe_site


def main(argv=None) -> int:
    from reconciler.lab import Lab

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    probes, applies, trips = [], [], 0
    with tempfile.TemporaryDirectory() as d:
        lab = Lab(Path(d) / "lab")
        lab.up(members=3, clients=args.clients, scenario="seed")
        try:
            state = load_desired_state([lab.desired_state_path])
            for round_ in range(args.rounds):
                lab.reseed("seed")
                with Pool(state.access) as pool:
                    start = time.monotonic()
                    site = probe_site(state, pool)
                    probes.append(time.monotonic() - start)
                assert not site.unreachable
                journal = Journal(f"00000000-0000-4000-8000-{round_:012d}", Path(d) / "runs")
                start = time.monotonic()
                with Pool(state.access) as pool:
                    report = run_apply(
                        state,
                        pool,
                        saved_plan=None,
                        options=ApplyOptions(lock_timeout=0),
                        confirm=lambda plan: True,
                        events=Events(),
                        journal=journal,
                        stop=StopFlag(),
                    )
                applies.append(time.monotonic() - start)
                journal.close()
                assert report.exit_code == 0, "seed did not converge"
                trips = max(report.round_trips[c.name] for c in state.clients)
        finally:
            lab.down()
    pm, am = statistics.median(probes), statistics.median(applies)
    print(f"hosts {3 + args.clients}, seed scenario, {args.rounds} rounds")
    print(f"probe: median {pm:.2f}s ({', '.join(f'{x:.2f}' for x in probes)})")
    print(f"apply: median {am:.2f}s ({', '.join(f'{x:.2f}' for x in applies)}); {trips} round trips per client")
    print(f"ratio apply / probe: {am / pm:.2f}x (target <= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
