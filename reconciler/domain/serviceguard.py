"""The parsers of Serviceguard's `cmviewcl -v` output: the line format and the table format.

Line format (`cmviewcl -v -f line`, from A.11.18) [doc: cmviewcl(5)]: `[prefix]attribute=value`,
the prefix being `type:instance` pairs joined by `|` ("The prefixes are hierarchical and define
the context the attribute is used in"), cluster attributes have none, and parts named on the
command line are left out. cmviewcl(5) shows `status`, `name` and `summary` for the cluster,
nodes and packages (`package:PKG1|status=up`, `node:eggplant|summary=ok`). The other names
csync reads are those public scripts written against real clusters read (docs/DOMAIN-CHOICES.md):
    package:P|state=running   package:P|autorun=enabled   package:P|owner=NODE
    package:P|node:N|name=N   package:P|node:N|status=up  package:P|node:N|switching=enabled
and one is ours alone: package:P|node:N|order=1 (the node list's order). Without `order`
lines, the order of the package's node lines as printed is the node list's order.

Table format (`cmviewcl -v`, every release) [doc: the samples of "Managing Serviceguard" and
"Managing HP Serviceguard for Linux", "Reviewing Cluster and Package Status"]: a `CLUSTER STATUS`
header and row, `NODE STATUS STATE` headers and rows, `PACKAGE STATUS STATE AUTO_RUN NODE`
headers and rows (NODE `unowned` for a package no node holds, listed under `UNOWNED_PACKAGES`),
and per package a `Node_Switching_Parameters:` block (`NODE_TYPE STATUS SWITCHING NAME`,
`Primary` first, then `Alternate` in priority order, the owner marked `(current)`). Other
blocks (Policy_Parameters, Script_Parameters, Network_Parameters, Dependency_Parameters,
Quorum_Server_Status, ...) are skipped. csync reads it when a release refuses `-f line`
(A.11.16 and A.11.17).

What csync does not know is unknown, never guessed: an attribute the line format does not
print leaves its value "unknown"; in the table format, a header of a cluster, node or package
with columns csync does not know (a column added or renamed) makes the objects listed under
it "unknown" (their names are read, nothing else), and an unknown node switching header makes
the whole view unreadable (the node list is what a start needs).
"""

from __future__ import annotations

import re

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
    package_nodes: dict[str, dict[str, dict[str, str]]] = {}  # in the order first printed
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
    return _view(cluster, nodes, packages, {p: list(n.values()) for p, n in package_nodes.items()})


def _view(
    cluster: dict[str, str], nodes: dict[str, dict[str, str]], packages: dict[str, dict[str, str]], package_nodes: dict[str, list[dict[str, str]]]
) -> ClusterView:
    """A ClusterView from the attributes either parser gathered; a package's node entries are
    in the order they were printed (which is the node list's order unless `order` says
    otherwise)."""

    def entries(p: str) -> tuple[PackageNode, ...]:
        listed = package_nodes.get(p, [])
        return tuple(
            sorted(
                (
                    PackageNode(name=na["name"], switching=na.get(PACKAGE_NODE_SWITCHING, "unknown"), order=_int(na.get(PACKAGE_NODE_ORDER)) or i)
                    for i, na in enumerate(listed, 1)
                ),
                key=lambda n: n.name,
            )
        )

    return ClusterView(
        name=cluster.get("name"),
        status=cluster.get("status", "unknown"),
        nodes={n: NodeView(name=n, status=a.get("status", "unknown"), state=a.get("state", "unknown")) for n, a in nodes.items()},
        packages={
            p: PackageView(
                name=p,
                status=a.get("status", "unknown"),
                state=a.get(PACKAGE_STATE, "unknown"),
                owner=a.get(PACKAGE_OWNER) or None,
                autorun=a.get(PACKAGE_AUTORUN, "unknown"),
                nodes=entries(p),
            )
            for p, a in packages.items()
        },
    )


# --- the table format ---------------------------------------------------------------------------

# Column headers the table parser knows; a row follows its header. PKG_SWITCH is AUTO_RUN's
# name in releases before A.11.12 (cmviewcl -r A.11.09).
_HEADERS = {
    ("CLUSTER", "STATUS"): "cluster",
    ("NODE", "STATUS", "STATE"): "node",
    ("PACKAGE", "STATUS", "STATE", "AUTO_RUN", "NODE"): "package",
    ("PACKAGE", "STATUS", "STATE", "PKG_SWITCH", "NODE"): "package",
    ("NODE_TYPE", "STATUS", "SWITCHING", "NAME"): "switching",
}
_CURRENT = "(current)"
# A header row: column names, upper case (cmviewcl's own: CLUSTER, NODE_TYPE, AUTO_RUN, ...).
_HEADER_WORD = re.compile(r"^[A-Z][A-Z_]*$")
_OBJECTS = {"CLUSTER": "cluster", "NODE": "node", "PACKAGE": "package"}


def parse_cmviewcl_table(lines: list[str]) -> ClusterView:
    """Parse `cmviewcl -v` (table format) output into a ClusterView.

    Rows follow their header until a blank line or another header; rows under headers csync
    does not know are skipped, except that a cluster, node or package listed under columns
    csync does not know is there with every attribute "unknown". A row that does not fit its
    header, or node switching columns csync does not know, raise CmviewclParseError naming
    the line; output without a CLUSTER header is no cmviewcl table."""
    cluster: dict[str, str] = {}
    nodes: dict[str, dict[str, str]] = {}
    packages: dict[str, dict[str, str]] = {}
    package_nodes: dict[str, list[dict[str, str]]] = {}
    mode: str | None = None
    package: str | None = None
    for number, raw in enumerate(lines, 1):
        words = raw.split()
        if not words:
            mode = None if mode != "switching-block" else mode
            continue
        header = _HEADERS.get(tuple(words))
        if header is not None:
            mode = header
            continue
        if len(words) >= 2 and all(_HEADER_WORD.fullmatch(w) for w in words):  # a header csync does not know
            if words[0] == "NODE_TYPE":
                raise CmviewclParseError(
                    f"line {number}: node switching columns csync does not know: {raw.strip()[:120]!r} (it reads NODE_TYPE STATUS SWITCHING NAME)"
                )
            kind = _OBJECTS.get(words[0])
            mode = f"unknown-{kind}" if kind else "skip"  # the rows of other tables (NODE_NAME, POLICY_NAME, ...) are not csync's concern
            continue
        if len(words) == 1 and words[0].endswith(":"):  # a block: Node_Switching_Parameters:, Policy_Parameters:, ...
            mode = "switching-block" if words[0] == "Node_Switching_Parameters:" else "skip"
            continue
        if words == ["UNOWNED_PACKAGES"] or (len(words) == 1 and words[0].isupper()):
            mode = None  # UNOWNED_PACKAGES, SYSTEM_MULTI_NODE_PACKAGES, ...: the rows come with their own header
            continue
        if mode == "cluster":
            if len(words) != 2:
                raise CmviewclParseError(f"line {number}: not a CLUSTER STATUS row: {raw[:120]!r}")
            cluster = {"name": words[0], "status": words[1]}
        elif mode == "node":
            if len(words) != 3:
                raise CmviewclParseError(f"line {number}: not a NODE STATUS STATE row: {raw[:120]!r}")
            nodes[words[0]] = {"name": words[0], "status": words[1], "state": words[2]}
        elif mode == "package":
            if len(words) != 5:
                raise CmviewclParseError(f"line {number}: not a PACKAGE STATUS STATE AUTO_RUN NODE row: {raw[:120]!r}")
            package = words[0]
            attrs = {"name": package, "status": words[1], PACKAGE_STATE: words[2], PACKAGE_AUTORUN: words[3]}
            if words[4] != "unowned":
                attrs[PACKAGE_OWNER] = words[4]
            packages[package] = attrs
            package_nodes[package] = []
        elif mode == "unknown-cluster":
            cluster = {"name": words[0]}
        elif mode == "unknown-node":
            nodes[words[0]] = {"name": words[0]}
        elif mode == "unknown-package":
            package = words[0]
            packages[package] = {"name": package}
            package_nodes[package] = []
        elif mode == "switching":
            if package is None:
                raise CmviewclParseError(f"line {number}: node switching row outside a package: {raw[:120]!r}")
            current = words[-1] == _CURRENT
            cells = words[:-1] if current else words
            if len(cells) == 4:
                _type, status, switching, name = cells
            elif len(cells) == 3:  # a release that prints no SWITCHING value
                (_type, status, name), switching = cells, "unknown"
            else:
                raise CmviewclParseError(f"line {number}: not a NODE_TYPE STATUS SWITCHING NAME row: {raw[:120]!r}")
            package_nodes[package].append({"name": name, PACKAGE_NODE_SWITCHING: switching, "status": status})
            if current:
                packages[package].setdefault(PACKAGE_OWNER, name)
        # other modes ("skip", None, "switching-block" before its header): not csync's concern
    if not cluster:
        raise CmviewclParseError("no CLUSTER header: not cmviewcl's table format")
    return _view(cluster, nodes, packages, package_nodes)


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:
        return 0
