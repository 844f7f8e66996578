"""The site's inventory: every address csync has managed, kept on the master (prune's proof
of ownership)."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.apply.executor import tail
from reconciler.apply.report import Inventory
from reconciler.desired.model import DesiredState, Host
from reconciler.domain import dsau
from reconciler.domain.package import package_server
from reconciler.driver import sitestate
from reconciler.driver.transport import Pool, TransportError
from reconciler.observe.facts import HostFacts


def inventory_node(state: DesiredState, facts: Mapping[str, HostFacts]) -> Host | None:
    """Where the inventory lives now: the standalone master, or the member that has the
    package filesystem mounted."""
    if not state.is_cluster:
        return state.standalone_host
    node = package_server(state, facts)
    f = facts.get(node or "")
    return state.host(node) if node and f and f.package_fs and f.package_fs.mounted else None


def declared_addresses(state: DesiredState) -> list[str]:
    addresses = [h.address for h in state.all_hosts]
    if state.is_cluster:
        addresses.append(state.package.address)
    return sorted(set(addresses))


def inventory_complete(state: DesiredState, facts: Mapping[str, HostFacts]) -> bool:
    node = inventory_node(state, facts)
    if node is None:
        return True  # nowhere to write it; nothing to add
    f = facts[node.name]
    listed = (f.package_fs.inventory if state.is_cluster and f.package_fs else f.master_files.inventory if f.master_files else None) or ()
    return set(declared_addresses(state)) <= set(listed)


def update_inventory(state: DesiredState, pool: Pool, facts: Mapping[str, HostFacts]) -> Inventory:
    """Add every declared address to the site's inventory (prune's proof of ownership)."""
    node = inventory_node(state, facts)
    if node is None:
        return Inventory(None, None, error="not updated: the package filesystem is not mounted on any reachable member")
    where = f"{state.package.mount}/{dsau.PACKAGE_CSYNC_STATE}" if state.is_cluster else dsau.STANDALONE_CSYNC_STATE
    path = f"{where}/{sitestate.INVENTORY_FILE}"
    try:
        result = pool.connect(node).run_script(sitestate.inventory_update(state, declared_addresses(state)), timeout=state.access.command_timeout)
    except TransportError as e:
        return Inventory(node.name, path, error=f"not updated: {e.reason}")
    if result.exit_code != 0:
        return Inventory(node.name, path, error=f"not updated: exit {result.exit_code}: {tail(result.stderr.decode('utf-8', 'replace'))}")
    return Inventory(node.name, path, addresses=sitestate.parse_inventory_reply(result))
