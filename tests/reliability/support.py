"""Helpers of the reliability suite (faults, hostile input and hosts, secrets, concurrency).

The apply helpers of tests/test_apply_lab.py are reused as they are; what is here is what
the reliability cases add: file checks that tolerate hosts that are down, in-host mounts
that make a key store read-only or full (and are always undone), a hung program.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from reconciler.domain import dsau
from reconciler.lab.runtime import LAB_MOUNT, Lab, key_dir  # noqa: F401  (re-exported)
from tests.test_apply_lab import (  # noqa: F401  (re-exported)
    PKG,
    PPKEYS,
    Hook,
    apply_in_process,
    csync,
    csync_plan,
    desired,
    drop_keys,
    fresh_plan,
    journals,
    lock_text,
    put_key,
    spawn,
    started,
    wait_for,
)

DISPATCHER = dsau.DISPATCHER


def up_hosts(lab: Lab) -> list[str]:
    return [h.name for h in lab.status().hosts if h.state == "up"]


def temp_files(lab: Lab) -> list[str]:
    """Drafts csync could leave on a host (key copies, lock, inventory, authorized_keys),
    on every host that is up."""
    found = []
    for name in up_hosts(lab):
        out = lab.exec(
            name, f"find {PPKEYS} /var/opt/dsau/csync {LAB_MOUNT}/dsau/csync /root/.ssh \\( -name '*.tmp' -o -name '.lock.mutex' \\) 2>/dev/null; true"
        ).stdout.split()
        found += [f"{name}:{f}" for f in out]
    return found


def key_store(lab: Lab, host: str) -> dict[str, bytes]:
    """Every file of a host's ppkeys with its bytes (read in the host: mounts included)."""
    names = lab.exec(host, f"ls -A {PPKEYS}", check=True).stdout.split()
    return {n: lab.exec(host, ["cat", f"{PPKEYS}/{n}"], check=True).stdout.encode() for n in names}


@contextlib.contextmanager
def read_only_key_store(lab: Lab, host: str):
    """The host's ppkeys bind-mounted read-only over itself (in the host's own mount
    namespace); unmounted at the end."""
    lab.exec(host, f"mount --bind {PPKEYS} {PPKEYS} && mount -o remount,bind,ro {PPKEYS}", check=True)
    try:
        yield
    finally:
        lab.exec(host, f"umount {PPKEYS}", check=True)


@contextlib.contextmanager
def full_key_store(lab: Lab, host: str):
    """The host's ppkeys replaced by a small tmpfs holding the same files, then filled up
    (ENOSPC on the next write); unmounted at the end, which brings back the real directory."""
    lab.exec(
        host,
        f"""set -e
rm -rf /tmp/csync-test-pp && cp -a {PPKEYS} /tmp/csync-test-pp
mount -t tmpfs -o size=256k,mode=700 csync-test-full {PPKEYS}
cp -a /tmp/csync-test-pp/. {PPKEYS}/ && rm -rf /tmp/csync-test-pp
dd if=/dev/zero of={PPKEYS}/.filler bs=4k 2>/dev/null || true
""",
        check=True,
    )
    try:
        yield
    finally:
        lab.exec(host, f"umount {PPKEYS}", check=True)


def hang_program(lab: Lab, host: str, path: str, *, seconds: int, then: str | None = None) -> None:
    """Replace program ``path`` on ``host`` by one that sleeps ``seconds`` (and then execs
    the original, moved to ``then``, when given)."""
    tail = f'exec {then} "$@"\n' if then else "exit 0\n"
    move = f"mkdir -p $(dirname {then}) && mv {path} {then}" if then else f"rm -f {path}"
    lab.exec(host, f"{move} && printf '#!/bin/sh\\necho csync-test-hang $$ >&2\\nsleep {seconds}\\n{tail}' > {path} && chmod 755 {path}", check=True)


def processes(lab: Lab, host: str, pattern: str) -> list[str]:
    out = lab.exec(host, "ps -eo pid,args").stdout.splitlines()
    return [line for line in out[1:] if pattern in line and "ps -eo" not in line]


def scan_dir(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()}
