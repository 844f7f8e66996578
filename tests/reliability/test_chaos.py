"""Issue #19: csync killed (SIGKILL) at random moments of an apply, five times (bench/chaos.py
runs 30): never a partial key file or a draft left, the next plan truthful, the dead run's
lock taken over once its lease ends, the next apply converged."""

from __future__ import annotations

import pytest

from bench.chaos import chaos

pytestmark = pytest.mark.lab


def test_five_random_kills_lose_nothing_and_the_next_apply_converges(tmp_path):
    results = chaos(runs=5, members=3, clients=2, seed=7, directory=tmp_path)
    broken = [r for r in results if not r.ok]
    assert not broken, broken
    assert all(r.converged for r in results)
