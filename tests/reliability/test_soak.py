"""The soak's short version (bench/soak.py): 5 perturb/apply cycles on a small lab; each
cycle converges, or reports exactly the hosts that were out. The 50-cycle soak is
`python -m bench.soak --cycles 50 --members 3 --clients 50`."""

from __future__ import annotations

import pytest

from bench.soak import soak, summary

pytestmark = pytest.mark.lab


def test_five_soak_cycles_converge_or_report_exactly_the_hosts_out(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=3, clients=6)
    lines: list[str] = []
    results = soak(lab, cycles=5, seed=3, workdir=tmp_path, out=lines.append)
    report = "\n".join(lines + summary(results))
    assert all(c.ok for c in results), report
    # seed 3 disturbs keys, fails the package over and isolates a client within 5 cycles
    kinds = {p.split()[0] for c in results for p in c.perturbations}
    assert {"node-down", "isolate"} <= kinds and kinds & {"delete", "corrupt", "chmod"}, report
    assert any(c.converged for c in results) and any(c.out for c in results), report
    assert sum(c.done for c in results) > 0
