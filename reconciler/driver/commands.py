"""The driver: every command csync sends to a host is built here, and only here.

Values come from the validated model (host names, IPv4 addresses, absolute normalised
paths) and are still quoted with shlex.quote: validation is the first wall, quoting the
second. Nothing else in csync composes shell strings.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from reconciler.domain import dsau

if TYPE_CHECKING:
    from reconciler.desired.model import DesiredState

_PROBE_SCRIPT = resources.files("reconciler.driver").joinpath("probe.sh").read_text(encoding="utf-8")


# Scripts travel on standard input to a POSIX shell: the command line stays short and
# fixed, whatever root's login shell is, and the script is data rather than an argument.
SHELL = "/bin/sh -s"


@dataclass(frozen=True)
class RemoteCommand:
    """A POSIX sh script for one host (run as ``SHELL`` with the script on stdin), with the
    short form shown in plans."""

    script: str
    display: str


def quote_argv(argv: list[str] | tuple[str, ...]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def assign(name: str, value: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"not a shell variable name: {name!r}")
    return f"{name}={shlex.quote(value)}"


def probe(state: DesiredState, role: str) -> RemoteCommand:
    """The one-round-trip probe of a host in ``role`` (member | master | client)."""
    cluster = state.is_cluster
    return probe_script(
        role,
        cfengine_dir=state.paths.cfengine_dir,
        mount=state.master.package.mount if cluster else "",
        master_inputs=dsau.PACKAGE_MASTER_INPUTS if cluster else state.paths.standalone_master_inputs,
        state_dir=dsau.PACKAGE_CSYNC_STATE if cluster else dsau.STANDALONE_CSYNC_STATE,
    )


def probe_script(role: str, *, cfengine_dir: str, mount: str, master_inputs: str, state_dir: str,
                 serviceguard_path: str = dsau.SERVICEGUARD_PATH) -> RemoteCommand:
    """reconciler/probe.sh with its parameters; for members, ``master_inputs`` and
    ``state_dir`` are relative to ``mount``."""
    params = {
        "CF": cfengine_dir,
        "ROLE": role,
        "MOUNT": mount,
        "MKEYS": dsau.PACKAGE_CLUSTER_KEY_DIR,
        "MINPUTS": master_inputs,
        "STATE": state_dir,
        "SGPATH": serviceguard_path,
    }
    header = "\n".join(assign(k, v) for k, v in params.items())
    return RemoteCommand(script=f"{header}\n{_PROBE_SCRIPT}", display=f"csync probe ({role})")


_DISCOVER_SCRIPT = r"""
PATH=$SGPATH:/usr/bin:/bin:/usr/sbin:$PATH
LC_ALL=C
export PATH LC_ALL
echo "@hostname"
uname -n
echo "@cmviewcl"
if command -v cmviewcl >/dev/null 2>&1; then
  cmviewcl -v -f line 2>&1; echo "@rc $?"
else
  echo "cmviewcl: command not found"; echo "@rc 127"
fi
echo "@package-files"
for f in "$PKGDIR"/*.conf "$PKGDIR"/*.ascii; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  awk '$1 ~ /^(package_name|node_name|ip_address|fs_directory)$/ && NF >= 2 { print $1, $2 }' "$f" 2>/dev/null
done
echo "@hosts"
awk '$1 ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/ { for (i = 2; i <= NF && substr($i, 1, 1) != "#"; i++) print $1, $i }' /etc/hosts 2>/dev/null
echo "@standalone"
[ -d "$SINPUTS" ] && [ ! -L "$SINPUTS" ] && echo yes
echo "@end"
"""


def discover(*, package_files_dir: str, standalone_master_inputs: str,
             serviceguard_path: str = dsau.SERVICEGUARD_PATH) -> RemoteCommand:
    """`csync import`'s first look at a host: its name, cmviewcl, the csync package's ASCII
    file (address, mount point, nodes), /etc/hosts (Serviceguard wants every node in it)
    and whether it is a standalone master. Reads only; sections start with '@'."""
    params = {"PKGDIR": package_files_dir, "SINPUTS": standalone_master_inputs, "SGPATH": serviceguard_path}
    header = "\n".join(assign(k, v) for k, v in params.items())
    return RemoteCommand(script=f"{header}\n{_DISCOVER_SCRIPT}", display="csync import (discover)")


# --- Actions ------------------------------------------------------------------------------
# Each builder validates its typed inputs again (a plan file is an input too) and returns a
# script that exits non-zero when it did not do its job; apply verifies the result anyway.

_KEY_FILE = re.compile(r"^(localhost\.pub|root-(\d{1,3}\.){3}\d{1,3}\.pub)$")
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_PEM = re.compile(r"^-----BEGIN RSA PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END RSA PUBLIC KEY-----\n$")
_SSH_LINE = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-[a-z0-9]+) [A-Za-z0-9+/=]+( [\x21-\x7e ]{0,200})?$")
_IPV4 = re.compile(r"^(\d{1,3}\.){3}\d{1,3}$")


class UnsafeValue(ValueError):
    """A value that csync refuses to put into a command (a damaged or forged plan)."""


def _check(pattern: re.Pattern, value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise UnsafeValue(f"refusing {what} {value!r}")
    return value


def _ppkeys(state: DesiredState) -> str:
    return f"{state.paths.cfengine_dir}/{dsau.PPKEYS_SUBDIR}"


def _in_ppkeys(state: DesiredState) -> str:
    # The key store must be a real directory: never write through a symlinked ppkeys.
    d = shlex.quote(_ppkeys(state))
    return f"umask 077\nd={d}\n[ -d \"$d\" ] && [ ! -L \"$d\" ] || {{ echo \"$d is not a directory\" >&2; exit 3; }}\ncd \"$d\" || exit 3"


def start_package(package: str, node: str) -> RemoteCommand:
    pkg, n = _check(_NAME, package, "package name"), _check(_NAME, node, "node name")
    run = quote_argv(["cmrunpkg", "-n", n, pkg])
    enable = quote_argv(["cmmodpkg", "-e", pkg])
    return RemoteCommand(f"PATH={dsau.SERVICEGUARD_PATH}:$PATH\n{run} && {enable}", f"{run} && {enable}")


def enable_switching(package: str) -> RemoteCommand:
    enable = quote_argv(["cmmodpkg", "-e", _check(_NAME, package, "package name")])
    return RemoteCommand(f"PATH={dsau.SERVICEGUARD_PATH}:$PATH\n{enable}", enable)


def dispatch_member(state: DesiredState, member: str) -> RemoteCommand:
    """Run the dispatcher for ``member``, only where the package runs: the package can move
    (a failover, an operator) between the plan's last look and this script, and the
    dispatcher must never run on a node that no longer has the package filesystem."""
    argv = [state.paths.dispatcher, dsau.DISPATCHER_MEMBER_ADDED, _check(_NAME, member, "member name")]
    mount = state.master.package.mount
    guard = (f"[ -d {shlex.quote(mount + '/dsau/cfengine_master')} ] || "
             "{ echo 'the package does not run on this node any more (its filesystem is not mounted here); not dispatching' >&2; exit 3; }")
    return RemoteCommand(f"{guard}\n{quote_argv(argv)}", quote_argv(argv))


def regenerate_keys(state: DesiredState, client_addresses: list[str]) -> RemoteCommand:
    argv = [state.paths.wizard, "regenerate-keys", *(_check(_IPV4, a, "client address") for a in client_addresses)]
    shown = argv if len(argv) <= 6 else argv[:5] + [f"... ({len(client_addresses)} clients)"]
    return RemoteCommand(quote_argv(argv), " ".join(shown))


def copy_key(state: DesiredState, source: str, target: str) -> RemoteCommand:
    """On the host, copy a key file it already holds to another name, atomically."""
    src, dst = _check(_KEY_FILE, source, "key file"), _check(_KEY_FILE, target, "key file")
    tmp = f".csync.{dst}.tmp"
    script = (
        f"{_in_ppkeys(state)}\n"
        f"[ -f {src} ] && [ ! -L {src} ] || {{ echo '{src} is not a regular file' >&2; exit 3; }}\n"
        f"rm -f {tmp} && cp {src} {tmp} && chmod {dsau.KEY_FILE_MODE:o} {tmp} && mv -f {tmp} {dst} || {{ rm -f {tmp}; exit 1; }}"
    )
    return RemoteCommand(script, f"cd {shlex.quote(_ppkeys(state))} && cp {src} {dst}")


def install_key(state: DesiredState, target: str, pem: str, fingerprint: str) -> RemoteCommand:
    """Write a public key file byte for byte, atomically (temp file, mode, rename)."""
    dst = _check(_KEY_FILE, target, "key file")
    body = _check(_PEM, pem, "public key PEM")
    tmp = f".csync.{dst}.tmp"
    script = (
        f"{_in_ppkeys(state)}\n"
        f"rm -f {tmp} && printf '%s' {shlex.quote(body)} > {tmp} && chmod {dsau.KEY_FILE_MODE:o} {tmp} && mv -f {tmp} {dst} || {{ rm -f {tmp}; exit 1; }}"
    )
    return RemoteCommand(script, f"install {_ppkeys(state)}/{dst} ({fingerprint})")


def remove_key(state: DesiredState, target: str) -> RemoteCommand:
    dst = _check(_KEY_FILE, target, "key file")
    if dst == dsau.OWN_PUBLIC_KEY:
        raise UnsafeValue("refusing to remove a host's own key")
    return RemoteCommand(f"{_in_ppkeys(state)}\nrm -f -- {dst}", f"rm {shlex.quote(_ppkeys(state))}/{dst}")


def authorize_ssh(key_lines: list[str]) -> RemoteCommand:
    """Append public keys to root's authorized_keys (the csshsetup equivalent), atomically."""
    lines = [_check(_SSH_LINE, line, "ssh public key line") for line in key_lines]
    add = "".join(f"grep -qxF {shlex.quote(line)} \"$tmp\" || printf '%s\\n' {shlex.quote(line)} >> \"$tmp\"\n" for line in lines)
    script = (
        "umask 077\nmkdir -p \"$HOME/.ssh\" && chmod 700 \"$HOME/.ssh\" || exit 3\n"
        "f=\"$HOME/.ssh/authorized_keys\"; tmp=\"$f.csync.tmp\"\n"
        "[ ! -L \"$f\" ] || { echo \"$f is a symbolic link\" >&2; exit 3; }\n"
        "rm -f \"$tmp\"; if [ -f \"$f\" ]; then cp \"$f\" \"$tmp\" || exit 1; else : > \"$tmp\"; fi\n"
        f"{add}chmod 600 \"$tmp\" && mv -f \"$tmp\" \"$f\" || {{ rm -f \"$tmp\"; exit 1; }}"
    )
    return RemoteCommand(script, f"authorize {len(lines)} master ssh key(s) for root")


# --- Live trust checks (csync trust --live) ----------------------------------------------
# The site's own checks, read-only: cfrun from a member to clients, cfagent on a client
# against the master's address. One script per host; the output grammar is in docs/LAB.md.

LIVE_TOOL_MISSING = 127  # exit code of a live-check script when the tool is not installed


def _live(tool: str, argv: list[str]) -> RemoteCommand:
    line = quote_argv(argv)
    script = (
        f"PATH={dsau.CFENGINE_PATH}:$PATH; export PATH\n"
        f"command -v {tool} >/dev/null 2>&1 || {{ echo '{tool}: not found (searched {dsau.CFENGINE_PATH})' >&2; exit {LIVE_TOOL_MISSING}; }}\n"
        f"{line} </dev/null\n"
    )
    return RemoteCommand(script, line if len(line) <= 120 else line[:100] + f" ... ({len(argv)} arguments)")


def cfrun_check(client_addresses: list[str]) -> RemoteCommand:
    """cfrun from this host to every listed client, in one call (one line per address, in
    order), with cfrun's own per-host timeout."""
    addresses = [_check(_IPV4, a, "client address") for a in client_addresses]
    if not addresses:
        raise UnsafeValue("cfrun needs at least one client address")
    return _live("cfrun", ["cfrun", *addresses])


def cfagent_check(server_address: str) -> RemoteCommand:
    """cfagent on this host against the master's address (the package address on a cluster)."""
    return _live("cfagent", ["cfagent", "--policy-server", _check(_IPV4, server_address, "master address")])


# --- Several actions on one host, in one round trip -------------------------------------

_NONCE = re.compile(r"^[0-9a-f]{16,64}$")


def batch(scripts: list[str], nonce: str, timeout: int | None = None) -> RemoteCommand:
    """Action scripts for one host as one script: each runs in its own subshell (its exit,
    cd and umask stay inside), with stdin from /dev/null (the batch itself is on stdin),
    between marker lines that carry its exit code on both stdout and stderr. ``nonce`` is
    random per batch, so an action's output cannot forge a marker.

    With ``timeout`` (seconds), a watchdog ends the batch on the host when it runs longer:
    it prints ``@@<nonce> timeout <seconds>`` on stderr and signals the batch's process
    group (TERM, then KILL 2 s later). sshd makes every session's command a process-group
    leader, so this reaches the programs the actions started (a hung dispatcher), which
    would otherwise outlive a run that gave up on them. The caller waits a little longer
    than ``timeout`` (`BATCH_TIMEOUT_GRACE`) so that it reads what the host said."""
    n = _check(_NONCE, nonce, "batch nonce")
    parts = []
    if timeout is not None:
        t = int(timeout)
        if t < 1:
            raise UnsafeValue(f"refusing batch timeout {timeout!r}")
        # the loop's sleeps do not hold the channel's output open: a batch that ends in time
        # kills the watchdog and returns at once
        parts.append(
            "( trap '' TERM; s=0\n"
            f"  while [ $s -lt {t} ]; do sleep 1 </dev/null >/dev/null 2>&1; s=$((s + 1)); done\n"
            f"  printf '\\n@@{n} timeout {t}\\n' >&2; kill -TERM 0; sleep 2 </dev/null >/dev/null 2>&1; kill -KILL 0\n"
            ") </dev/null >/dev/null &\nCSYNC_WATCHDOG=$!"
        )
    for i, script in enumerate(scripts):
        parts.append(
            f"printf '\\n@@{n} begin {i}\\n'; printf '\\n@@{n} begin {i}\\n' >&2\n"
            f"(\n{script}\n) </dev/null\n"
            f"rc=$?; printf '\\n@@{n} end {i} %d\\n' $rc; printf '\\n@@{n} end {i} %d\\n' $rc >&2"
        )
    if timeout is not None:
        parts.append("kill -KILL $CSYNC_WATCHDOG 2>/dev/null")
    return RemoteCommand("\n".join(parts) + "\n", f"{len(scripts)} action(s)")


# Seconds the driver waits for a batch beyond its on-host timeout (the watchdog's TERM,
# KILL and the last output on the way back).
BATCH_TIMEOUT_GRACE = 5


# --- The site lock and the inventory (csync's own state on the master) ------------------
# The lock file is <package mount>/dsau/csync/lock.json on the node running the package, or
# /var/opt/dsau/csync/lock.json on that node when the package is not mounted (and on a
# standalone master). Every change to a lock file happens under a node-local mutex (a
# directory: mkdir is atomic everywhere), is a compare-and-swap on the file's content
# (cksum) or on the lock id, and is written temp + rename. Times are the host's clock, so
# two runners with different clocks agree on when a lease expires. See docs/APPLY.md.

_LOCK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_CKSUM = re.compile(r"^[0-9]{1,10}:[0-9]{1,12}$")
LOCK_FILE = "lock.json"
INVENTORY_FILE = "inventory"
MUTEX_STALE_SECONDS = 30  # a critical section takes milliseconds; older is a killed script


def _lock_prelude(state: DesiredState, local: str) -> str:
    """Shell variables L (the node-local lock file), P (the package-filesystem lock file, empty
    when not mounted), NOW (host epoch seconds) and a held mutex; prints "NOW <epoch>"."""
    _check(re.compile(r"^/[A-Za-z0-9_./-]+$"), local, "state directory")
    if state.is_cluster:
        mount = state.master.package.mount
        pkg_dir = f"{mount}/{dsau.PACKAGE_CSYNC_STATE}"
        mounted = f"[ -d {shlex.quote(mount + '/dsau/cfengine_master')} ]"
    else:
        pkg_dir, mounted = "", "false"
    return f"""umask 022
LC_ALL=C; export LC_ALL
# epoch seconds: date +%s is not POSIX; awk's srand() returns the previous (time) seed
now() {{ t=$(date +%s 2>/dev/null); case $t in ''|*[!0-9]*) t=$(awk 'BEGIN {{ srand(); print srand() }}') ;; esac; echo "$t"; }}
cks() {{ cksum < "$1" | awk '{{ print $1 ":" $2 }}'; }}
safe_dir() {{ [ ! -L "$1" ] || {{ echo "$1 is a symbolic link" >&2; exit 3; }}; mkdir -p "$1" && [ -d "$1" ] && [ ! -L "$1" ] || {{ echo "cannot create $1" >&2; exit 3; }}; }}
LD={shlex.quote(local)}
L="$LD/{LOCK_FILE}"
P=
if {mounted}; then PD={shlex.quote(pkg_dir)}; safe_dir "$PD"; P="$PD/{LOCK_FILE}"; fi
safe_dir "$LD"
M="$LD/.lock.mutex"
tries=0
until mkdir "$M" 2>/dev/null; do
  t=$(cat "$M/t" 2>/dev/null)
  case $t in ''|*[!0-9]*) t= ;; esac
  n=$(now); tries=$((tries + 1))
  if {{ [ -n "$t" ] && [ $((n - t)) -gt {MUTEX_STALE_SECONDS} ]; }} || {{ [ -z "$t" ] && [ $tries -gt {MUTEX_STALE_SECONDS * 10} ]; }}; then
    rm -rf "$M"; continue
  fi
  [ $tries -le {MUTEX_STALE_SECONDS * 20} ] || {{ echo BUSY; exit 0; }}
  # a tenth of a second where sleep takes fractions (GNU, BSD, busybox), else a second
  sleep 0.1 2>/dev/null || sleep 1
done
trap 'rm -rf "$M"' EXIT
trap 'exit 1' HUP INT TERM
NOW=$(now); echo "$NOW" > "$M/t"
echo "NOW $NOW"
write_lock() {{ tmp="$1.$$.tmp"; printf '%s\\n' "$2" > "$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$1" || {{ rm -f "$tmp"; echo "cannot write $1" >&2; exit 1; }}; }}
show() {{ echo "LOCK $1 $(cks "$1")"; echo "CONTENT $(sed -n 1p "$1" | cut -c1-4000)"; }}
"""


def lock_acquire(state: DesiredState, lock_id: str, record: str, lease_seconds: int, takeover: list[str], *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> RemoteCommand:
    """Create the lock file (package filesystem if mounted here, else node-local) unless a
    lock file exists that is neither ours nor one of ``takeover`` ("crc:size" of expired
    locks, removed only if unchanged). ``record`` is the lock's JSON object without its
    closing brace; the host's clock fills acquired/renewed/expires."""
    lid = _check(_LOCK_ID, lock_id, "lock id")
    takes = " ".join(_check(_CKSUM, c, "lock checksum") for c in takeover)
    lease = int(lease_seconds)
    script = _lock_prelude(state, local_dir) + f"""ID={shlex.quote(lid)}
RECORD={shlex.quote(record)}
TAKE={shlex.quote(takes)}
held=
for f in $P "$L"; do
  [ -f "$f" ] || continue
  c=$(cks "$f")
  case " $TAKE " in *" $c "*) rm -f "$f" && echo "TAKEN $f $c"; continue ;; esac
  if grep -q "\\"id\\":\\"$ID\\"" "$f"; then echo "OURS $f"; continue; fi
  show "$f"; held=1
done
[ -z "$held" ] || {{ echo HELD; exit 0; }}
T=${{P:-$L}}
if [ -f "$T" ]; then echo "ACQUIRED $T"; exit 0; fi
write_lock "$T" "$RECORD,\\"acquired_epoch\\":$NOW,\\"acquired_at\\":\\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\\",\\"renewed_epoch\\":$NOW,\\"expires_epoch\\":$((NOW + {lease}))}}"
echo "ACQUIRED $T"
"""
    return RemoteCommand(script, f"csync lock acquire {lid}")


def lock_renew(state: DesiredState, lock_id: str, record: str, lease_seconds: int, *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> RemoteCommand:
    """Extend the lease of every lock file of ``lock_id`` on this node (``record`` carries the
    acquired epoch); prints LOST when none holds it any more (taken over or unlocked)."""
    lid = _check(_LOCK_ID, lock_id, "lock id")
    lease = int(lease_seconds)
    script = _lock_prelude(state, local_dir) + f"""ID={shlex.quote(lid)}
RECORD={shlex.quote(record)}
found=
for f in $P "$L"; do
  [ -f "$f" ] && grep -q "\\"id\\":\\"$ID\\"" "$f" || continue
  write_lock "$f" "$RECORD,\\"renewed_epoch\\":$NOW,\\"expires_epoch\\":$((NOW + {lease}))}}"
  echo "RENEWED $f"; found=1
done
[ -n "$found" ] || echo LOST
"""
    return RemoteCommand(script, f"csync lock renew {lid}")


def lock_release(state: DesiredState, lock_id: str, *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> RemoteCommand:
    lid = _check(_LOCK_ID, lock_id, "lock id")
    script = _lock_prelude(state, local_dir) + f"""ID={shlex.quote(lid)}
for f in $P "$L"; do
  [ -f "$f" ] && grep -q "\\"id\\":\\"$ID\\"" "$f" || continue
  rm -f "$f" && echo "RELEASED $f"
done
"""
    return RemoteCommand(script, f"csync lock release {lid}")


def lock_show(state: DesiredState, *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> RemoteCommand:
    """Print the lock files on this node with their checksums (for `csync unlock`)."""
    script = _lock_prelude(state, local_dir) + """for f in $P "$L"; do [ -f "$f" ] && show "$f"; done
exit 0
"""
    return RemoteCommand(script, "csync lock show")


def lock_remove(state: DesiredState, checksums: list[str], *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> RemoteCommand:
    """Remove the lock files whose content is still exactly ``checksums`` ("crc:size")."""
    takes = " ".join(_check(_CKSUM, c, "lock checksum") for c in checksums)
    script = _lock_prelude(state, local_dir) + f"""TAKE={shlex.quote(takes)}
for f in $P "$L"; do
  [ -f "$f" ] || continue
  c=$(cks "$f")
  case " $TAKE " in *" $c "*) rm -f "$f" && echo "RELEASED $f" ;; *) show "$f" ;; esac
done
"""
    return RemoteCommand(script, "csync unlock")


def inventory_update(state: DesiredState, addresses: list[str]) -> RemoteCommand:
    """Rewrite the site's inventory atomically as the union of what it lists and
    ``addresses`` (IPv4, one per line, sorted); on a cluster only where the package
    filesystem is mounted, never on the bare mount point."""
    addrs = [_check(_IPV4, a, "address") for a in addresses]
    if state.is_cluster:
        mount = state.master.package.mount
        d = f"{mount}/{dsau.PACKAGE_CSYNC_STATE}"
        guard = f"[ -d {shlex.quote(mount + '/dsau/cfengine_master')} ] || {{ echo 'the package filesystem is not mounted on this node' >&2; exit 3; }}\n"
    else:
        d, guard = dsau.STANDALONE_CSYNC_STATE, ""
    listed = "".join(f"{a}\n" for a in addrs)
    script = (
        f"umask 022\nLC_ALL=C; export LC_ALL\n{guard}d={shlex.quote(d)}\n"
        "[ ! -L \"$d\" ] || { echo \"$d is a symbolic link\" >&2; exit 3; }\n"
        "mkdir -p \"$d\" && [ -d \"$d\" ] || exit 3\n"
        f"f=\"$d/{INVENTORY_FILE}\"; tmp=\"$d/.{INVENTORY_FILE}.$$.tmp\"\n"
        "[ ! -L \"$f\" ] || { echo \"$f is a symbolic link\" >&2; exit 3; }\n"
        "{ [ -f \"$f\" ] && grep -E '^[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}$' \"$f\"; "
        f"printf '%s' {shlex.quote(listed)}; }} | sort -u -t. -k1,1n -k2,2n -k3,3n -k4,4n > \"$tmp\" "
        "&& chmod 644 \"$tmp\" && mv -f \"$tmp\" \"$f\" || { rm -f \"$tmp\"; exit 1; }\n"
        "echo \"INVENTORY $(wc -l < \"$f\")\"\n"
    )
    return RemoteCommand(script, f"update {d}/{INVENTORY_FILE} ({len(addrs)} declared addresses)")
