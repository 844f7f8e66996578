"""Scenarios: the files and cluster state each lab host starts with.

`fresh` is the converged site (the contract the planner's tests rely on), `seed` the
situation of the manual's excerpt, `standalone` a converged standalone master.
"""

from __future__ import annotations

from pathlib import Path

from reconciler import dsau
from reconciler.lab.runtime import CLUSTER, LAB_MOUNT, PACKAGE, PACKAGE_ADDRESS, Lab, _write, rsa_pair

INPUTS = {
    "cfagent.conf": "control:\n   actionsequence = ( copy processes )\n",
    "update.conf": f"control:\n   policyhost = ( {PACKAGE_ADDRESS} )\n",
    "cf.motd": "Managed by DSAU configuration synchronization.\n",
}


def _cf(lab: Lab, name: str) -> Path:
    return lab.host_dir(name) / "var_opt_dsau" / "cfengine"


def _keys(lab: Lab, name: str, own: tuple[bytes, bytes], peers: dict[str, bytes], inputs: dict[str, str] | None) -> None:
    cf = _cf(lab, name)
    pp = cf / dsau.PPKEYS_SUBDIR
    pp.mkdir(parents=True, exist_ok=True)
    pp.chmod(0o700)
    _write(pp / dsau.OWN_PRIVATE_KEY, own[0], 0o600)
    _write(pp / dsau.OWN_PUBLIC_KEY, own[1], 0o644)
    for address, pub in peers.items():
        _write(pp / dsau.peer_key_name(address), pub, 0o644)
    (cf / dsau.INPUTS_SUBDIR).mkdir(exist_ok=True)
    for file, text in (inputs or {}).items():
        _write(cf / dsau.INPUTS_SUBDIR / file, text)


def seed_scenario(lab: Lab, scenario: str) -> None:
    state = lab.load()
    hosts = lab.hosts
    masters = [h for h in hosts if h.role in ("member", "master")]
    clients = [h for h in hosts if h.role == "client"]
    client_keys = {c.name: rsa_pair() for c in clients}
    master_key = rsa_pair()
    server = PACKAGE_ADDRESS if scenario != "standalone" else masters[0].address
    late = masters[-1] if scenario == "seed" and len(masters) > 1 else None
    for m in masters:
        if m is late:
            _keys(lab, m.name, rsa_pair(), {}, {})
            continue
        peers = {c.address: client_keys[c.name][1] for c in clients}
        peers.update({x.address: master_key[1] for x in masters if x is not late})
        peers[server] = master_key[1]
        _keys(lab, m.name, master_key, peers, INPUTS)
        if scenario == "standalone":
            for file, text in INPUTS.items():
                _write(lab.host_dir(m.name) / "var_opt_dsau" / "cfengine_master" / "inputs" / file, text)
    for i, c in enumerate(clients, 1):
        peers = {server: master_key[1]}
        peers.update({m.address: master_key[1] for m in masters if m is not late})
        if scenario == "seed" and i == 1 and len(masters) > 1:
            peers[masters[1].address] = rsa_pair()[1]  # a stale key: wrong content
        if scenario == "seed" and i == 2:
            del peers[server]
        _keys(lab, c.name, client_keys[c.name], peers, INPUTS)
    if scenario != "standalone":
        pkgfs = lab.dir / "state" / "pkgfs"
        for file, text in INPUTS.items():
            _write(pkgfs / dsau.PACKAGE_MASTER_INPUTS / file, text)
        _write(pkgfs / dsau.PACKAGE_CLUSTER_KEY_DIR / dsau.OWN_PRIVATE_KEY, master_key[0], 0o600)
        _write(pkgfs / dsau.PACKAGE_CLUSTER_KEY_DIR / dsau.OWN_PUBLIC_KEY, master_key[1])
        owner = None if scenario == "seed" else masters[0].name
        _write(lab.dir / "state" / "pkgfs-owner", owner or "")
        names = [m.name for m in masters]
        state["mount"] = LAB_MOUNT
        state["cluster"] = {
            "name": CLUSTER, "status": "up",
            "nodes": {n: {"status": "up", "state": "running"} for n in names},
            "packages": {PACKAGE: {
                "status": "down" if owner is None else "up", "state": "halted" if owner is None else "running",
                "owner": owner, "autorun": "disabled" if owner is None else "enabled",
                "nodes": names, "switching": {n: "enabled" for n in names},
            }},
        }
    lab.save(state)


def desired_state_yaml(lab: Lab) -> str:
    """The converged intent of the running lab, as desired-state YAML."""
    state = lab.load()
    hosts = lab.hosts
    masters = [h for h in hosts if h.role in ("member", "master")]
    clients = [h for h in hosts if h.role == "client"]
    out = ["# The desired state of the csync lab (written by `csync lab up`).", "version: 1", "site: lab", "master:"]
    if state["scenario"] == "standalone":
        out += ["  mode: standalone", f"  host: {{name: {masters[0].name}, address: {masters[0].address}}}"]
    else:
        out += ["  mode: serviceguard", f"  cluster: {CLUSTER}",
                f"  package: {{name: {PACKAGE}, address: {PACKAGE_ADDRESS}, mount: {LAB_MOUNT}, node: {masters[0].name}}}", "  members:"]
        out += [f"    - {{name: {m.name}, address: {m.address}}}" for m in masters]
    out += ["clients:" if clients else "clients: []"] + [f"  - {{name: {c.name}, address: {c.address}}}" for c in clients]
    out += ["keys: {distribution: copy, cfrun: all-members, prune: true}", "access:", "  user: root",
            f"  identity_file: {lab.admin_key}", f"  known_hosts: {lab.known_hosts}", "  connect_timeout: 5", "  parallelism: 64", ""]
    return "\n".join(out)
