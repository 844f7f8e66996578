"""Plan identity benchmark: the probe through the probe program (forced command) vs the probe
script on stdin (root's identity), same lab, same run, alternating.

    python -m bench.plan_identity [--clients 197] [--rounds 3]      (root; starts and stops a lab)

Prints the wall time of a full probe both ways, the commands per host (one both ways), and
checks that both give the same facts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reconciler.desired.loader import load_desired_state
from reconciler.driver import probeprogram
from reconciler.driver.commands import RemoteCommand
from reconciler.driver.transport import Pool, fan_out
from reconciler.lab.keys import ssh_ed25519
from reconciler.observe.probe import probe_site


def probe(state, identity: str) -> tuple[float, float, dict]:
    start = time.monotonic()
    with Pool(state.access, identity=identity) as pool:  # type: ignore[arg-type]
        site = probe_site(state, pool)
    seconds = time.monotonic() - start
    assert not site.unreachable, [f.reason for f in site.unreachable][:3]
    facts = {n: f.model_copy(update={"probe_seconds": None}) for n, f in site.hosts.items()}
    return seconds, statistics.mean(site.commands_sent.values()), facts


def main(argv=None) -> int:
    from reconciler.lab.runtime import Lab

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=197)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        lab = Lab(Path(d) / "lab")
        lab.up(members=3, clients=args.clients, scenario="fresh")
        try:
            private, public = ssh_ed25519("csync-plan")
            key = Path(d) / "plan"
            key.write_bytes(private)
            key.chmod(0o600)
            state = load_desired_state([lab.desired_state_path])
            state = state.model_copy(update={"access": state.access.model_copy(update={"plan_identity_file": str(key)})})
            plan_key = probeprogram.parse_public_key(public.decode())
            setup = RemoteCommand(
                probeprogram.install(state.platform).script + "\n" + probeprogram.authorize(probeprogram.authorized_keys_line(plan_key), plan_key).script,
                "setup",
            )
            with Pool(state.access) as pool:
                done = fan_out(state.all_hosts, lambda h: pool.connect(h).run_script(setup, timeout=60).exit_code, parallelism=state.access.parallelism)
            assert set(done.values()) == {0}, done
            times: dict[str, list[float]] = {"root": [], "plan": []}
            per_host: dict[str, float] = {}
            facts: dict[str, dict] = {}
            for i in range(args.rounds):  # alternate: the machine is noisy
                for identity in ("root", "plan") if i % 2 == 0 else ("plan", "root"):
                    seconds, per_host[identity], facts[identity] = probe(state, identity)
                    times[identity].append(seconds)
            assert facts["root"] == facts["plan"], "the two identities read different facts"
            hosts = len(state.all_hosts)
            for identity in ("root", "plan"):
                print(
                    f"{identity:<5} probe of {hosts} hosts: median {statistics.median(times[identity]):.2f} s "
                    f"({', '.join(f'{t:.2f}' for t in times[identity])}), {per_host[identity]:.0f} command(s) per host"
                )
            print(f"plan/root: {statistics.median(times['plan']) / statistics.median(times['root']):.2f}x; same facts: yes")
        finally:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
