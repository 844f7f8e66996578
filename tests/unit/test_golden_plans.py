"""Golden plans: the planner's whole output for constructed sites, byte for byte.

The files under tests/data/golden/ were written by the planner before the architecture
redesign (issue #14) and pin its behaviour: a refactor must leave every one identical. A
change of behaviour updates them on purpose: `CSYNC_UPDATE_GOLDEN=1 python -m pytest
tests/unit/test_golden_plans.py`, and the diff is reviewed with the change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.observe.facts import CfrunHosts, SshKey, unreachable
from reconciler.plan.planner import make_plan
from tests import keys as test_keys
from tests.unit.sitefacts import (
    PKG_IP,
    client_ip,
    cluster_view,
    converged,
    keyset,
    member_ip,
    site,
    standalone_facts,
    with_keys,
)
from tests.unit.test_planner import seed_facts

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"


def _fresh():
    state = site()
    return state, converged(state)


def _seed():
    state = site()
    return state, seed_facts(state)


def _standalone():
    return standalone_facts(3)


def _failover():
    """The package failed over to node2; node1 is down; client3 lost node2's key."""
    state = site()
    facts = converged(state, owner="node2", cluster=cluster_view(state, owner="node2", down=("node1",)))
    facts["node1"] = unreachable("node1", member_ip(1), "member", "connection refused", "refused")
    facts["client3"] = with_keys(facts["client3"], drop=(member_ip(2),))
    return state, facts


def _regenerate():
    """A rotation on purpose: keys.generation 1, nothing recorded yet; every system trusts node1."""
    state = site(distribution="regenerate", generation=1, clients=3)
    facts = converged(state)
    master_key = SshKey(type="ssh-ed25519", fingerprint="SHA256:m", line="ssh-ed25519 AAAAm")
    for m in state.members:
        facts[m.name] = facts[m.name].model_copy(update={"ssh_public_keys": (master_key,), "ssh_authorized": ("SHA256:m",)})
    for c in state.clients:
        facts[c.name] = facts[c.name].model_copy(update={"ssh_authorized": ("SHA256:m",)})
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,))
    return state, facts


def _prune():
    """Owned files (the inventory, per host) are removed once undeclared; the rest is left alone."""
    state = site(clients=2)
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"10.1.0.99": "cluster", "10.9.9.9": "someone"})
    owner = facts["node1"]
    facts["node1"] = owner.model_copy(
        update={
            "package_fs": owner.package_fs.model_copy(
                update={"inventory": ("generation 0", "node1 root-10.1.0.23.pub", "client2 root-10.1.0.88.pub", "10.1.0.23")}
            )
        }
    )
    facts["node1"] = with_keys(facts["node1"], **{"10.1.0.23": "client-old"})
    facts["client2"] = with_keys(facts["client2"], **{member_ip(1): "stale", client_ip(1): "someone", "10.1.0.88": "cluster"})
    facts["node3"] = facts["node3"].model_copy(update={"keys": keyset(own="node3-own")})
    return state, facts


def _extra():
    """Extra addresses (a member's second LAN, the package's second address), hostname keys: a
    stale root-node2.pub on client1, and cfrun.hosts with hostnamekeys on the members."""
    state = site(clients=2, extra={"node2": ["10.2.0.2"]}, package_extra=["10.2.0.10"])
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], **{"node2": "stale"})
    facts["client2"] = with_keys(facts["client2"], **{"10.2.0.2": "cluster", "10.2.0.10": "cluster", "node1": "cluster"})
    hosts = CfrunHosts(hosts=("client1", "client2"), hostnamekeys=True)
    for m in state.members:
        facts[m.name] = facts[m.name].model_copy(update={"cfrun_hosts": hosts})
    facts["node3"] = with_keys(facts["node3"], **{"client1": "client-client1"})
    return state, facts


SITES = {"fresh": _fresh, "seed": _seed, "standalone": _standalone, "failover": _failover, "regenerate": _regenerate, "prune": _prune, "extra": _extra}


@pytest.fixture
def stored_keys(monkeypatch):
    """The sites' keys from tests/data/golden/keys.json (public halves only), so a plan's
    fingerprints are the same in every run; a new label is added to the file."""
    path = GOLDEN / "keys.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    generated = test_keys.public

    def public(label: str) -> str:
        if label not in stored:
            stored[label] = generated(label)
            path.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        return stored[label]

    def fp(label: str) -> str:
        fingerprint, problem = test_keys.public_key_fingerprint(public(label))
        assert problem is None
        return fingerprint

    monkeypatch.setattr(test_keys, "public", public)
    monkeypatch.setattr(test_keys, "fp", fp)


@pytest.mark.parametrize("name", sorted(SITES))
def test_plan_is_identical_to_its_golden_file(name, stored_keys):
    state, facts = SITES[name]()
    text = make_plan(state, facts, git_commit="0" * 40).to_json()
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("CSYNC_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: CSYNC_UPDATE_GOLDEN=1 writes it"
    assert text == golden.read_text(), f"the plan for {name} differs from {golden.name}"
