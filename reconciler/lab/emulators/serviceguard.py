#!/usr/bin/python3 -Es
"""Emulated Serviceguard commands of the csync lab, chosen by the name they are called by:

    cmviewcl [-v] [-f table|line] [-l cluster|node|package] [-p pkg]... [-n node]...
    cmrunpkg [-v] [-t] [-n node] pkg...
    cmhaltpkg [-v] [-t] [-n node] pkg...
    cmmodpkg {-e [-t]|-d} [-v] [-n node]... pkg...      cmmodpkg -m on|off [-n node] pkg...
    cmrunnode [-v] [-t] [node...]             (default: this node)
    cmhaltnode [-f|-d] [-v] [-t] [node...]    (default: this node)
    cmruncl [-v] [-t]        cmhaltcl [-f|-d] [-v]        cmversion

The options follow the lab's Serviceguard release (lab.json ``sg_release``, default
A.11.20.00): -t and cmmodpkg -m exist from A.11.19, -d from A.11.20, -f line from A.11.18;
an older release rejects them as unknown options (exit 2), as an older Serviceguard would.

Installed as links in each cluster member's /usr/local/sbin (clients have none). The rules
live in sgcluster.py; this file parses command lines and prints. Output formats are those of
docs/LAB.md; the names of the line format's package attributes are [ours] and must match
reconciler/domain/serviceguard.py:

    package:P|state=running  package:P|owner=NODE  package:P|autorun=enabled
    package:P|node:N|switching=enabled  package:P|node:N|order=1

Exit codes: 0 done, 1 refused or failed (message on stderr), 2 bad command line.
"""

from __future__ import annotations

import getopt
import os
import sys

try:
    from . import labhost, sgcluster
except ImportError:
    import labhost  # type: ignore[no-redef]
    import sgcluster  # type: ignore[no-redef]

USAGE = {
    "cmviewcl": "cmviewcl [-v] [-f table|line] [-l cluster|node|package] [-p package]... [-n node]...",
    "cmrunpkg": "cmrunpkg [-v] [-n node] package...",
    "cmhaltpkg": "cmhaltpkg [-v] [-n node]... package...",
    "cmmodpkg": "cmmodpkg {-e|-d} [-v] [-n node]... package...",
    "cmrunnode": "cmrunnode [-v] [node...]",
    "cmhaltnode": "cmhaltnode [-f] [-v] [node...]",
    "cmruncl": "cmruncl [-v]",
    "cmhaltcl": "cmhaltcl [-f] [-v]",
    "cmversion": "cmversion",
}
# cmviewcl before A.11.18 (no -f) [doc: the usage a pre-A.11.19 cmviewcl printed, as quoted in a
# public script written against one: "usage: cmviewcl [-v] [-r {A.11.09|A.11.12}] [-c cluster_name]
# [-n node_name]... [-l {package|cluster|node|group}]"]
USAGE_NO_FORMAT = "cmviewcl [-v] [-r {A.11.09|A.11.12}] [-c cluster_name] [-n node_name]... [-l {package|cluster|node|group}]"
# Further synopsis lines of later releases (the first line above stays as it was).
USAGE_PREVIEW = {  # A.11.19
    "cmrunpkg": "cmrunpkg -t [-v] [-n node] package...",
    "cmhaltpkg": "cmhaltpkg -t [-v] [-n node]... package...",
    "cmmodpkg": "cmmodpkg -e -t [-v] [-n node]... package...\n       cmmodpkg -m on|off [-v] [-n node] package...",
    "cmrunnode": "cmrunnode -t [-v] [node...]",
    "cmhaltnode": "cmhaltnode -t [-f] [-v] [node...]",
    "cmruncl": "cmruncl -t [-v]",
}
USAGE_DETACH = {  # A.11.20
    "cmhaltnode": "cmhaltnode -d [-v] [node...]",
    "cmhaltcl": "cmhaltcl -d [-v]",
}
OPTIONS = {
    "cmviewcl": "vf:l:p:n:",
    "cmrunpkg": "vn:",
    "cmhaltpkg": "vn:",
    "cmmodpkg": "edvn:",
    "cmrunnode": "v",
    "cmhaltnode": "fv",
    "cmruncl": "v",
    "cmhaltcl": "fv",
    "cmversion": "",
}
PREVIEW_OPTIONS = {"cmrunpkg": "t", "cmhaltpkg": "t", "cmmodpkg": "tm:", "cmrunnode": "t", "cmhaltnode": "t", "cmruncl": "t"}
DETACH_OPTIONS = {"cmhaltnode": "d", "cmhaltcl": "d"}


def release() -> str:
    """The lab's Serviceguard release (lab.json ``sg_release``)."""
    return labhost.LabState().topology.get("sg_release") or sgcluster.DEFAULT_RELEASE


def options_of(tool: str, rel: tuple[int, int]) -> tuple[str, str]:
    """(getopt option string, usage text) of ``tool`` in release ``rel``."""
    opts, usage = OPTIONS[tool], [USAGE[tool]]
    if tool == "cmviewcl" and rel < sgcluster.LINE_FORMAT_SINCE:
        # before A.11.18 there is no -f: HP-UX's getopt refuses it ("illegal option -- f")
        opts, usage = opts.replace("f:", ""), [USAGE_NO_FORMAT]
    if rel >= sgcluster.PREVIEW_SINCE and tool in PREVIEW_OPTIONS:
        opts += PREVIEW_OPTIONS[tool]
        usage.append(USAGE_PREVIEW[tool])
    if rel >= sgcluster.DETACH_SINCE and tool in DETACH_OPTIONS:
        opts += DETACH_OPTIONS[tool]
        usage.append(USAGE_DETACH[tool])
    return opts, "\n       ".join(usage)


class Usage(Exception):
    pass


# --- cmviewcl ---------------------------------------------------------------------------------


def line_records(cluster: sgcluster.Cluster, verbose: bool) -> list[tuple[tuple[tuple[str, str], ...], str, str]]:
    """Every fact as (prefix, attribute, value); the prefix is a tuple of (type, instance)."""
    out: list = [((), "name", cluster.name), ((), "status", cluster.status)]
    for n in cluster.nodes:
        p = (("node", n["name"]),)
        out += [(p, "name", n["name"]), (p, "status", n["status"]), (p, "state", n["state"])]
    for pkg in cluster.packages:
        p = (("package", pkg["name"]),)
        out += [(p, "name", pkg["name"]), (p, "status", pkg["status"]), (p, "state", pkg["state"])]
        if pkg.get("owner"):  # [ours] a halted package has no owner line at all
            out.append((p, "owner", pkg["owner"]))
        out.append((p, "autorun", pkg["autorun"]))
        if verbose:
            for order, entry in enumerate(pkg["nodes"], 1):
                q = p + (("node", entry["name"]),)
                out += [(q, "name", entry["name"]), (q, "switching", entry["switching"]), (q, "order", str(order))]
    return out


def select(cluster: sgcluster.Cluster, records: list, level: str | None, pkgs: list[str], nodes: list[str]) -> list:
    """Apply -l/-p/-n; a single object named with -p or -n loses its prefix, as on HP-UX."""
    owners = {p["name"]: p.get("owner") for p in cluster.packages}
    kept = []
    for prefix, attr, value in records:
        kind = prefix[0][0] if prefix else "cluster"
        name = prefix[0][1] if prefix else None
        if level and kind != level:
            continue
        if pkgs or nodes:
            if kind == "cluster":
                continue
            if kind == "node" and (pkgs or name not in nodes):
                continue
            if kind == "package" and ((pkgs and name not in pkgs) or (nodes and owners.get(name) not in nodes)):
                continue
        kept.append((prefix, attr, value))
    strip = None
    if len(pkgs) == 1 and not nodes:
        strip = ("package", pkgs[0])
    elif len(nodes) == 1 and not pkgs:
        strip = ("node", nodes[0])
    if strip:
        kept = [(prefix[1:] if prefix and prefix[0] == strip else prefix, a, v) for prefix, a, v in kept]
    return kept


def render_lines(records: list) -> str:
    return "".join("|".join([f"{k}:{n}" for k, n in prefix] + [f"{attr}={value}"]) + "\n" for prefix, attr, value in records)


def render_table(cluster: sgcluster.Cluster, verbose: bool, level: str | None, pkgs: list[str], nodes: list[str]) -> str:
    out: list[str] = []

    def pkg_block(pkg: dict, indent: str = "    ") -> None:
        out.append(f"{indent}{'PACKAGE':<14} {'STATUS':<12} {'STATE':<12} {'AUTO_RUN':<12} NODE")
        out.append(f"{indent}{pkg['name']:<14} {pkg['status']:<12} {pkg['state']:<12} {pkg['autorun']:<12} {pkg.get('owner') or 'unowned'}")
        if verbose:
            out.extend(
                [
                    "",
                    f"{indent}  Policy_Parameters:",
                    f"{indent}  {'POLICY_NAME':<15} CONFIGURED_VALUE",
                    f"{indent}  {'Failover':<15} configured_node",
                    f"{indent}  {'Failback':<15} manual",
                    "",
                    f"{indent}  Node_Switching_Parameters:",
                    f"{indent}  {'NODE_TYPE':<12} {'STATUS':<12} {'SWITCHING':<12} NAME",
                ]
            )
            status = {n["name"]: n["status"] for n in cluster.nodes}
            for i, entry in enumerate(pkg["nodes"]):
                current = "(current)" if entry["name"] == pkg.get("owner") else ""
                kind = "Primary" if i == 0 else "Alternate"
                row = f"{indent}  {kind:<12} {status.get(entry['name'], 'unknown'):<12} {entry['switching']:<12} {entry['name']:<14} {current}"
                out.append(row.rstrip())

    def wanted(pkg: dict) -> bool:
        return (not pkgs or pkg["name"] in pkgs) and (not nodes or pkg.get("owner") in nodes)

    if level in (None, "cluster") and not pkgs and not nodes:
        out += [f"{'CLUSTER':<14} STATUS", f"{cluster.name:<14} {cluster.status}"]
    if level in (None, "node") and not pkgs:
        # Nodes, each with the packages it runs (unless only nodes were asked for).
        for n in cluster.nodes:
            if nodes and n["name"] not in nodes:
                continue
            out += ["", f"  {'NODE':<14} {'STATUS':<12} STATE", f"  {n['name']:<14} {n['status']:<12} {n['state']}"]
            for pkg in cluster.packages:
                if level is None and pkg.get("owner") == n["name"] and wanted(pkg):
                    out.append("")
                    pkg_block(pkg)
    elif level == "package" or (level is None and pkgs):
        for pkg in cluster.packages:
            if pkg.get("owner") and wanted(pkg):
                out.append("")
                pkg_block(pkg)
    unowned = [p for p in cluster.packages if not p.get("owner") and wanted(p) and not nodes]
    if level in (None, "package") and unowned:
        out += ["", "UNOWNED_PACKAGES"]
        for pkg in unowned:
            out.append("")
            pkg_block(pkg)
    return "\n".join(out).lstrip("\n") + "\n"


def cmviewcl(opts: dict, args: list[str]) -> None:
    if args:
        raise Usage(f"unexpected argument {args[0]!r}")
    fmt = opts.get("-f", ["table"])[-1]
    level = opts.get("-l", [None])[-1]
    if fmt not in ("table", "line"):
        raise Usage(f"-f {fmt}: the format is table or line")
    if level not in (None, "cluster", "node", "package"):
        raise Usage(f"-l {level}: the level is cluster, node or package")
    cluster = sgcluster.Cluster.read(labhost.LabState())
    pkgs, nodes = opts.get("-p", []), opts.get("-n", [])
    for p in pkgs:
        cluster.package(p, "cmviewcl")
    for n in nodes:
        cluster.node(n, "cmviewcl")
    verbose = "-v" in opts
    if fmt == "line":
        sys.stdout.write(render_lines(select(cluster, line_records(cluster, verbose), level, pkgs, nodes)))
    else:
        sys.stdout.write(render_table(cluster, verbose, level, pkgs, nodes))


# --- commands that change the cluster ---------------------------------------------------------


def _this_node() -> str:
    return os.uname().nodename


def _change(tool: str, opts: dict, pkgs: list[str], body) -> list[str]:
    """Run ``body(cluster)`` on the cluster under its lock, or, with -t, on a copy that is
    never written: then print the predicted actions as HP's preview does [doc: "Previewing the
    Effect of Cluster Changes": package:P|node:N|action:A lines, then "<command>: Command
    preview completed successfully"]."""
    lab = labhost.LabState()
    if "-t" not in opts:
        with sgcluster.Cluster.edit(lab) as cluster:
            body(cluster)
        return cluster.log
    cluster = sgcluster.Cluster.previewing(lab)
    for pkg in pkgs:
        cluster.no_preview_in_maintenance(pkg, tool)
    body(cluster)
    return cluster.actions + [f"{tool}: Command preview completed successfully"]


def cmrunpkg(opts: dict, args: list[str]) -> list[str]:
    if not args:
        raise Usage("name the package to run")
    if len(opts.get("-n", [])) > 1:
        raise Usage("give -n at most once")
    node = opts.get("-n", [_this_node()])[0]
    return _change("cmrunpkg", opts, args, lambda c: [c.run_package(pkg, node) for pkg in args])


def cmhaltpkg(opts: dict, args: list[str]) -> list[str]:
    if not args:
        raise Usage("name the package to halt")
    nodes = opts.get("-n", [])

    def body(cluster: sgcluster.Cluster) -> None:
        for name in nodes:
            cluster.node(name, "cmhaltpkg")
        for pkg in args:
            p = cluster.package(pkg, "cmhaltpkg")
            if nodes and p.get("owner") not in nodes:  # [doc] fails unless running on the named nodes
                raise sgcluster.SgError(f"cmhaltpkg: Unable to halt package {pkg}: package is not running on node {', '.join(nodes)}.")
            cluster.halt_package(pkg)

    return _change("cmhaltpkg", opts, args, body)


def cmmodpkg(opts: dict, args: list[str]) -> list[str]:
    if not args:
        raise Usage("name the package")
    if "-m" in opts:
        if "-e" in opts or "-d" in opts or "-t" in opts:
            raise Usage("-m cannot be combined with -e, -d or -t")
        mode = opts["-m"][-1]
        if mode not in ("on", "off"):
            raise Usage(f"-m {mode}: give -m on or -m off")
        if len(opts.get("-n", [])) > 1:
            raise Usage("a package is in maintenance mode on one node: give -n at most once")
        node = opts.get("-n", [None])[0]
        with sgcluster.Cluster.edit(labhost.LabState()) as cluster:
            for pkg in args:
                cluster.maintenance(pkg, mode == "on", node)
        return cluster.log[-1:]
    if ("-e" in opts) == ("-d" in opts):
        raise Usage("give exactly one of -e and -d")
    if "-t" in opts and "-d" in opts:
        raise Usage("-t previews -e only")

    def body(cluster: sgcluster.Cluster) -> None:
        for pkg in args:
            for node in opts.get("-n", [None]):
                cluster.modify_package(pkg, "-e" in opts, node)

    log = _change("cmmodpkg", opts, args, body)
    return log if "-t" in opts else log[-1:]  # one "Completed successfully" line, as on HP-UX


def cmrunnode(opts: dict, args: list[str]) -> list[str]:
    return _change("cmrunnode", opts, [], lambda c: c.run_nodes(args or [_this_node()]))


def cmhaltnode(opts: dict, args: list[str]) -> list[str]:
    if "-d" in opts and "-f" in opts:
        raise Usage("-d and -f are mutually exclusive")
    return _change("cmhaltnode", opts, [], lambda c: c.halt_nodes(args or [_this_node()], force="-f" in opts, detach="-d" in opts))


def cmruncl(opts: dict, args: list[str]) -> list[str]:
    if args:
        raise Usage(f"unexpected argument {args[0]!r}")
    return _change("cmruncl", opts, [], lambda c: c.run_cluster())


def cmhaltcl(opts: dict, args: list[str]) -> list[str]:
    if args:
        raise Usage(f"unexpected argument {args[0]!r}")
    if "-d" in opts and "-f" in opts:
        raise Usage("-d and -f are mutually exclusive")
    return _change("cmhaltcl", opts, [], lambda c: c.halt_cluster(force="-f" in opts, detach="-d" in opts))


def cmversion(opts: dict, args: list[str]) -> list[str]:
    """The Serviceguard release, e.g. A.11.20.00 [ours: the format of swlist's revision]."""
    if args:
        raise Usage(f"unexpected argument {args[0]!r}")
    return [release()]


COMMANDS = {
    "cmviewcl": cmviewcl,
    "cmrunpkg": cmrunpkg,
    "cmhaltpkg": cmhaltpkg,
    "cmmodpkg": cmmodpkg,
    "cmrunnode": cmrunnode,
    "cmhaltnode": cmhaltnode,
    "cmruncl": cmruncl,
    "cmhaltcl": cmhaltcl,
    "cmversion": cmversion,
}


def main(argv: list[str]) -> int:
    tool = os.path.basename(argv[0])
    if tool not in COMMANDS:
        sys.stderr.write(f"{tool}: not a Serviceguard command of the lab ({', '.join(COMMANDS)})\n")
        return 2
    usage = USAGE[tool]
    try:
        option_string, usage = options_of(tool, sgcluster.release_tuple(release()))
        pairs, args = getopt.getopt(argv[1:], option_string)
        opts: dict[str, list] = {}
        for flag, value in pairs:
            opts.setdefault(flag, []).append(value)
        log = COMMANDS[tool](opts, args)
    except getopt.GetoptError as e:
        # HP-UX's getopt(3C) wording for an option the release does not have
        problem = f"illegal option -- {e.opt}" if e.msg.endswith("not recognized") else str(e)
        sys.stderr.write(f"{tool}: {problem}\nusage: {usage}\n")
        return 2
    except Usage as e:
        sys.stderr.write(f"{tool}: {e}\nusage: {usage}\n")
        return 2
    except sgcluster.SgError as e:
        sys.stderr.write(f"{e}\n")
        return e.code
    except labhost.LabStateError as e:
        sys.stderr.write(f"{tool}: {e}\n")
        return 1
    if log:
        sys.stdout.write("".join(f"{line}\n" for line in log))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
