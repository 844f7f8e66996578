"""The one parser of Serviceguard's `cmviewcl -v -f line` output.

Line format [doc]: `prefix|attribute=value`, the prefix being `type:instance` pairs joined
by `|`; cluster attributes have no prefix. The names of a package's state, owner, AUTO_RUN
and per-node switching are not documented anywhere we found [ours]; they are named here
and nowhere else:
    package:P|state=running   package:P|owner=NODE   package:P|autorun=enabled
    package:P|node:N|switching=enabled   package:P|node:N|order=1
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PACKAGE_STATE = "state"
PACKAGE_OWNER = "owner"
PACKAGE_AUTORUN = "autorun"
PACKAGE_NODE_SWITCHING = "switching"
PACKAGE_NODE_ORDER = "order"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeView(_Frozen):
    name: str
    status: str = "unknown"  # up | down
    state: str = "unknown"  # running | reforming | halted | failed | unknown

    @property
    def up(self) -> bool:
        return self.status == "up"


class PackageNode(_Frozen):
    name: str
    switching: str = "unknown"  # enabled | disabled
    order: int = 0


class PackageView(_Frozen):
    name: str
    status: str = "unknown"  # up | down | starting | halting
    state: str = "unknown"  # running | halted | failed
    owner: str | None = None
    autorun: str = "unknown"  # enabled | disabled
    nodes: tuple[PackageNode, ...] = ()

    @property
    def running(self) -> bool:
        return self.status == "up" and self.state == "running" and bool(self.owner)

    def node_order(self) -> list[str]:
        """Primary node first, then adoptive nodes in priority order."""
        return [n.name for n in sorted(self.nodes, key=lambda n: (n.order or 10**6, n.name))]


class ClusterView(_Frozen):
    name: str | None = None
    status: str = "unknown"
    nodes: dict[str, NodeView] = Field(default_factory=dict)
    packages: dict[str, PackageView] = Field(default_factory=dict)


class CmviewclParseError(ValueError):
    pass


def parse_cmviewcl_line(lines: list[str]) -> ClusterView:
    """Parse `cmviewcl -v -f line` output into a ClusterView.

    Unknown attributes are ignored (Serviceguard prints many); a line that is not of the
    form `[prefix|]attr=value` raises CmviewclParseError naming it.
    """
    cluster: dict[str, str] = {}
    nodes: dict[str, dict[str, str]] = {}
    packages: dict[str, dict[str, str]] = {}
    package_nodes: dict[str, dict[str, dict[str, str]]] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split("|")
        attr, sep, value = parts[-1].partition("=")
        if not sep or not attr:
            raise CmviewclParseError(f"line {number}: not 'attribute=value': {raw[:120]!r}")
        prefix = []
        for part in parts[:-1]:
            kind, colon, name = part.partition(":")
            if not colon or not name:
                raise CmviewclParseError(f"line {number}: bad prefix {part[:60]!r}")
            prefix.append((kind, name))
        match prefix:
            case []:
                cluster[attr] = value
            case [("node", node)]:
                nodes.setdefault(node, {"name": node})[attr] = value
            case [("package", pkg)]:
                packages.setdefault(pkg, {"name": pkg})[attr] = value
            case [("package", pkg), ("node", node)]:
                packages.setdefault(pkg, {"name": pkg})
                package_nodes.setdefault(pkg, {}).setdefault(node, {"name": node})[attr] = value
            case _:
                continue  # other objects (subnets, dependencies...) do not concern csync
    return ClusterView(
        name=cluster.get("name"),
        status=cluster.get("status", "unknown"),
        nodes={
            n: NodeView(name=n, status=a.get("status", "unknown"), state=a.get("state", "unknown"))
            for n, a in nodes.items()
        },
        packages={
            p: PackageView(
                name=p,
                status=a.get("status", "unknown"),
                state=a.get(PACKAGE_STATE, "unknown"),
                owner=a.get(PACKAGE_OWNER) or None,
                autorun=a.get(PACKAGE_AUTORUN, "unknown"),
                nodes=tuple(
                    PackageNode(
                        name=n,
                        switching=na.get(PACKAGE_NODE_SWITCHING, "unknown"),
                        order=_int(na.get(PACKAGE_NODE_ORDER)),
                    )
                    for n, na in sorted(package_nodes.get(p, {}).items())
                ),
            )
            for p, a in packages.items()
        },
    )


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:
        return 0
