"""Shared fixtures. Lab tests start real sshd hosts on 127.0.10.0/24 and need root and
openssh-server: without them the run stops with what to do (they never skip)."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture
def lab_factory(tmp_path_factory):
    """Start labs (`start(scenario, members, clients)`); every one is stopped afterwards."""
    if os.geteuid() != 0:
        pytest.exit("the lab tests need root (mount and UTS namespaces); run the suite as root", returncode=3)
    if not shutil.which("sshd") and not os.path.exists("/usr/sbin/sshd"):
        pytest.exit("the lab tests need sshd: apt-get install openssh-server (or bash scripts/setup-system.sh)", returncode=3)
    from reconciler.lab.runtime import Lab

    started = []

    def start(scenario: str = "fresh", members: int = 3, clients: int = 4) -> Lab:
        lab = Lab(tmp_path_factory.mktemp("lab"))
        lab.up(members=members, clients=clients, scenario=scenario)
        started.append(lab)
        return lab

    yield start
    for lab in started:
        lab.down()
