"""probe.sh's listing of an inputs directory (tree): the shell's glob and one cksum for a flat
directory, find for one with a subdirectory or more than 500 files. Whichever way, the
listing is find's: every regular file below the directory, hidden ones included, no symbolic
link followed, nothing else (run with the machine's /bin/sh against find itself)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.unit.probes import client_probe


def probe_inputs(cf: Path) -> list[str]:
    script = client_probe(cf)
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    done = subprocess.run(["/bin/sh", "-s"], input=script.encode(), capture_output=True, env=env, timeout=60, start_new_session=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["errors"] == []
    return sorted(doc["inputs"])


def by_find(inputs: Path) -> list[str]:
    out = subprocess.run(["find", str(inputs), "-type", "f", "-exec", "cksum", "{}", "+"], capture_output=True, text=True, check=True).stdout
    return sorted(line.replace(f" {inputs}/", " ./", 1) for line in out.splitlines())


@pytest.mark.parametrize("shape", ["empty", "flat", "deep", "many"])
def test_the_inputs_listing_is_finds_whatever_the_shape(tmp_path, shape):
    cf = tmp_path / "cf"
    inputs = cf / "inputs"
    inputs.mkdir(parents=True)
    (cf / "ppkeys").mkdir()
    outside = tmp_path / "secret"
    outside.write_text("not an input\n")
    if shape != "empty":
        (inputs / "update.conf").write_text("control:\n")
        (inputs / "cf.motd").write_text("motd\n")
        (inputs / ".hidden").write_text("hidden\n")
        (inputs / "..dots").write_text("dots\n")
        (inputs / "with space.cf").write_text("space\n")
        (inputs / "link.cf").symlink_to(outside)  # never followed
        os.mkfifo(inputs / "a-fifo")  # not a regular file
    if shape == "deep":
        (inputs / "modules").mkdir()
        (inputs / "modules" / "module.cf").write_text("module\n")
        (inputs / "linked-dir").symlink_to(tmp_path, target_is_directory=True)  # never followed
    if shape == "many":
        for i in range(520):
            (inputs / f"f{i}.cf").write_text(f"{i}\n")
    got = probe_inputs(cf)
    assert got == by_find(inputs)
    assert not any("secret" in line or "fifo" in line or "link" in line for line in got)
    expected = {"empty": 0, "flat": 5, "deep": 6, "many": 525}[shape]
    assert len(got) == expected, got
