"""Hostile hosts, planted in the lab: key files that lie (a `root-*.pub` symlinked to
/etc/shadow, a private key posing as a public one, a file that is not a key), a key store
that is a symbolic link, a cmviewcl that answers garbage or without end. csync neither
follows nor leaks, reports each, and repairs only what it can repair safely."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.support import (
    PKG,
    PPKEYS,
    csync,
    desired,
    fresh_plan,
    key_store,
    temp_files,
)

pytestmark = pytest.mark.lab


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def replace_program(lab, host: str, name: str, body: str) -> None:
    """Replace the emulated command ``name`` in one host (its /usr/local/sbin) by ``body``."""
    lab.exec(
        host, ["/bin/sh", "-c", f"rm -f /usr/local/sbin/{name} && cat > /usr/local/sbin/{name} && chmod 755 /usr/local/sbin/{name}"], input=body, check=True
    )


def test_lying_key_files_are_not_followed_not_leaked_and_replaced(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    shadow = lab.exec("client1", "cat /etc/shadow", check=True).stdout
    secrets = [line.split(":")[1] for line in shadow.splitlines() if len(line.split(":")) > 2 and len(line.split(":")[1]) > 2]
    private = lab.exec("client1", f"cat {PPKEYS}/localhost.priv", check=True).stdout
    private_lines = [line for line in private.splitlines() if line and not line.startswith("-----")]
    lab.exec("client1", f"rm {PPKEYS}/root-{PKG}.pub && ln -s /etc/shadow {PPKEYS}/root-{PKG}.pub", check=True)
    lab.exec("client1", f"cp {PPKEYS}/localhost.priv {PPKEYS}/root-127.0.10.1.pub && chmod 644 {PPKEYS}/root-127.0.10.1.pub", check=True)
    lab.exec("node2", f"echo 'this is not a key' > {PPKEYS}/root-127.0.10.21.pub", check=True)
    shadow_sum = hashlib.sha256(shadow.encode()).hexdigest()
    path = desired(lab, tmp_path)

    outputs = {}
    for fmt in ("text", "json", "markdown"):
        r = cli(tmp_path, "plan", "-f", str(path), "--format", fmt)
        assert r.returncode == 0, r.stderr
        outputs[f"plan-{fmt}"] = r.stdout + r.stderr
    for fmt in ("text", "json"):
        r = cli(tmp_path, "facts", "-f", str(path), "--format", fmt)
        outputs[f"facts-{fmt}"] = r.stdout + r.stderr
    text = outputs["plan-text"]
    assert f"root-{PKG}.pub is a symbolic link" in text
    assert "root-127.0.10.1.pub holds no RSA public key" in text
    assert "root-127.0.10.21.pub holds no RSA public key" in text
    facts = json.loads(outputs["facts-json"])
    client1 = next(h for h in (facts["hosts"].values() if isinstance(facts["hosts"], dict) else facts["hosts"]) if h["name"] == "client1")
    assert client1["keys"][f"root-{PKG}.pub"]["kind"] == "symlink"
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    outputs["apply"] = r.stdout + r.stderr
    outputs["journal"] = "".join(p.read_text() for p in (tmp_path / ".csync" / "runs").glob("*.jsonl"))
    for where, out in outputs.items():
        assert not any(s in out for s in secrets), f"/etc/shadow content in {where}"
        assert not any(line in out for line in private_lines), f"private key material in {where}"
        assert "PRIVATE KEY" not in out, where
    # the link was replaced by a key file; what it pointed at is untouched
    assert lab.exec("client1", f"test -f {PPKEYS}/root-{PKG}.pub && test ! -L {PPKEYS}/root-{PKG}.pub").returncode == 0
    assert hashlib.sha256(lab.exec("client1", "cat /etc/shadow").stdout.encode()).hexdigest() == shadow_sum
    assert lab.exec("client1", "stat -c %a /etc/shadow").stdout.strip() == "640"
    assert fresh_plan(path).clean and temp_files(lab) == []


def test_a_symlinked_key_store_is_blocked_with_what_to_do_and_never_written_through(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    lab.exec("client2", f"mv {PPKEYS} {PPKEYS}.elsewhere && ln -s {PPKEYS}.elsewhere {PPKEYS} && rm {PPKEYS}.elsewhere/root-{PKG}.pub", check=True)
    elsewhere = lab.exec("client2", f"ls -la --time-style=+%s {PPKEYS}.elsewhere/", check=True).stdout
    path = desired(lab, tmp_path)
    plan = fresh_plan(path)
    assert not [a for a in plan.actions if a.host == "client2"]
    [block] = [f for f in plan.blocked if f.host == "client2"]
    assert "ppkeys is a symbolic link" in block.message and "make it a directory" in block.message
    facts = cli(tmp_path, "facts", "-f", str(path))
    assert "ppkeys is a symbolic link" in facts.stdout
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve")
    assert r.returncode == 1 and "ppkeys is a symbolic link" in r.stdout, r.stdout + r.stderr
    assert lab.exec("client2", f"ls -la --time-style=+%s {PPKEYS}.elsewhere/").stdout == elsewhere  # nothing written through
    assert lab.exec("client2", f"test -L {PPKEYS}").returncode == 0
    # repaired by hand as the message says: the next apply converges
    lab.exec("client2", f"rm {PPKEYS} && mv {PPKEYS}.elsewhere {PPKEYS}", check=True)
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_cmviewcl_that_answers_garbage_is_reported_not_believed(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=1)
    # node2 claims, in a broken format, that the package runs on a node that does not exist
    replace_program(lab, "node2", "cmviewcl", "#!/bin/sh\necho 'garbage'\necho 'package:csync|owner=node9|status=up'\nprintf '\\001\\377\\n'\n")
    path = desired(lab, tmp_path)
    r = cli(tmp_path, "facts", "-f", str(path))
    assert "Traceback" not in r.stderr and "output not understood" in r.stdout
    plan = fresh_plan(path)
    assert not plan.actions  # node1 still tells the truth about the package; nothing follows node2's story
    assert not any("node9" in a.command for a in plan.actions)


def test_an_endless_probe_answer_is_cut_off_at_the_timeout_and_the_host_reported(lab_factory, tmp_path):
    # The probe reads cmviewcl's answer whole before it replies (probe.sh), so an endless
    # answer meets the command timeout before the transport's size limit; either way the
    # host is reported unreachable with the reason and the others are planned.
    lab = lab_factory("fresh", members=2, clients=1)
    replace_program(lab, "node2", "cmviewcl", "#!/bin/sh\nhead -c 80000000 /dev/zero | tr '\\000' 'x'\n")
    path = desired(lab, tmp_path, command_timeout=4)
    r = cli(tmp_path, "facts", "-f", str(path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    [line] = [x for x in r.stdout.splitlines() if x.startswith("node2 ")]
    assert "UNREACHABLE" in line and "command timed out" in line
    plan = fresh_plan(path)
    assert [f.address for f in plan.unknown] == ["member.node2"] and "timed out" in plan.unknown[0].message
    assert key_store(lab, "node2")  # the host itself is untouched
