"""Issue 16 on constructed facts: what csync owns (the inventory), several addresses per host,
key files named by host name, a rotation on purpose, cfengine's digest notation, and the
trust prediction that follows cfrun's and cfservd's lookups."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from pydantic import ValidationError

from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.domain.inventory import parse_inventory
from reconciler.domain.keys import cfengine_digest, peer_hostname, peer_ip
from reconciler.driver import commands, sitestate
from reconciler.observe.facts import CfrunHosts, SshKey
from reconciler.plan.planner import make_plan, owned_key_files
from reconciler.trust.predict import OTHER_KEY, UNKNOWN_NAME, Cause, trust_report
from tests import keys as test_keys
from tests.unit.sitefacts import (
    PKG_IP,
    client_ip,
    converged,
    keyset,
    member_ip,
    site,
    standalone_facts,
    with_keys,
)


def actions(plan) -> list[tuple[str, str, str]]:
    return [(a.kind, a.host, a.params.get("file", "")) for a in plan.actions]


def inventory(f, *lines):
    return f.model_copy(update={"package_fs": f.package_fs.model_copy(update={"inventory": lines})})


# --- the desired state ------------------------------------------------------------------------


def test_extra_addresses_are_unique_site_wide():
    with pytest.raises(ValidationError) as e:
        site(extra={"node2": ["10.2.0.2", "10.1.0.21"]}, package_extra=["10.2.0.2"])
    messages = [err["msg"] for err in e.value.errors()]
    assert "10.1.0.21 is already the address of client client1 (clients[0].address)" in messages
    assert "10.2.0.2 is already an extra address of member node2 (master.members[1].extra_addresses[0])" in messages


def test_generation_is_a_whole_number_from_zero():
    for bad in (-1, True, "1", 1.0):
        with pytest.raises(ValidationError):
            site(generation=bad)
    assert site(generation=3).keys.generation == 3 and site().keys.generation == 0


# --- cfengine's digest -------------------------------------------------------------------------


def test_the_md5_digest_is_cfengines_notation_of_the_modulus_then_the_exponent():
    pem = test_keys.public("cluster")
    modulus = (
        subprocess.run(["openssl", "rsa", "-RSAPublicKey_in", "-noout", "-modulus"], input=pem, capture_output=True, text=True, check=True)
        .stdout.strip()
        .split("=", 1)[1]
    )
    assert cfengine_digest(pem) == "MD5=" + hashlib.md5(bytes.fromhex(modulus) + bytes.fromhex("010001")).hexdigest()
    assert cfengine_digest("junk") is None


def test_plans_show_the_md5_next_to_the_sha256():
    state = site(clients=1)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,))
    [a] = make_plan(state, facts).actions
    assert a.reason.endswith(f"({test_keys.fp('cluster')}, {cfengine_digest(test_keys.public('cluster'))})")


def test_trust_shows_the_cluster_keys_md5():
    state = site()
    assert trust_report(state, converged(state)).cluster_key_md5 == cfengine_digest(test_keys.public("cluster"))


# --- key file names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ip", "host"),
    [
        ("root-10.1.0.1.pub", "10.1.0.1", None),
        ("root-node2.pub", None, "node2"),
        ("root-node2.lab.example.pub", None, "node2.lab.example"),
        ("root-a;b.pub", None, None),
        ("localhost.pub", None, None),
    ],
)
def test_a_key_file_is_named_by_an_address_or_a_host_name(name, ip, host):
    assert (peer_ip(name), peer_hostname(name)) == (ip, host)


@pytest.mark.parametrize("bad", ["root-a;b.pub", "root-$(id).pub", "root-..pub", "root-x/y.pub", "localhost.priv"])
def test_the_builders_refuse_a_key_file_that_is_not_one(bad):
    state = site()
    for build in (lambda: commands.remove_key(state, bad), lambda: commands.copy_key(state, "root-10.1.0.1.pub", bad)):
        with pytest.raises(commands.UnsafeValue):
            build()


# --- ownership ----------------------------------------------------------------------------------


def test_a_standalone_master_holds_its_own_address_key_and_it_is_never_pruned():
    state, facts = standalone_facts()
    facts["master"] = with_keys(facts["master"], **{member_ip(1): "master"})
    facts["client2"] = with_keys(facts["client2"], **{member_ip(1): "master"})
    facts["master"] = facts["master"].model_copy(update={"keys": {**facts["master"].keys, **keyset(**{client_ip(2): "client-client2"})}})
    plan = make_plan(state, facts)
    assert plan.clean and plan.actions == ()


def test_what_csync_records_is_what_is_declared_for_each_host_and_there():
    state = site(clients=1)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"10.9.9.9": "cluster", "node2": "cluster", "web9": "cluster"})
    owned = owned_key_files(state, facts)
    assert owned["client1"] == {dsau.peer_key_name(a) for a in (PKG_IP, member_ip(1), member_ip(2), member_ip(3))} | {"root-node2.pub"}
    assert owned["node1"] == {dsau.peer_key_name(a) for a in (PKG_IP, member_ip(1), member_ip(2), member_ip(3), client_ip(1))}


def test_a_file_the_dispatcher_copies_from_the_package_node_is_csyncs_if_it_is_there():
    state = site(clients=1)
    facts = converged(state)
    facts["node1"] = inventory(with_keys(facts["node1"], **{"10.1.0.77": "client-old"}), "node1 root-10.1.0.77.pub")
    facts["node3"] = facts["node3"].model_copy(update={"keys": keyset(own="node3-own"), "inputs_count": 0, "package_files": 0})
    plan = make_plan(state, facts)
    removes = [a for a in plan.actions if a.kind == "remove-key"]
    assert [(a.host, a.depends_on) for a in removes] == [("node1", ()), ("node3", ("dispatch-member:member.node3",))]


def test_without_an_inventory_readable_nothing_is_pruned_and_the_notice_says_why():
    state = site(clients=1)
    facts = converged(state, owner=None)
    facts["client1"] = with_keys(facts["client1"], **{"10.9.9.9": "cluster"})
    plan = make_plan(state, facts)
    assert not [a for a in plan.actions if a.kind == "remove-key"]
    assert any("cannot be told" in n.message and "not mounted" in n.message for n in plan.notices)


def test_an_inventory_of_csyncs_first_format_proves_nothing():
    state = site(clients=1)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"10.9.9.9": "cluster"})
    facts["node1"] = inventory(facts["node1"], "10.9.9.9")
    plan = make_plan(state, facts)
    assert plan.actions == ()
    assert any(n.address == "site.inventory" and "first format" in n.message for n in plan.notices)


def test_the_inventory_parser_and_writer_agree(tmp_path):
    state = standalone_facts()[0]
    script = sitestate.inventory_update(state, [("client1", "root-10.1.0.1.pub"), ("master", "root-client1.pub")], [("master", "root-10.1.0.9.pub")], 2).script
    d = tmp_path / "state"
    d.mkdir()
    (d / "inventory").write_text("generation 5\nmaster root-10.1.0.9.pub\nmaster root-10.1.0.21.pub\n10.1.0.3\nrm -rf /\n")
    done = subprocess.run(["/bin/sh", "-s"], input=script.replace(dsau.STANDALONE_CSYNC_STATE, str(d)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "INVENTORY 3 5\n"  # the generation is never lowered
    inv = parse_inventory((d / "inventory").read_text().splitlines())
    assert inv.generation == 5 and inv.legacy == 0
    assert inv.files == {"client1": frozenset({"root-10.1.0.1.pub"}), "master": frozenset({"root-client1.pub", "root-10.1.0.21.pub"})}
    with pytest.raises(commands.UnsafeValue):
        sitestate.inventory_update(state, [("a b", "root-10.1.0.1.pub")])
    with pytest.raises(commands.UnsafeValue):
        sitestate.inventory_update(state, [("master", "localhost.pub")])


# --- several addresses ----------------------------------------------------------------------------


def test_clients_and_members_hold_every_master_address_and_a_standalone_master_its_own():
    state = site(clients=1, extra={"node2": ["10.2.0.2"]}, package_extra=["10.2.0.10"])
    plan = make_plan(state, converged(state))
    assert {(h, f) for _, h, f in actions(plan)} == {(h, f"root-{a}.pub") for h in ("client1", "node1", "node2", "node3") for a in ("10.2.0.2", "10.2.0.10")}
    none = site(clients=1, extra={"node2": ["10.2.0.2"]}, package_extra=["10.2.0.10"], cfrun="none")
    assert {(h, f) for _, h, f in actions(make_plan(none, converged(none))) if h == "client1"} == {("client1", "root-10.2.0.10.pub")}


def test_the_trust_matrix_has_a_column_per_extra_address():
    state = site(clients=2, extra={"node2": ["10.2.0.2"]}, package_extra=["10.2.0.10"])
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"10.2.0.2": "cluster", "10.2.0.10": "cluster"})
    report = trust_report(state, facts)
    assert [c.label for c in report.columns] == ["node1", "node2", "node2@10.2.0.2", "node3", "cfagent", "cfagent@10.2.0.10"]
    assert report.cfrun["node2@10.2.0.2"]["client1"].ok and report.cfrun["node2@10.2.0.2"]["client2"].ok is False
    assert report.cfagent_extra["10.2.0.10"]["client2"].ok is False and report.cfagent["client2"].ok
    assert not report.failover_ready


# --- key files named by host name ---------------------------------------------------------------


def test_a_wrong_name_key_for_a_declared_peer_is_replaced_and_a_right_one_left_alone():
    state = site(clients=2)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"node2": "stale", "node3.lab.example": "cluster"})
    facts["node1"] = with_keys(facts["node1"], **{"client2": "client-client2"})
    plan = make_plan(state, facts)
    assert actions(plan) == [("copy-key", "client1", "root-node2.pub")]


def test_a_wrong_name_key_a_host_does_not_need_is_removed_with_prune():
    state = site(clients=2, cfrun="none")
    facts = converged(state)
    for c in state.clients:
        facts[c.name] = with_keys(facts[c.name], drop=(member_ip(1), member_ip(2), member_ip(3)))
    facts["client1"] = with_keys(facts["client1"], **{"node2": "stale", "node3": "cluster"})
    assert actions(make_plan(state, facts)) == [("remove-key", "client1", "root-node2.pub")]
    keep = site(clients=2, cfrun="none", prune=False)
    assert make_plan(keep, facts).actions == ()


def test_hostname_keys_in_a_clients_cfservd_need_every_members_key_by_name():
    state = site(clients=1)
    facts = converged(state)
    facts["client1"] = facts["client1"].model_copy(update={"hostname_keys": True})
    plan = make_plan(state, facts)
    assert actions(plan) == [("copy-key", "client1", f"root-node{i}.pub") for i in (1, 2, 3)]


def test_hostnamekeys_in_cfrun_hosts_needs_each_client_as_written():
    state = site(clients=2)
    facts = converged(state)
    hosts = CfrunHosts(hosts=("client1.lab.example", client_ip(2)), hostnamekeys=True)
    facts["node2"] = facts["node2"].model_copy(update={"cfrun_hosts": hosts})
    plan = make_plan(state, facts)
    assert actions(plan) == [("install-key", "node2", "root-client1.lab.example.pub")]


def test_trust_follows_cfruns_and_cfservds_lookups():
    state = site(clients=2, extra={"node2": ["10.2.0.2"]})
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"10.2.0.2": "cluster", "node1": "cluster", "node2": "stale", "node3": "cluster"})
    facts["client1"] = facts["client1"].model_copy(update={"hostname_keys": True})
    facts["node3"] = facts["node3"].model_copy(update={"cfrun_hosts": CfrunHosts(hosts=("client2",), hostnamekeys=True)})
    report = trust_report(state, facts)
    # client1 authenticates node2 by name: the stale name key defeats the right address key
    stale = facts["client1"].keys["root-node2.pub"]
    assert report.cfrun["node2"]["client1"].causes == (Cause("client1", "root-node2.pub", OTHER_KEY, "node2", stale.shown()),)
    assert stale.md5 in report.cfrun["node2"]["client1"].problems[0]  # cfengine's notation of the key it holds
    assert report.cfrun["node1"]["client1"].ok
    # the name node2 gives for its second address is its resolver's: unknown
    assert report.cfrun["node2@10.2.0.2"]["client1"].ok is None
    assert report.cfrun["node2@10.2.0.2"]["client1"].causes[0].kind == UNKNOWN_NAME
    # node3's cfrun authenticates client2 by root-client2.pub, which it lacks
    assert report.cfrun["node3"]["client2"].causes == (Cause("node3", "root-client2.pub", "missing", "client2"),)


# --- rotation -------------------------------------------------------------------------------------


def _trusting(state, facts):
    key = SshKey(type="ssh-ed25519", fingerprint="SHA256:m", line="ssh-ed25519 AAAAm")
    for h in state.all_hosts:
        f = facts[h.name]
        facts[h.name] = f.model_copy(update={"ssh_authorized": ("SHA256:m",), "ssh_public_keys": (key,) if f.role == "member" else ()})
    return facts


def test_a_rotation_mirrors_the_new_key_to_the_files_the_wizard_does_not_write():
    state = site(clients=1, distribution="regenerate", generation=1, extra={"node2": ["10.2.0.2"]})
    facts = _trusting(state, converged(state))
    facts["client1"] = with_keys(facts["client1"], **{"10.2.0.2": "cluster", "node1": "cluster"})
    facts["node1"] = with_keys(facts["node1"], **{"10.2.0.2": "cluster"})
    plan = make_plan(state, facts)
    [rotation] = [a for a in plan.actions if a.kind == "regenerate-keys"]
    mirrors = {(a.host, a.params["file"], a.params["source"]) for a in plan.actions if a.kind == "mirror-key"}
    assert ("client1", "root-10.2.0.2.pub", f"root-{PKG_IP}.pub") in mirrors
    assert ("client1", "root-node1.pub", f"root-{PKG_IP}.pub") in mirrors
    assert ("node3", "root-10.2.0.2.pub", f"root-{PKG_IP}.pub") in mirrors  # missing there: the next run would add it anyway
    assert all(a.depends_on == (rotation.id,) for a in plan.actions if a.kind == "mirror-key")
    assert not [a for a in plan.actions if a.kind in ("copy-key", "install-key")]


def test_a_rotation_runs_only_where_the_package_runs():
    data = site(clients=1, distribution="regenerate", generation=1).model_dump(mode="json")
    data["master"]["package"]["state"] = "halted"
    state = DesiredState.model_validate(data)
    facts = _trusting(state, converged(state, owner=None))
    plan = make_plan(state, facts)
    assert not [a for a in plan.actions if a.kind == "regenerate-keys"]
    # the inventory (and so the recorded generation) is on the package filesystem: unknown while it is down
    assert any("generation recorded in the site's inventory is unknown" in f.message for f in plan.unknown if f.address == "site.keys")


def test_a_bad_extra_address_or_generation_is_reported_at_its_file_line_and_field(tmp_path):
    from reconciler.desired.loader import load_desired_state
    from reconciler.errors import InvalidInput

    path = tmp_path / "site.yaml"
    path.write_text(
        "version: 1\nsite: s\nmaster:\n  mode: serviceguard\n  cluster: c1\n"
        "  package: {address: 10.0.0.10, extra_addresses: [10.0.1.10]}\n"
        "  members:\n    - {name: n1, address: 10.0.0.1, extra_addresses: [10.0.1.1, 10.0.1.300]}\n"
        "clients:\n  - {name: c1, address: 10.0.1.10}\nkeys: {generation: -1}\n"
    )
    with pytest.raises(InvalidInput) as e:
        load_desired_state([path])
    text = str(e.value)
    assert f"{path}:6:51: master.package.extra_addresses[0]: 10.0.1.10 is already the address of client c1 ({path}:10:25)" in text
    assert f"{path}:8:65: master.members[0].extra_addresses[1]: '10.0.1.300' is not an IPv4 address" in text
    assert f"{path}:11:20: keys.generation: -1 is too small; it must be at least 0" in text
