"""The probe's new facts for issue 16, from a real /bin/sh on planted files: key files named by
host name (never followed through a symlink), cfservd's HostnameKeys, the cfrun hosts files,
and the inventory's entries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.observe.facts import parse_probe
from tests.keys import fp, keypair, public
from tests.unit.test_probe_script import SECRET, run_probe


@pytest.fixture
def cfdir(tmp_path: Path) -> Path:
    pp = tmp_path / "cf" / "ppkeys"
    pp.mkdir(parents=True)
    (tmp_path / "cf" / "inputs").mkdir()
    priv, pub = keypair("own")
    (pp / "localhost.priv").write_text(priv)
    (pp / "localhost.pub").write_text(pub)
    (pp / "root-10.0.0.1.pub").write_text(public("cluster"))
    return pp


def test_key_files_named_by_host_name_are_read(tmp_path, cfdir):
    (cfdir / "root-node2.pub").write_text(public("stale"))
    (cfdir / "root-node2.lab.example.pub").write_text(public("cluster"))
    facts = parse_probe("web1", "10.0.0.21", "client", *run_probe(tmp_path))
    assert facts.keys["root-node2.pub"].fingerprint == fp("stale")
    assert facts.keys["root-node2.lab.example.pub"].fingerprint == fp("cluster")


def test_a_name_key_symlinked_elsewhere_is_not_followed(tmp_path, cfdir):
    shadow = tmp_path / "shadow"
    shadow.write_text(f"root:{SECRET}:19000:0:99999:7:::\n")
    (cfdir / "root-node3.pub").symlink_to(shadow)
    out, rc = run_probe(tmp_path)
    assert SECRET.encode() not in out
    key = parse_probe("web1", "10.0.0.21", "client", out, rc).keys["root-node3.pub"]
    assert key.kind == "symlink" and not key.usable


@pytest.mark.parametrize("name", ["root-no de.pub", "root-$(id).pub", "root-a;b.pub", "root--x.pub", "root-a..b.pub", "root-.pub"])
def test_a_key_file_whose_name_is_not_a_host_name_is_not_reported(tmp_path, cfdir, name):
    (cfdir / name).write_text(public("cluster"))
    facts = parse_probe("web1", "10.0.0.21", "client", *run_probe(tmp_path))
    assert name not in facts.keys
    assert set(facts.keys) == {"localhost.pub", "root-10.0.0.1.pub"}


@pytest.mark.parametrize(
    ("text", "on"),
    [
        ("control:\n   HostnameKeys = ( on )\n", True),
        ("control:\n   HostnameKeys=(true)\n", True),
        ("control:\n#   HostnameKeys = ( on )\n", False),
        ("control:\n   HostnameKeys = ( off )\n", False),
        ("control:\n   domain = ( lab )\n", False),
    ],
)
def test_cfservd_hostname_keys_is_read_from_cfservd_conf(tmp_path, cfdir, text, on):
    (tmp_path / "cf" / "inputs" / "cfservd.conf").write_text(text)
    assert parse_probe("web1", "10.0.0.21", "client", *run_probe(tmp_path)).hostname_keys is on


def test_a_master_reads_its_cfrun_hosts_and_the_master_inputs_copy(tmp_path, cfdir):
    (tmp_path / "cf" / "inputs" / "cfrun.hosts").write_text(
        "# the clients\nmaxchild = 4\nhostnamekeys = true\n  client1   # first\nclient2:5308\n10.0.0.23\n; rm -rf /\n"
    )
    master = tmp_path / "master-inputs"
    master.mkdir()
    (master / "cfrun.hosts").write_text("domain = lab.example\nclient1\nclient9\n")
    facts = parse_probe("m", "10.0.0.1", "master", *run_probe(tmp_path, role="master"))
    assert facts.cfrun_hosts.hosts == ("client1", "client2", "10.0.0.23")
    assert facts.cfrun_hosts.hostnamekeys is True
    assert facts.master_files.cfrun_hosts.hosts == ("client1.lab.example", "client9.lab.example")
    assert facts.master_files.cfrun_hosts.hostnamekeys is False


def test_a_client_reports_no_cfrun_hosts(tmp_path, cfdir):
    (tmp_path / "cf" / "inputs" / "cfrun.hosts").write_text("client1\n")
    assert parse_probe("web1", "10.0.0.21", "client", *run_probe(tmp_path)).cfrun_hosts is None


def test_the_inventory_keeps_only_entry_lines(tmp_path, cfdir):
    state = tmp_path / "state"
    state.mkdir()
    (state / "inventory").write_text(
        "# csync inventory 2\ngeneration 3\nnode1 root-10.0.0.21.pub\nclient1 root-node2.pub\n10.0.0.5\nnode1 root-$(id).pub\n; rm -rf /\nnode1 localhost.pub\n"
    )
    facts = parse_probe("m", "10.0.0.1", "master", *run_probe(tmp_path, role="master"))
    assert facts.master_files.inventory == ("generation 3", "node1 root-10.0.0.21.pub", "client1 root-node2.pub", "10.0.0.5")


def test_probe_output_never_has_a_private_key_even_named_by_host(tmp_path, cfdir):
    (cfdir / "root-node4.pub").write_text(keypair("other")[0])
    os.chmod(cfdir / "root-node4.pub", 0o600)
    out, rc = run_probe(tmp_path)
    assert b"PRIVATE KEY" not in out
    assert parse_probe("web1", "10.0.0.21", "client", out, rc).keys["root-node4.pub"].problem == "holds no RSA public key"
