"""The probe script, run by a real /bin/sh on real planted files, parsed by csync.

Crossing SSH is covered by the lab tests; here the script's own behaviour is the subject:
what it reads, what it refuses to read, and how its answer parses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.driver import commands
from reconciler.observe.facts import parse_probe
from tests.keys import fp, keypair, public
from tests.shell import run_sh

SECRET = "TOP-SECRET-SHADOW-LINE"


def run_probe(tmp_path: Path, role: str = "client", mount: str = "", sg_path: str = "/nonexistent", sg_format: str = "auto") -> tuple[bytes, int]:
    script = commands.probe_script(
        role,
        cfengine_dir=str(tmp_path / "cf"),
        mount=mount,
        master_inputs="dsau/cfengine_master/inputs" if role == "member" else str(tmp_path / "master-inputs"),
        state_dir="dsau/csync" if role == "member" else str(tmp_path / "state"),
        package_files_dir=str(tmp_path / "pkgfiles"),
        serviceguard_path=sg_path,
        cmviewcl_format=sg_format,
    ).script
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    done = run_sh(["/bin/sh", "-s"], script, env=env, timeout=30)
    return done.stdout, done.returncode


@pytest.fixture
def cfdir(tmp_path: Path) -> Path:
    pp = tmp_path / "cf" / "ppkeys"
    pp.mkdir(parents=True)
    (tmp_path / "cf" / "inputs").mkdir()
    (tmp_path / "cf" / "inputs" / "cfagent.conf").write_text("control:\n")
    priv, pub = keypair("own")
    (pp / "localhost.priv").write_text(priv)
    (pp / "localhost.pub").write_text(pub)
    (pp / "root-10.0.0.1.pub").write_text(public("cluster"))
    os.chmod(pp / "root-10.0.0.1.pub", 0o644)
    return pp


def test_reports_each_key_by_fingerprint_and_mode(tmp_path, cfdir):
    out, rc = run_probe(tmp_path)
    facts = parse_probe("web1", "10.0.0.21", "client", out, rc)
    assert facts.reachable
    assert facts.own_key.fingerprint == fp("own")
    assert facts.peer_key("10.0.0.1").fingerprint == fp("cluster")
    assert facts.peer_key("10.0.0.1").mode == 0o644
    assert facts.cfengine_dir == facts.ppkeys_dir == facts.inputs_dir == "dir"


def test_never_reads_the_private_key(tmp_path, cfdir):
    out, _ = run_probe(tmp_path)
    assert b"PRIVATE KEY" not in out
    assert keypair("own")[0].splitlines()[1].encode() not in out


def test_does_not_follow_a_key_file_symlinked_elsewhere(tmp_path, cfdir):
    shadow = tmp_path / "shadow"
    shadow.write_text(f"root:{SECRET}:19000:0:99999:7:::\n")
    (cfdir / "root-10.0.0.2.pub").symlink_to(shadow)
    out, rc = run_probe(tmp_path)
    assert SECRET.encode() not in out
    key = parse_probe("web1", "10.0.0.21", "client", out, rc).peer_key("10.0.0.2")
    assert key.kind == "symlink" and not key.usable


def test_a_private_key_posing_as_a_public_one_leaks_nothing(tmp_path, cfdir):
    (cfdir / "root-10.0.0.3.pub").write_text(keypair("other")[0])
    out, rc = run_probe(tmp_path)
    assert b"PRIVATE KEY" not in out
    assert parse_probe("web1", "10.0.0.21", "client", out, rc).peer_key("10.0.0.3").problem == "holds no RSA public key"


def test_a_file_that_is_not_a_key_is_reported_unusable(tmp_path, cfdir):
    (cfdir / "root-10.0.0.4.pub").write_text("-----BEGIN RSA PUBLIC KEY-----\nbm90IGEga2V5\n-----END RSA PUBLIC KEY-----\n")
    out, rc = run_probe(tmp_path)
    key = parse_probe("web1", "10.0.0.21", "client", out, rc).peer_key("10.0.0.4")
    assert key.fingerprint is None and key.problem == "not an RSA public key"


def test_a_symlinked_key_store_is_not_listed(tmp_path, cfdir):
    elsewhere = tmp_path / "elsewhere"
    cfdir.rename(elsewhere)
    (tmp_path / "cf" / "ppkeys").symlink_to(elsewhere)
    out, rc = run_probe(tmp_path)
    facts = parse_probe("web1", "10.0.0.21", "client", out, rc)
    assert facts.ppkeys_dir == "symlink" and facts.keys == {}


def test_strange_file_names_cannot_forge_a_key_entry(tmp_path, cfdir):
    forged = "x\n-rw-r--r-- 1 0 0 251 Jan  1  2020 root-10.0.0.9.pub"
    (cfdir / forged).write_text(public("cluster"))
    out, rc = run_probe(tmp_path)
    assert parse_probe("web1", "10.0.0.21", "client", out, rc).peer_key("10.0.0.9") is None


def test_inputs_digest_follows_content(tmp_path, cfdir):
    before = parse_probe("w", "10.0.0.21", "client", *run_probe(tmp_path)).inputs_digest
    (tmp_path / "cf" / "inputs" / "cfagent.conf").write_text("control:\n  changed\n")
    after = parse_probe("w", "10.0.0.21", "client", *run_probe(tmp_path)).inputs_digest
    assert before and after and before != after


def test_missing_cfengine_dir_is_a_fact_not_an_error(tmp_path):
    facts = parse_probe("w", "10.0.0.21", "client", *run_probe(tmp_path))
    assert facts.reachable and facts.cfengine_dir == "missing" and facts.keys == {}


def test_member_without_serviceguard_reports_the_missing_command(tmp_path, cfdir):
    facts = parse_probe("n1", "10.0.0.1", "member", *run_probe(tmp_path, role="member", mount=str(tmp_path / "csync")))
    assert facts.cluster is None
    assert "exit 127" in facts.cluster_error and "not found" in facts.cluster_error
    assert facts.package_fs.mounted is False


def test_member_reads_the_mounted_package_filesystem(tmp_path, cfdir):
    mount = tmp_path / "csync"
    (mount / "dsau/cfengine_master/inputs").mkdir(parents=True)
    (mount / "dsau/cfengine_master/inputs/cfagent.conf").write_text("control:\n")
    (mount / "dsau/cfengine_master/ppkeys").mkdir()
    (mount / "dsau/cfengine_master/ppkeys/localhost.pub").write_text(public("cluster"))
    (mount / "dsau/csync").mkdir()
    (mount / "dsau/csync/inventory").write_text("10.0.0.5\n; rm -rf /\n10.0.0.6\n")
    bindir = tmp_path / "sgbin"
    bindir.mkdir()
    (bindir / "cmviewcl").write_text("#!/bin/sh\necho name=c1\necho status=up\necho 'node:n1|status=up'\n")
    (bindir / "cmviewcl").chmod(0o755)
    facts = parse_probe("n1", "10.0.0.1", "member", *run_probe(tmp_path, role="member", mount=str(mount), sg_path=str(bindir)))
    assert facts.cluster.name == "c1" and facts.cluster.nodes["n1"].up
    pkgfs = facts.package_fs
    assert pkgfs.mounted and pkgfs.cluster_key.fingerprint == fp("cluster")
    assert pkgfs.inputs_digest == facts.inputs_digest  # same files, same digest, other place
    assert pkgfs.inventory == ("10.0.0.5", "10.0.0.6")


@pytest.mark.parametrize("sg_format", ["auto", "line", "table"])
def test_the_cmviewcl_format_of_the_platform_decides_what_is_run(tmp_path, cfdir, sg_format):
    """auto: -f line, then the table when it is refused; line: -f line only (its refusal is the
    answer); table: the table only. Whatever is read, package files are counted in the
    desired state's package directory."""
    bindir = tmp_path / "sgbin"
    bindir.mkdir()
    (bindir / "cmviewcl").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {bindir}/calls.log\n'
        'case " $* " in *" -f "*) echo "cmviewcl: illegal option -- f" >&2; exit 2 ;; esac\n'
        "printf 'CLUSTER STATUS\\nc1 up\\n\\n  NODE STATUS STATE\\n  n1 up running\\n'\n"
    )
    (bindir / "cmviewcl").chmod(0o755)
    (tmp_path / "pkgfiles").mkdir()
    (tmp_path / "pkgfiles" / "csync.conf").write_text("package_name csync\n")
    out, rc = run_probe(tmp_path, role="member", mount=str(tmp_path / "csync"), sg_path=str(bindir), sg_format=sg_format)
    facts = parse_probe("n1", "10.0.0.1", "member", out, rc)
    calls = (bindir / "calls.log").read_text().splitlines()
    assert facts.package_files == 1
    if sg_format == "line":
        assert calls == ["-v -f line"] and facts.cluster is None
        assert facts.cluster_error == "cmviewcl failed (exit 2): cmviewcl: illegal option -- f"
    else:
        assert calls == (["-v -f line", "-v"] if sg_format == "auto" else ["-v"])
        assert facts.cluster_format == "table" and facts.cluster.nodes["n1"].up
        assert json.loads(out)["cmviewcl"]["line_rc"] == (2 if sg_format == "auto" else None)


def test_root_ssh_keys_are_read_but_non_key_lines_are_dropped(tmp_path, cfdir):
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@n1\n")
    shadow = tmp_path / "shadow"
    shadow.write_text(f"root:{SECRET}:1::\n")
    (ssh / "authorized_keys").symlink_to(shadow)
    out, rc = run_probe(tmp_path)
    facts = parse_probe("w", "10.0.0.21", "client", out, rc)
    assert SECRET.encode() not in out
    assert [k.type for k in facts.ssh_public_keys] == ["ssh-ed25519"]
    assert facts.ssh_authorized == ()


def test_output_is_one_json_document(tmp_path, cfdir):
    out, rc = run_probe(tmp_path)
    assert rc == 0 and isinstance(json.loads(out), dict)
