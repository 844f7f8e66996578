"""The probe script of a client whose cfengine work directory is a local directory: for the
unit tests that run probe.sh with the machine's /bin/sh (no lab)."""

from __future__ import annotations

from pathlib import Path

from reconciler.driver import commands


def client_probe(cf: Path, *, serve: bool = False) -> str:
    return commands.probe_script(
        "client",
        cfengine_dir=str(cf),
        mount="",
        master_inputs="/var/opt/dsau/cfengine_master/inputs",
        state_dir="/var/opt/csync",
        package_files_dir="/etc/cmcluster/csync",
        serviceguard_path="/usr/sbin",
        cmviewcl_format="auto",
        serve=serve,
    ).script
