"""The site's inventory (reconciler/domain/inventory.py), kept on the master: the key files
csync owns on each host (prune's proof of ownership) and the key generation it rotated to."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.apply.executor import tail
from reconciler.apply.report import Inventory
from reconciler.desired.model import DesiredState, Host
from reconciler.domain import dsau
from reconciler.domain.inventory import KeyInventory, parse_inventory
from reconciler.domain.package import package_server
from reconciler.driver import sitestate
from reconciler.driver.transport import Pool, TransportError
from reconciler.observe.facts import HostFacts
from reconciler.plan.artefact import Action


def inventory_node(state: DesiredState, facts: Mapping[str, HostFacts]) -> Host | None:
    """Where the inventory lives now: the standalone master, or the member that has the
    package filesystem mounted."""
    if not state.is_cluster:
        return state.standalone_host
    node = package_server(state, facts)
    f = facts.get(node or "")
    return state.host(node) if node and f and f.package_fs and f.package_fs.mounted else None


def recorded(state: DesiredState, facts: Mapping[str, HostFacts], node: Host) -> KeyInventory:
    f = facts[node.name]
    listed = f.package_fs.inventory if state.is_cluster and f.package_fs else f.master_files.inventory if f.master_files else None
    return parse_inventory(listed) or KeyInventory()


def changes(state: DesiredState, facts: Mapping[str, HostFacts], node: Host) -> tuple[list[tuple[str, str]], list[tuple[str, str]], bool]:
    """(entries to add, entries to drop, whether first-format lines are to go): what makes the
    inventory record the key files csync owns now. A file is added when it is declared for its
    host and there; an entry is dropped when its host answered and the file is gone (pruned,
    or removed by hand: csync writes it again if it is declared, and records it then)."""
    from reconciler.plan.planner import owned_key_files

    inv = recorded(state, facts, node)
    owned = owned_key_files(state, facts)
    add = sorted((h, f) for h, files in owned.items() for f in files if not inv.owns(h, f))
    drop = sorted((h, f) for h, files in inv.files.items() for f in files if (hf := facts.get(h)) is not None and hf.reachable and f not in hf.keys)
    return add, drop, inv.legacy > 0


def inventory_complete(state: DesiredState, facts: Mapping[str, HostFacts]) -> bool:
    node = inventory_node(state, facts)
    if node is None:
        return True  # nowhere to write it; nothing to add
    add, drop, legacy = changes(state, facts, node)
    return not (add or drop or legacy)


def rotated(state: DesiredState, facts: Mapping[str, HostFacts], rotation: Action | None) -> bool:
    """Whether a rotation ran: the cluster key the site holds now is not the one it replaced."""
    if rotation is None:
        return False
    from reconciler.plan.planner import rotation_problems

    _, now = rotation_problems(state, facts, rotation.expected.get("old_cluster_key"))
    return now is not None and now != rotation.expected.get("old_cluster_key")


def update_inventory(state: DesiredState, pool: Pool, facts: Mapping[str, HostFacts], *, rotation: Action | None = None) -> Inventory:
    """Record in the site's inventory the key files csync owns now (prune's proof of ownership),
    and, after a rotation that changed the cluster key, the generation it rotated to."""
    node = inventory_node(state, facts)
    if node is None:
        return Inventory(None, None, error="not updated: the package filesystem is not mounted on any reachable member")
    where = f"{state.package.mount}/{dsau.PACKAGE_CSYNC_STATE}" if state.is_cluster else dsau.STANDALONE_CSYNC_STATE
    path = f"{where}/{sitestate.INVENTORY_FILE}"
    add, drop, _ = changes(state, facts, node)
    generation = state.keys.generation if rotated(state, facts, rotation) else None
    try:
        result = pool.connect(node).run_script(sitestate.inventory_update(state, add, drop, generation), timeout=state.access.command_timeout)
    except TransportError as e:
        return Inventory(node.name, path, error=f"not updated: {e.reason}")
    if result.exit_code != 0:
        return Inventory(node.name, path, error=f"not updated: exit {result.exit_code}: {tail(result.stderr.decode('utf-8', 'replace'))}")
    reply = sitestate.parse_inventory_reply(result)
    return Inventory(node.name, path, addresses=reply[0] if reply else None)
