"""Start lab hosts: each one an ``sshd -D`` in its own mount and UTS namespace.

Run as a separate, single-threaded process (``python hostinit.py < spec.json``): it forks one
child per host, and forking is only safe in a process without threads, which a test session
with paramiko threads is not. Standard library only.

Per host, the child:
1. starts a new session and unshares its mount and UTS namespaces, makes every mount
   private (nothing it mounts is seen by the machine or by other hosts), sets the hostname;
2. builds the host's root filesystem: an overlay whose lower layer is the machine's root
   and whose upper layer lives in a tmpfs private to the host. Directories the machine lacks
   (/csync, /opt/dsau, /etc/cmcluster, ...) are created in that overlay, never on the
   machine, and a stray write to an unbound path (/etc/...) lands in the tmpfs too. (The
   whole root is overlaid because /csync's parent is /; a tmpfs keeps the upper layer out of
   its own lower layer, and vanishes with the host.)
3. re-binds the machine's other mounts (/proc, /sys, /dev, ...) into the new root and binds
   the host's own directories over /run, /root, /var/opt/dsau, ... (their sources are read
   with the machine's paths, before the switch); writes the host's /etc/hosts (the lab's
   names) into its overlay;
4. pivot_root()s into the new root and drops the old one, so that ``nsenter --mount`` into
   the host lands in the host's root;
5. execs sshd. Because it execs, the child's PID *is* sshd's PID.

A setup failure is written to a close-on-exec pipe (empty on success: the exec closed it)
and reported per host in the JSON printed on stdout:
``[{"name", "pid", "mnt", "uts", "start", "error"}]``.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import socket
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}.get(os.uname().machine, 155)
OLD_ROOT = "/.csync-lab-oldroot"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {source or ''} on {target}")


def _unescape(field: str) -> str:
    """mountinfo escapes blanks and backslashes as \\ooo (octal)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts() -> list[tuple[str, str, str]]:
    """(mount id, parent id, mount point) of this namespace."""
    rows = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            rows.append((fields[0], fields[1], _unescape(fields[4])))
    return rows


def _setup(spec: dict) -> None:
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    socket.sethostname(spec["name"])

    # The machine's mounts directly below / (read before adding ours, which would otherwise
    # be copied into the new root along with them).
    table = _mounts()
    root_id = next(mid for mid, _, point in table if point == "/")
    submounts = [point for mid, parent, point in table if parent == root_id and point != "/"]

    scratch = spec["scratch"]
    _mount("csync-lab", scratch, "tmpfs", 0, "mode=755")
    for d in ("upper", "work", "root"):
        os.mkdir(f"{scratch}/{d}", 0o755)
    new_root = f"{scratch}/root"
    _mount("csync-lab", new_root, "overlay", 0, f"lowerdir=/,upperdir={scratch}/upper,workdir={scratch}/work")

    for point in submounts:
        if os.path.isdir(new_root + point):
            _mount(point, new_root + point, None, MS_BIND | MS_REC)
    for source, inside in spec["binds"]:
        os.makedirs(new_root + inside, exist_ok=True)
        _mount(source, new_root + inside, None, MS_BIND)
    for inside in spec.get("mkdirs", ()):
        os.makedirs(new_root + inside, exist_ok=True)
    for inside, text in spec.get("files", {}).items():  # lands in the overlay (the tmpfs), not on the machine
        with open(new_root + inside, "w") as f:
            f.write(text)

    if spec.get("userland"):
        _userland(new_root, spec["userland"])

    os.mkdir(new_root + OLD_ROOT, 0o700)
    os.chdir(new_root)
    _check(_libc.syscall(SYS_PIVOT_ROOT, b".", OLD_ROOT.lstrip("/").encode()), "pivot_root")  # relative: resolved in the new root
    os.chdir("/")
    _check(_libc.umount2(OLD_ROOT.encode(), MNT_DETACH), f"umount {OLD_ROOT}")
    os.rmdir(OLD_ROOT)
    # If the lab directory sits on a re-bound submount (/tmp, /run...), that copy carries a
    # view of our own scratch tmpfs: detach it so the host does not see its own plumbing.
    inner = sorted((p for _, _, p in _mounts() if p == scratch or p.startswith(scratch + "/")), key=len)
    for point in inner:
        _libc.umount2(point.encode(), MNT_DETACH)  # may already be gone with its parent


def _userland(root: str, land: dict) -> None:
    """Make the host's userland (reconciler/lab/userland.py) in its overlay: links replaced
    (/usr/bin/sh -> posh...), tools moved to ``real_dir`` and wrappers put in their place,
    root's login shell changed. Nothing of the machine changes: every write lands in the
    host's tmpfs upper layer."""
    real = root + land["real_dir"]
    os.makedirs(real, exist_ok=True)
    for path, target in land.get("links", {}).items():
        os.unlink(root + path)
        os.symlink(target, root + path)
    for path, text in land.get("wrap", {}).items():
        os.rename(root + path, real + "/" + os.path.basename(path))
        with open(root + path, "w") as f:
            f.write(text)
        os.chmod(root + path, 0o755)
    shell = land.get("root_shell")
    if shell:
        with open(root + "/etc/passwd") as f:
            lines = f.read().splitlines()
        fixed = []
        for line in lines:
            fields = line.split(":")
            if fields[0] == "root" and len(fields) == 7:
                fields[6] = shell
            fixed.append(":".join(fields))
        with open(root + "/etc/passwd", "w") as f:
            f.write("\n".join(fixed) + "\n")


def _child(spec: dict, report_fd: int) -> None:
    try:
        os.setsid()
        log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        _setup(spec)
        os.execv(spec["argv"][0], spec["argv"])
    except BaseException as e:
        try:
            os.write(report_fd, f"{type(e).__name__}: {e}".encode()[:2000])
        except OSError:
            pass
    finally:
        os._exit(127)


def _identity(pid: int) -> dict:
    with open(f"/proc/{pid}/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time in ticks
    return {"mnt": os.readlink(f"/proc/{pid}/ns/mnt"), "uts": os.readlink(f"/proc/{pid}/ns/uts"), "start": start}


def start(specs: list[dict]) -> list[dict]:
    children = []
    for spec in specs:
        read_fd, write_fd = os.pipe()  # both close-on-exec (PEP 446)
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _child(spec, write_fd)
        os.close(write_fd)
        children.append((spec["name"], pid, read_fd))
    results = []
    for name, pid, read_fd in children:
        chunks = []
        while chunk := os.read(read_fd, 4096):
            chunks.append(chunk)
        os.close(read_fd)
        result = {"name": name, "pid": pid, "error": b"".join(chunks).decode(errors="replace") or None}
        if result["error"] is None:
            try:
                result.update(_identity(pid))
            except (OSError, IndexError, ValueError):
                result["error"] = "sshd exited as soon as it started (see its log)"
        results.append(result)
    # Children that failed before exec are ours to reap; sshds are left to run and are
    # re-parented to init when this process exits.
    for r in results:
        if r["error"]:
            try:
                os.waitpid(r["pid"], 0)
            except ChildProcessError:
                pass
    return results


if __name__ == "__main__":
    json.dump(start(json.load(sys.stdin)), sys.stdout)
