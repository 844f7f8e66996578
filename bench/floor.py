"""The floor: one `hostname` round trip per host over fabric, as a program of its own.

    python -m bench.floor DESIRED_STATE.yaml      prints how many hosts answered

Same connection settings as csync (fabric, known_hosts verified, access.parallelism), so
the ratio to it is what csync's probe and plan add to a bare round trip per host.
"""

from __future__ import annotations

import sys

from reconciler.desired.loader import load_desired_state
from reconciler.desired.model import DesiredState
from reconciler.driver.transport import Pool, fan_out


def hostname_fan_out(state: DesiredState) -> int:
    """One `hostname` per host over fabric, in parallel; how many hosts answered with their name."""
    with Pool(state.access) as pool:
        out = fan_out(state.all_hosts, lambda h: pool.connect(h).run("hostname", timeout=30).stdout, parallelism=state.access.parallelism)
    names = {h.name for h in state.all_hosts}
    return sum(1 for stdout in out.values() if stdout.decode().strip() in names)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    state = load_desired_state([args[0]])
    answered = hostname_fan_out(state)
    print(answered)
    return 0 if answered == len(state.all_hosts) else 1


if __name__ == "__main__":
    sys.exit(main())
