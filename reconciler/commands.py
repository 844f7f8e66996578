"""The driver: every command csync sends to a host is built here, and only here.

Values come from the validated model (host names, IPv4 addresses, absolute normalised
paths) and are still quoted with shlex.quote: validation is the first wall, quoting the
second. Nothing else in csync composes shell strings.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib import resources

from reconciler import dsau
from reconciler.model import DesiredState

_PROBE_SCRIPT = resources.files("reconciler").joinpath("probe.sh").read_text(encoding="utf-8")


# Scripts travel on standard input to a POSIX shell: the command line stays short and
# fixed, whatever root's login shell is, and the script is data rather than an argument.
SHELL = "/bin/sh -s"


@dataclass(frozen=True)
class RemoteCommand:
    """A POSIX sh script for one host (run as ``SHELL`` with the script on stdin), with the
    short form shown in plans."""

    script: str
    display: str


def quote_argv(argv: list[str] | tuple[str, ...]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def assign(name: str, value: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"not a shell variable name: {name!r}")
    return f"{name}={shlex.quote(value)}"


def probe(state: DesiredState, role: str) -> RemoteCommand:
    """The one-round-trip probe of a host in ``role`` (member | master | client)."""
    paths = state.paths
    params = {
        "CF": paths.cfengine_dir,
        "ROLE": role,
        "MOUNT": state.master.package.mount if state.is_cluster else "",
        "MKEYS": dsau.PACKAGE_CLUSTER_KEY_DIR,
        "MINPUTS": dsau.PACKAGE_MASTER_INPUTS if state.is_cluster else paths.standalone_master_inputs,
        "STATE": dsau.PACKAGE_CSYNC_STATE if state.is_cluster else dsau.STANDALONE_CSYNC_STATE,
        "SGPATH": dsau.SERVICEGUARD_PATH,
    }
    header = "\n".join(assign(k, v) for k, v in params.items())
    return RemoteCommand(script=f"{header}\n{_PROBE_SCRIPT}", display=f"csync probe ({role})")
