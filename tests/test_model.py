"""The desired-state model on its own: built from Python data, as the planner's tests and
the benchmark build it, without YAML."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from pydantic import ValidationError

from reconciler.desired.model import Access, DesiredState, Host, Paths, ResolvedAccess
from reconciler.desired.rules import CONFLICT_ERROR, format_loc, semantic_problems
from reconciler.domain import dsau

SITE = {
    "version": 1,
    "site": "lab",
    "master": {
        "mode": "serviceguard",
        "cluster": "c1",
        "package": {"address": "10.0.0.10", "node": "node1"},
        "members": [{"name": "node1", "address": "10.0.0.1"}, {"name": "node2", "address": "10.0.0.2"}],
    },
    "clients": [{"name": "web1", "address": "10.0.0.21"}, {"name": "web2", "address": "10.0.0.22"}],
}
STANDALONE = {
    "version": 1,
    "site": "branch",
    "master": {"mode": "standalone", "host": {"name": "cfmaster", "address": "10.1.0.1"}},
    "clients": [{"name": "till1", "address": "10.1.0.21"}],
}


def site(**changes) -> dict:
    data = copy.deepcopy(SITE)
    data.update(changes)
    return data


def errors(data: dict) -> list[tuple[str, str, str]]:
    with pytest.raises(ValidationError) as caught:
        DesiredState.model_validate(data)
    return [(format_loc(e["loc"]), e["type"], e["msg"]) for e in caught.value.errors()]


def test_defaults_are_hps_documented_ones():
    state = DesiredState.model_validate(SITE)
    assert state.master.package.name == "csync" and state.master.package.mount == "/csync"
    assert state.paths == Paths() and state.paths.dispatcher == dsau.DISPATCHER and state.paths.cfengine_dir == dsau.CFENGINE_DIR
    assert (state.keys.distribution, state.keys.cfrun, state.keys.prune) == ("copy", "all-members", False)
    assert (state.access.user, state.access.port, state.access.parallelism, state.access.host_key_policy) == ("root", 22, 64, "strict")


def test_models_are_frozen_and_refuse_unknown_fields():
    state = DesiredState.model_validate(SITE)
    with pytest.raises(ValidationError):
        state.site = "other"
    assert errors(site(clients=[{"name": "w", "address": "10.0.0.30", "colour": "red"}])) == [
        ("clients[0].colour", "extra_forbidden", "Extra inputs are not permitted")
    ]


def test_roles_and_host_lists_of_a_cluster():
    state = DesiredState.model_validate(SITE)
    assert state.is_cluster
    assert [h.name for h in state.members] == [h.name for h in state.master_hosts] == ["node1", "node2"]
    assert [h.name for h in state.all_hosts] == ["node1", "node2", "web1", "web2"]
    assert state.host("web2") == Host(name="web2", address="10.0.0.22")
    assert (state.role_of("node2"), state.role_of("web1")) == ("member", "client")


def test_roles_and_host_lists_of_a_standalone_master():
    state = DesiredState.model_validate(STANDALONE)
    assert not state.is_cluster and state.members == []
    assert [h.name for h in state.master_hosts] == ["cfmaster"]
    assert (state.role_of("cfmaster"), state.role_of("till1")) == ("master", "client")


def test_an_undeclared_host_has_no_role():
    with pytest.raises(KeyError):
        DesiredState.model_validate(SITE).role_of("web9")


def test_a_copy_with_other_clients_answers_for_its_own_clients():
    state = DesiredState.model_validate(SITE)
    assert state.role_of("web1") == "client"
    copy_ = state.model_copy(update={"clients": [Host(name="db1", address="10.0.0.31")]})
    assert copy_.role_of("db1") == "client"
    with pytest.raises(KeyError):
        copy_.host("web1")


def test_digest_is_stable_and_ignores_access():
    state = DesiredState.model_validate(SITE)
    other_access = DesiredState.model_validate(site(access={"user": "admin", "identity_file": "/ci/key", "port": 2222}))
    assert state.digest() == other_access.digest() == DesiredState.model_validate(copy.deepcopy(SITE)).digest()
    # platform at its defaults is left out: the digest of a state that does not set it is the one it had before
    canonical = json.dumps(state.model_dump(mode="json", exclude={"access", "platform"}), sort_keys=True, separators=(",", ":"))
    assert state.digest() == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_digest_changes_with_anything_but_access():
    base = DesiredState.model_validate(SITE).digest()
    assert DesiredState.model_validate(site(keys={"prune": True})).digest() != base
    assert DesiredState.model_validate(site(paths={"wizard": "/opt/dsau/bin/csync_wizard"})).digest() != base
    assert DesiredState.model_validate(site(platform={"cmviewcl_format": "table"})).digest() != base
    assert DesiredState.model_validate(site(platform={"cmviewcl_format": "auto"})).digest() == base


def test_access_for_a_host_applies_its_overrides():
    access = Access.model_validate({"user": "root", "port": 22, "hosts": {"web1": {"port": 2222, "user": "cfadmin", "connect_timeout": 3}}})
    assert access.for_host("web1") == ResolvedAccess(
        user="cfadmin", port=2222, identity_file="~/.ssh/id_ed25519", known_hosts="~/.ssh/known_hosts", connect_timeout=3, host_key_policy="strict"
    )
    assert access.for_host("web2").port == 22


def test_resolved_access_expands_home_at_use(monkeypatch):
    monkeypatch.setenv("HOME", "/home/ops")
    resolved = Access().for_host("any").expanded()
    assert (resolved.identity_file, resolved.known_hosts) == ("/home/ops/.ssh/id_ed25519", "/home/ops/.ssh/known_hosts")


def test_addresses_are_kept_in_canonical_form():
    assert Host(name="h", address="192.168.1.1").address == "192.168.1.1"
    with pytest.raises(ValidationError, match="leading zero"):
        Host(name="h", address="192.168.001.1")


def test_values_are_not_coerced():
    assert [e[:2] for e in errors(site(access={"port": "22", "connect_timeout": "5"}, keys={"prune": "true"}))] == [
        ("keys.prune", "bool_type"),
        ("access.port", "int_type"),
        ("access.connect_timeout", "float_type"),
    ]


def test_cross_field_problems_are_validation_errors_with_their_own_paths():
    data = site(clients=[{"name": "web1", "address": "10.0.0.21"}, {"name": "WEB1", "address": "10.0.0.1"}])
    assert errors(data) == [
        ("clients[1].name", CONFLICT_ERROR, "WEB1 is already the name of client web1 (clients[0].name); host names must be unique, ignoring case"),
        ("clients[1].address", CONFLICT_ERROR, "10.0.0.1 is already the address of member node1 (master.members[0].address)"),
    ]


def test_cross_field_problems_are_reported_with_field_errors():
    data = site(site="bad site", clients=[{"name": "node1", "address": "10.0.0.21"}])
    assert [e[:2] for e in errors(data)] == [("site", "value_error"), ("clients[0].name", CONFLICT_ERROR)]


def test_the_package_address_and_node_are_checked():
    data = site()
    data["master"]["package"] = {"address": "10.0.0.2", "node": "node3"}
    assert errors(data) == [
        ("master.members[1].address", CONFLICT_ERROR, "10.0.0.2 is already the address of package csync (master.package.address)"),
        ("master.package.node", CONFLICT_ERROR, "node3 is not a member of the cluster; the members are: node1, node2"),
    ]


def test_a_standalone_master_shares_nothing_with_clients():
    data = copy.deepcopy(STANDALONE)
    data["clients"].append({"name": "cfmaster", "address": "10.1.0.1"})
    assert [e[0] for e in errors(data)] == ["clients[1].name", "clients[1].address"]


def test_access_overrides_are_for_declared_hosts():
    assert errors(site(access={"hosts": {"web1": {}, "web3": {"port": 2}}})) == [
        ("access.hosts.web3", CONFLICT_ERROR, "web3 is not a declared host; overrides apply to declared members, masters and clients")
    ]


def test_semantic_rules_skip_what_is_already_invalid():
    # Invalid values are their own error; a reference check waits until every name is valid.
    data = site(clients=[{"name": "bad name", "address": "10.0.0.1000"}], access={"hosts": {"web1": {}}})
    assert semantic_problems(data) == []


def test_semantic_rules_never_fail_on_any_shape():
    for shape in (
        None,
        [],
        "x",
        {"master": "x"},
        {"master": {"mode": "serviceguard", "members": "x", "package": []}},
        {"master": {"mode": "standalone", "host": [1]}, "clients": [None, 1, {"name": []}], "access": {"hosts": ["x"]}},
    ):
        assert semantic_problems(shape) == []


def test_every_field_is_documented():
    from pydantic import BaseModel

    from reconciler.desired import model

    models = [m for m in vars(model).values() if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == model.__name__]
    undocumented = [f"{m.__name__}.{name}" for m in models for name, f in m.model_fields.items() if not f.description]
    assert len(models) >= 10 and undocumented == []
