"""Builders of desired states and host facts for planner tests (no hosts involved)."""

from __future__ import annotations

from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.domain.serviceguard import (
    ClusterView,
    NodeView,
    PackageNode,
    PackageView,
)
from reconciler.observe.facts import HostFacts, KeyFile, PackageFilesystem
from tests import keys as test_keys

PKG_IP = "10.1.0.10"
INPUTS = "sha256:inputs-v1"
INPUT_SUMS = {"./cf.main": "1234 100", "./update.conf": "5678 200"}


def member_ip(i: int) -> str:
    return f"10.1.0.{i}"


def client_ip(i: int) -> str:
    n = 20 + i  # 10.1.0.21 on, then into 10.1.1.x, ...
    return f"10.1.{n // 256}.{n % 256}"


def site(
    members: int = 3, clients: int = 3, *, preferred: str | None = "node1", extra: dict | None = None, package_extra: list[str] | None = None, **keys
) -> DesiredState:
    """A cluster site; ``extra`` gives members extra addresses (name -> list), ``package_extra`` the package."""
    extra = extra or {}
    return DesiredState.model_validate(
        {
            "version": 1,
            "site": "t",
            "master": {
                "mode": "serviceguard",
                "cluster": "c1",
                "package": {
                    "name": "csync",
                    "address": PKG_IP,
                    "mount": "/csync",
                    **({"node": preferred} if preferred else {}),
                    **({"extra_addresses": package_extra} if package_extra else {}),
                },
                "members": [
                    {"name": f"node{i}", "address": member_ip(i), **({"extra_addresses": extra[f"node{i}"]} if f"node{i}" in extra else {})}
                    for i in range(1, members + 1)
                ],
            },
            "clients": [{"name": f"client{i}", "address": client_ip(i)} for i in range(1, clients + 1)],
            "keys": {"distribution": "copy", "cfrun": "all-members", "prune": True, **keys},
        }
    )


def standalone(clients: int = 2) -> DesiredState:
    return DesiredState.model_validate(
        {
            "version": 1,
            "site": "s",
            "master": {"mode": "standalone", "host": {"name": "master", "address": member_ip(1)}},
            "clients": [{"name": f"client{i}", "address": client_ip(i)} for i in range(1, clients + 1)],
            "keys": {"prune": True},
        }
    )


def standalone_facts(clients: int = 2) -> tuple[DesiredState, dict[str, HostFacts]]:
    """A standalone master that holds client1's key; client1 holds the master's, client2 nothing."""
    state = standalone(clients)
    master_ip = member_ip(1)
    facts = {
        "master": HostFacts(
            name="master",
            address=master_ip,
            role="master",
            reachable=True,
            cfengine_dir="dir",
            ppkeys_dir="dir",
            inputs_dir="dir",
            keys=keyset(own="master", **{client_ip(1): "client-client1"}),
            inputs_digest=INPUTS,
        ),
        "client1": HostFacts(
            name="client1",
            address=client_ip(1),
            role="client",
            reachable=True,
            cfengine_dir="dir",
            ppkeys_dir="dir",
            keys=keyset(own="client-client1", **{master_ip: "master"}),
        ),
    }
    for i in range(2, clients + 1):
        facts[f"client{i}"] = HostFacts(
            name=f"client{i}", address=client_ip(i), role="client", reachable=True, cfengine_dir="dir", ppkeys_dir="dir", keys=keyset(own=f"client-client{i}")
        )
    return state, facts


def key(name: str, label: str, mode: int = 0o644) -> KeyFile:
    return KeyFile(name=name, mode=mode, size=251, fingerprint=test_keys.fp(label), pem=test_keys.public(label))


def keyset(**files: str) -> dict[str, KeyFile]:
    """keyset(**{"10.1.0.1": "cluster"}) -> {"root-10.1.0.1.pub": KeyFile(...)}; "own" key too; a
    host name gives a key file named by host name (root-node2.pub)."""
    out = {}
    for ip, label in files.items():
        name = dsau.OWN_PUBLIC_KEY if ip == "own" else dsau.peer_key_name(ip)
        out[name] = key(name, label)
    return out


def cluster_view(state: DesiredState, *, owner: str | None = "node1", down: tuple[str, ...] = (), extra_nodes=(), missing=()) -> ClusterView:
    names = [m.name for m in state.members if m.name not in missing] + list(extra_nodes)
    return ClusterView(
        name=state.master.cluster,
        status="up",
        nodes={n: NodeView(name=n, status="down" if n in down else "up", state="halted" if n in down else "running") for n in names},
        packages={
            "csync": PackageView(
                name="csync",
                status="up" if owner else "down",
                state="running" if owner else "halted",
                owner=owner,
                autorun="enabled" if owner else "disabled",
                nodes=tuple(PackageNode(name=n, switching="enabled", order=i) for i, n in enumerate(names, 1)),
            )
        },
    )


def converged(state: DesiredState, *, owner: str | None = "node1", cluster: ClusterView | None = None) -> dict[str, HostFacts]:
    """Facts of a converged site (the lab's `fresh` scenario)."""
    cluster = cluster or cluster_view(state, owner=owner)
    facts: dict[str, HostFacts] = {}
    client_keys = {c.address: f"client-{c.name}" for c in state.clients}
    for m in state.members:
        files = {"own": "cluster", PKG_IP: "cluster", **{x.address: "cluster" for x in state.members}, **client_keys}
        facts[m.name] = HostFacts(
            name=m.name,
            address=m.address,
            role="member",
            reachable=True,
            hostname=m.name,
            cfengine_dir="dir",
            ppkeys_dir="dir",
            inputs_dir="dir",
            keys=keyset(**files),
            inputs_digest=INPUTS,
            inputs_count=len(INPUT_SUMS),
            inputs_sums=dict(INPUT_SUMS),
            package_files=1,
            cluster=cluster,
            package_fs=PackageFilesystem(mounted=True, cluster_key=key("localhost.pub", "cluster"), inputs_digest=INPUTS, inputs_sums=dict(INPUT_SUMS))
            if m.name == owner
            else PackageFilesystem(mounted=False),
        )
    for c in state.clients:
        files = {"own": f"client-{c.name}", PKG_IP: "cluster", **{x.address: "cluster" for x in state.members}}
        facts[c.name] = HostFacts(
            name=c.name,
            address=c.address,
            role="client",
            reachable=True,
            hostname=c.name,
            cfengine_dir="dir",
            ppkeys_dir="dir",
            inputs_dir="dir",
            keys=keyset(**files),
            inputs_digest=INPUTS,
        )
    return facts


def with_keys(f: HostFacts, *, drop: tuple[str, ...] = (), **files: str) -> HostFacts:
    keys = {n: k for n, k in f.keys.items() if n not in {dsau.peer_key_name(ip) for ip in drop}}
    keys.update(keyset(**files))
    return f.model_copy(update={"keys": keys})
