"""`csync import --adopt-keys`: record in the site's inventory every key file found on the
declared hosts, so that csync owns them (and `keys.prune` removes them once they are not
declared for their host). Only on request: csync never infers ownership.

Under the site lock (as apply writes the inventory), from a fresh probe. Nothing but the
inventory is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.apply.inventory import inventory_node, recorded
from reconciler.apply.lock import SiteLock, lock_node, session_runner
from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.domain.inventory import is_entry
from reconciler.driver import sitestate
from reconciler.driver.transport import Pool, TransportError
from reconciler.importer.discover import ImportFailed
from reconciler.observe.probe import probe_site


@dataclass(frozen=True)
class Adopted:
    node: str
    path: str
    files: int  # key files newly recorded
    hosts: int  # hosts they are on
    unreachable: tuple[str, ...] = ()  # hosts whose key files could not be read


def adopt_keys(state: DesiredState, pool: Pool, *, lock_timeout: float = 0) -> Adopted:
    """Record every peer key file (root-<address or name>.pub) of every declared host that
    answers in the site's inventory; raises ImportFailed (or LockHeld) when it cannot."""
    node = lock_node(state, probe_site(state, pool, only=[m.name for m in state.members]).hosts) if state.is_cluster else state.standalone_host
    lock = SiteLock(state, node, session_runner(pool, node))
    lock.acquire(lock_timeout)
    try:
        facts = probe_site(state, pool).hosts
        where = inventory_node(state, facts)
        if where is None:
            raise ImportFailed(
                "no key file was adopted: the inventory lives on the package filesystem, which is not mounted "
                "on a reachable member; start the package and import again"
            )
        inv = recorded(state, facts, where)
        add = sorted(
            (h, file)
            for h, f in facts.items()
            if f.reachable
            for file in f.keys
            if file.startswith(dsau.PEER_KEY_PREFIX) and is_entry(h, file) and not inv.owns(h, file)
        )
        path = f"{state.package.mount}/{dsau.PACKAGE_CSYNC_STATE}" if state.is_cluster else dsau.STANDALONE_CSYNC_STATE
        path += f"/{sitestate.INVENTORY_FILE}"
        try:
            result = pool.connect(where).run_script(sitestate.inventory_update(state, add), timeout=state.access.command_timeout)
        except TransportError as e:
            raise ImportFailed(f"no key file was adopted: {where.name}: {e.reason}") from None
        if result.exit_code != 0:
            raise ImportFailed(
                f"no key file was adopted: the inventory update on {where.name} exited {result.exit_code}: {result.stderr_text() or 'no message'}"
            )
        return Adopted(where.name, path, len(add), len({h for h, _ in add}), tuple(sorted(h for h, f in facts.items() if not f.reachable)))
    finally:
        lock.release()
