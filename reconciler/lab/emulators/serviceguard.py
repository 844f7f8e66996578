#!/usr/bin/python3
"""Emulated Serviceguard commands for csync's lab: cmviewcl, cmrunpkg, cmhaltpkg, cmmodpkg.

Installed under each member's /usr/local/sbin by name; runs with the system python (the
project's python lives under /root, which is per-host). The cluster state is
/run/csync-lab/lab.json ("cluster"), changed under an flock and replaced atomically.
Line format names [ours]: package:P|state, |owner, |autorun, |node:N|switching, |node:N|order.
"""
import fcntl
import json
import os
import subprocess
import sys

STATE = "/run/csync-lab/lab.json"
LOCK = "/run/csync-lab/lab.lock"
PKGFS = "/run/csync-lab/pkgfs"


def load():
    with open(STATE) as f:
        return json.load(f)


def save(state):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
    os.replace(tmp, STATE)


def fail(msg, code=1):
    sys.stderr.write(msg + "\n")
    sys.exit(code)


def cmviewcl(args):
    c = load()["cluster"]
    lines = [f"name={c['name']}", f"status={c['status']}"]
    for n, node in sorted(c["nodes"].items()):
        lines += [f"node:{n}|name={n}", f"node:{n}|status={node['status']}", f"node:{n}|state={node['state']}"]
    for p, pkg in sorted(c["packages"].items()):
        lines += [f"package:{p}|name={p}", f"package:{p}|status={pkg['status']}", f"package:{p}|state={pkg['state']}"]
        if pkg.get("owner"):
            lines.append(f"package:{p}|owner={pkg['owner']}")
        lines.append(f"package:{p}|autorun={pkg['autorun']}")
        for i, n in enumerate(pkg["nodes"], 1):
            lines += [f"package:{p}|node:{n}|name={n}", f"package:{p}|node:{n}|switching={pkg['switching'].get(n, 'enabled')}", f"package:{p}|node:{n}|order={i}"]
    if "line" in args:
        print("\n".join(lines))
        return
    print(f"CLUSTER        STATUS\n{c['name']:<14} {c['status']}\n")
    for n, node in sorted(c["nodes"].items()):
        print(f"  NODE           STATUS       STATE\n  {n:<14} {node['status']:<12} {node['state']}")
    for p, pkg in sorted(c["packages"].items()):
        print(f"\n    PACKAGE        STATUS       STATE        AUTO_RUN     NODE\n    {p:<14} {pkg['status']:<12} {pkg['state']:<12} {pkg['autorun']:<12} {pkg.get('owner') or 'unowned'}")


def with_lock(change):
    with open(LOCK, "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        state = load()
        change(state)
        save(state)


def mount_on(state, node, mount=True):
    pid = state["pids"][node]
    target = state["mount"]
    cmd = ["mount", "--bind", PKGFS, target] if mount else ["umount", "-l", target]
    subprocess.run(["nsenter", f"--target={pid}", "--mount", *cmd], check=True, capture_output=True)
    with open("/run/csync-lab/pkgfs-owner", "w") as f:
        f.write(node if mount else "")


def cmrunpkg(args):
    node = args[args.index("-n") + 1] if "-n" in args else os.uname().nodename
    pkg_name = args[-1]

    def change(state):
        c = state["cluster"]
        pkg = c["packages"].get(pkg_name)
        if pkg is None:
            fail(f"cmrunpkg: Unable to find package {pkg_name}.")
        if pkg["status"] == "up":
            fail(f"cmrunpkg: Unable to run package {pkg_name}: package is already running on node {pkg['owner']}.")
        if node not in pkg["nodes"]:
            fail(f"cmrunpkg: Node {node} is not configured to run package {pkg_name}.")
        if c["nodes"][node]["status"] != "up":
            fail(f"cmrunpkg: Unable to run package {pkg_name} on node {node}: node is not up.")
        mount_on(state, node)
        pkg.update(status="up", state="running", owner=node)
        print(f"Running package {pkg_name} on node {node}\nSuccessfully started package {pkg_name} on node {node}.")

    with_lock(change)


def cmhaltpkg(args):
    pkg_name = args[-1]

    def change(state):
        pkg = state["cluster"]["packages"].get(pkg_name) or fail(f"cmhaltpkg: Unable to find package {pkg_name}.")
        if pkg["status"] != "up":
            fail(f"cmhaltpkg: Package {pkg_name} is not running.")
        mount_on(state, pkg["owner"], mount=False)
        pkg.update(status="down", state="halted", owner=None, autorun="disabled")
        print(f"Halting package {pkg_name}\nSuccessfully halted package {pkg_name}.")

    with_lock(change)


def cmmodpkg(args):
    pkg_name = args[-1]
    enable = "-e" in args
    node = args[args.index("-n") + 1] if "-n" in args else None

    def change(state):
        pkg = state["cluster"]["packages"].get(pkg_name) or fail(f"cmmodpkg: Unable to find package {pkg_name}.")
        value = "enabled" if enable else "disabled"
        if node:
            pkg["switching"][node] = value
        else:
            pkg["autorun"] = value

    with_lock(change)


if __name__ == "__main__":
    tool = os.path.basename(sys.argv[0])
    {"cmviewcl": cmviewcl, "cmrunpkg": cmrunpkg, "cmhaltpkg": cmhaltpkg, "cmmodpkg": cmmodpkg}.get(tool, lambda a: fail(f"{tool}: unknown command", 127))(sys.argv[1:])
