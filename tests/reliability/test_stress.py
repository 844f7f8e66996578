"""Issue #19: concurrent `csync plan` processes against one lab never crash (bench/stress.py
runs 8 x 20; this is 4 processes x 3 rounds): no undocumented exit, no internal error, no
traceback, and every complete plan the same."""

from __future__ import annotations

import os

import pytest

from bench.stress import crash, stress
from reconciler.desired.loader import load_desired_state
from reconciler.driver.transport import Pool

pytestmark = pytest.mark.lab


def test_concurrent_plans_do_not_crash_and_agree(tmp_path):
    out = stress(processes=4, rounds=3, members=2, clients=3, directory=tmp_path)
    assert out.runs == 12
    assert out.ok, (out.crashes, out.disagreements)
    assert out.exits[2] >= 1  # at least one run saw every host and planned the missing key file


def test_what_counts_as_a_crash():
    assert crash(2, "") is None and crash(1, "Error: node2 unreachable") is None
    assert crash(70, "Error: internal error") == "exit 70, an internal error"
    assert "not a documented" in crash(-11, "")
    assert "traceback" in crash(1, "Traceback (most recent call last):\n  File ...")


def test_commands_run_when_descriptors_pass_1024(lab):
    """At 2,000 hosts a run holds a descriptor per connection, and a channel's passed 1024:
    select() refused it ("filedescriptor out of range"); the transport polls instead."""
    state = load_desired_state([lab.desired_state_path])
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with Pool(state.access) as pool:
            result = pool.connect(state.all_hosts[0]).run("hostname", timeout=30)
        assert result.ok and result.stdout.decode().strip() == state.all_hosts[0].name
        assert max(held) > 1024
    finally:
        for fd in held:
            os.close(fd)
