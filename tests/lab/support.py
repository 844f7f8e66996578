"""Helpers the lab tests share: the lab's own cfengine, run as a site would run it (independent
of csync's live checks)."""

from __future__ import annotations

import shlex

from reconciler.domain import dsau
from reconciler.lab import Lab
from reconciler.lab.topology import LAB_MOUNT

# update.conf of the master's inputs: what a client's update copies from the master
CLUSTER_SOURCE = f"{LAB_MOUNT}/{dsau.PACKAGE_MASTER_INPUTS}/{dsau.UPDATE_CONF}"
STANDALONE_SOURCE = f"{dsau.STANDALONE_MASTER_INPUTS}/{dsau.UPDATE_CONF}"
COPIED = "copy arrived"


def cfagent_copy(lab: Lab, host: str, server: str, source: str = CLUSTER_SOURCE, env: str = "") -> tuple[str, bool]:
    """cfagent on ``host`` with cfengine 2's command line (``-q -K -f FILE``), FILE an input
    file that copies ``source`` from ``server`` (trustkey=false) into /tmp/cfagent-copy:
    (cfagent's output, whether the copy arrived). cfagent itself exits 0 either way."""
    d = "/tmp/cfagent-copy"
    policy = f"control:\n   actionsequence = ( copy )\ncopy:\n   {source} dest={d}/copied server={server} trustkey=false\n"
    line = (
        f"rm -rf {d} && mkdir {d} && printf '%s' {shlex.quote(policy)} > {d}/in.cf && {env}cfagent -q -K -f {d}/in.cf; rc=$?; "
        f"[ -f {d}/copied ] && echo {shlex.quote(COPIED)}; exit $rc"
    )
    done = lab.exec(host, line)
    assert done.returncode == 0, f"{host}$ {line}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    lines = done.stdout.splitlines(keepends=True)
    arrived = bool(lines) and lines[-1].rstrip("\n") == COPIED
    return "".join(lines[:-1] if arrived else lines), arrived
