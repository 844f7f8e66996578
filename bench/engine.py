"""Engine benchmark: plan time and peak memory for synthetic sites, no SSH.

    python -m bench.engine                       # 10 .. 100,000 clients, 2 .. 16 members
    python -m bench.engine --clients 10000 --members 8

Each row runs in a fresh interpreter; it reports the plan's wall and CPU time (CPU time is
the steadier figure on a busy machine) and the process's peak RSS, facts included.

Facts are built in memory as the probe would return them for a site where every client
lacks the key of one member (the seed excerpt's situation at scale), so the planner has
one action per client on top of pairing every key file of every host.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import resource
import subprocess
import sys
import time

from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.domain.serviceguard import (
    ClusterView,
    NodeView,
    PackageNode,
    PackageView,
)
from reconciler.observe.facts import HostFacts, KeyFile, PackageFilesystem
from reconciler.plan.planner import make_plan


def ip(n: int) -> str:
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def fake_key(label: str) -> KeyFile:
    digest = hashlib.sha256(label.encode()).digest()
    body = base64.b64encode(digest * 4).decode()
    pem = f"-----BEGIN RSA PUBLIC KEY-----\n{body}\n{dsau.PUBLIC_KEY_PEM_END}\n"
    return KeyFile(name="x", mode=0o644, size=len(pem), fingerprint="SHA256:" + base64.b64encode(digest).decode().rstrip("="), pem=pem)


def synthetic(members: int, clients: int) -> tuple[DesiredState, dict[str, HostFacts]]:
    member_hosts = [{"name": f"node{i}", "address": ip(1 + i)} for i in range(1, members + 1)]
    client_hosts = [{"name": f"c{i}", "address": ip(1000 + i)} for i in range(1, clients + 1)]
    pkg_ip = ip(100)
    state = DesiredState.model_validate(
        {
            "version": 1,
            "site": "bench",
            "master": {
                "mode": "serviceguard",
                "cluster": "c",
                "package": {"name": "csync", "address": pkg_ip, "mount": "/csync", "node": "node1"},
                "members": member_hosts,
            },
            "clients": client_hosts,
            "keys": {"prune": True},
        }
    )
    cluster = fake_key("cluster")
    client_keys = {c["name"]: fake_key(c["name"]) for c in client_hosts}
    cv = ClusterView(
        name="c",
        status="up",
        nodes={m["name"]: NodeView(name=m["name"], status="up", state="running") for m in member_hosts},
        packages={
            "csync": PackageView(
                name="csync",
                status="up",
                state="running",
                owner="node1",
                autorun="enabled",
                nodes=tuple(PackageNode(name=m["name"], switching="enabled", order=i) for i, m in enumerate(member_hosts, 1)),
            )
        },
    )

    copies: dict[tuple[str, str], KeyFile] = {}

    def named(k: KeyFile, name: str) -> KeyFile:
        # equal key files are one object, as the probe's parser makes them (facts.parse_key_listing)
        if (k.fingerprint, name) not in copies:
            copies[k.fingerprint, name] = k.model_copy(update={"name": name})
        return copies[k.fingerprint, name]

    facts: dict[str, HostFacts] = {}
    member_files = {dsau.peer_key_name(pkg_ip): named(cluster, dsau.peer_key_name(pkg_ip))}
    member_files.update({dsau.peer_key_name(m["address"]): named(cluster, dsau.peer_key_name(m["address"])) for m in member_hosts})
    member_files.update({dsau.peer_key_name(c["address"]): named(client_keys[c["name"]], dsau.peer_key_name(c["address"])) for c in client_hosts})
    member_files[dsau.OWN_PUBLIC_KEY] = named(cluster, dsau.OWN_PUBLIC_KEY)
    for m in member_hosts:
        facts[m["name"]] = HostFacts(
            name=m["name"],
            address=m["address"],
            role="member",
            reachable=True,
            cfengine_dir="dir",
            ppkeys_dir="dir",
            inputs_dir="dir",
            keys=member_files,
            inputs_digest="sha256:i",
            cluster=cv,
            package_fs=PackageFilesystem(mounted=m["name"] == "node1", cluster_key=cluster if m["name"] == "node1" else None, inputs_digest="sha256:i"),
        )
    last_member = member_hosts[-1]["address"]
    for c in client_hosts:
        files = {
            dsau.OWN_PUBLIC_KEY: named(client_keys[c["name"]], dsau.OWN_PUBLIC_KEY),
            dsau.peer_key_name(pkg_ip): named(cluster, dsau.peer_key_name(pkg_ip)),
        }
        files.update({dsau.peer_key_name(m["address"]): named(cluster, dsau.peer_key_name(m["address"])) for m in member_hosts if m["address"] != last_member})
        facts[c["name"]] = HostFacts(
            name=c["name"], address=c["address"], role="client", reachable=True, cfengine_dir="dir", ppkeys_dir="dir", inputs_dir="dir", keys=files
        )
    return state, facts


def measure(members: int, clients: int) -> dict:
    """One row, in this process: plan wall and CPU time, and the process's peak memory."""
    state, facts = synthetic(members, clients)
    wall, cpu = time.perf_counter(), time.process_time()
    plan = make_plan(state, facts)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(plan.actions) == clients, f"expected one action per client, got {len(plan.actions)}"
    # ru_maxrss: the whole process at its peak (facts as the probe would hold them + the plan)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "members": members,
        "clients": clients,
        "actions": len(plan.actions),
        "plan_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "peak_rss_mib": round(peak),
        "us_per_client": round(cpu / clients * 1e6, 1),
    }


def measure_apart(members: int, clients: int) -> dict:
    """One row in a fresh interpreter, so that each row's peak memory is its own."""
    out = subprocess.run([sys.executable, "-m", "bench.engine", "--row", str(members), str(clients)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def growth(rows: list[dict]) -> list[str]:
    """Per member count: how CPU time grows from the smallest site of 1,000+ clients to the largest."""
    lines = []
    for members in sorted({r["members"] for r in rows}):
        mine = [r for r in rows if r["members"] == members and r["clients"] >= 1000]
        if len(mine) >= 2:
            a, b = mine[0], mine[-1]
            lines.append(
                f"{members} members: {b['clients'] / a['clients']:.0f}x the clients -> "
                f"{b['cpu_seconds'] / a['cpu_seconds']:.1f}x the CPU time (linear: {b['clients'] / a['clients']:.0f}x)"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, nargs="*", default=[10, 100, 1000, 10000, 100000])
    p.add_argument("--members", type=int, nargs="*", default=[2, 8, 16])
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--row", type=int, nargs=2, metavar=("MEMBERS", "CLIENTS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.row:
        print(json.dumps(measure(*args.row)))
        return 0
    rows = []
    print(f"{'members':>7} {'clients':>8} {'actions':>8} {'wall s':>8} {'cpu s':>8} {'peak RSS MiB':>13} {'cpu us/client':>14}")
    for members in args.members:
        for clients in args.clients:
            r = measure_apart(members, clients)
            rows.append(r)
            print(
                f"{r['members']:>7} {r['clients']:>8} {r['actions']:>8} {r['plan_seconds']:>8} {r['cpu_seconds']:>8} "
                f"{r['peak_rss_mib']:>13} {r['us_per_client']:>14}",
                flush=True,
            )
    for line in growth(rows):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
