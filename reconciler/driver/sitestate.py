"""csync's own state on the master: the site lock and the inventory. Scripts and parsers.

The lock file is <package mount>/dsau/csync/lock.json on the node running the package, or
/var/opt/dsau/csync/lock.json on that node when the package is not mounted (and on a
standalone master). Every change to a lock file happens under a node-local mutex (a
directory: mkdir is atomic everywhere), is a compare-and-swap on the file's content
(cksum) or on the lock id, and is written temp + rename. Times are the host's clock, so
two runners with different clocks agree on when a lease expires. See docs/APPLY.md.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from reconciler.domain import dsau
from reconciler.domain.inventory import HEADER
from reconciler.domain.keys import KEY_FILE_NAME
from reconciler.driver.commands import NAME_LABEL, RemoteCommand, UnsafeValue, check, package_mounted
from reconciler.driver.transport import CommandResult
from reconciler.errors import LockError

if TYPE_CHECKING:
    from reconciler.desired.model import DesiredState

_LOCK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_CKSUM = re.compile(r"^[0-9]{1,10}:[0-9]{1,12}$")
LOCK_FILE = "lock.json"
INVENTORY_FILE = "inventory"
MUTEX_STALE_SECONDS = 30  # a critical section takes milliseconds; older is a killed script


def _lock_prelude(state: DesiredState, local: str) -> str:
    """Shell variables L (the node-local lock file), P (the package-filesystem lock file, empty
    when not mounted), NOW (host epoch seconds) and a held mutex; prints "NOW <epoch>"."""
    check(re.compile(r"^/[A-Za-z0-9_./-]+$"), local, "state directory")
    if state.is_cluster:
        pkg_dir = f"{state.package.mount}/{dsau.PACKAGE_CSYNC_STATE}"
        mounted = package_mounted(state)
    else:
        pkg_dir, mounted = "", "false"
    return f"""umask 022
LC_ALL=C; export LC_ALL
# Every program's failure ends the script with its message (exit 1): a lock that cannot be
# read is never taken for an absent or a damaged one.
die() {{ echo "$*" >&2; exit 1; }}
# epoch seconds: date +%s is not POSIX (HP-UX's date has no %s); awk's srand() returns the
# previous (time) seed
now() {{ t=$(date +%s 2>/dev/null); case $t in ''|*[!0-9]*) t=$(awk 'BEGIN {{ srand(); print srand() }}') ;; esac; echo "$t"; }}
clock() {{ c=$(now); case $c in ''|*[!0-9]*) die "cannot read the clock (date +%s, awk srand)" ;; esac; }}
# "crc:size" of a file
cks() {{ c=$(cksum < "$1") || die "cksum failed on $1"; set -- $c; case $1:$2 in *[!0-9:]*|:*|*:) die "cksum printed no checksum for $1" ;; esac; c="$1:$2"; }}
# whether a lock file is ID's (grep: 0 yes, 1 no, else it failed)
ours() {{ grep -q "\\"id\\":\\"$ID\\"" "$1"; r=$?; [ $r -le 1 ] || die "grep failed on $1 (exit $r)"; return $r; }}
safe_dir() {{ [ ! -L "$1" ] || {{ echo "$1 is a symbolic link" >&2; exit 3; }}; mkdir -p "$1" && [ -d "$1" ] && [ ! -L "$1" ] || {{ echo "cannot create $1" >&2; exit 3; }}; }}
LD={shlex.quote(local)}
L="$LD/{LOCK_FILE}"
P=
if {mounted}; then PD={shlex.quote(pkg_dir)}; safe_dir "$PD"; P="$PD/{LOCK_FILE}"; fi
safe_dir "$LD"
M="$LD/.lock.mutex"
tries=0
# The holder writes the mutex's time right after taking it (the clock read before), so a
# mutex without a time is one whose holder died in between; it is taken as stale only after
# that many looks in a row (one look at each holder's first instant is no evidence).
clock; n=$c; empty=0
until mkdir "$M" 2>/dev/null; do
  # Gone by now: its holder released it after our mkdir, or mkdir failed for another reason.
  # Once more: a mkdir that fails while still no mutex exists says why; one that fails because
  # a third script took the mutex meanwhile is a wait like any other (seen with 12 acquirers).
  if [ ! -d "$M" ]; then
    e=$(mkdir "$M" 2>&1) && break
    [ -d "$M" ] || die "$e"
    tries=$((tries + 1)); continue
  fi
  t=$(cat "$M/t" 2>/dev/null)
  case $t in ''|*[!0-9]*) t= ;; esac
  tries=$((tries + 1))
  if [ -n "$t" ]; then empty=0; else empty=$((empty + 1)); fi
  if {{ [ -n "$t" ] && [ $((n - t)) -gt {MUTEX_STALE_SECONDS} ]; }} || [ $empty -gt {MUTEX_STALE_SECONDS * 10} ]; then
    rm -rf "$M"; continue
  fi
  [ $tries -le {MUTEX_STALE_SECONDS * 20} ] || {{ echo BUSY; exit 0; }}
  # a tenth of a second where sleep takes fractions (GNU, BSD, busybox), else a second
  sleep 0.1 2>/dev/null || sleep 1 || die "sleep failed"
  clock; n=$c
done
echo "$n" > "$M/t" || die "cannot write $M/t"
trap 'rm -rf "$M"' EXIT
trap 'exit 1' HUP INT TERM PIPE  # so that EXIT's runs: PIPE when csync went (its channel closed)
clock; NOW=$c; echo "$NOW" > "$M/t" || die "cannot write $M/t"
echo "NOW $NOW"
write_lock() {{ tmp="$1.$$.tmp"; printf '%s\\n' "$2" > "$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$1" || {{ rm -f "$tmp"; echo "cannot write $1" >&2; exit 1; }}; }}
show() {{ cks "$1"; l=$(awk 'NR == 1 {{ print substr($0, 1, 4000); exit }}' "$1") || die "cannot read $1"; echo "LOCK $1 $c"; echo "CONTENT $l"; }}
"""


def lock_acquire(
    state: DesiredState, lock_id: str, record: str, lease_seconds: int, takeover: list[str], *, local_dir: str = dsau.STANDALONE_CSYNC_STATE
) -> RemoteCommand:
    """Create the lock file (package filesystem if mounted here, else node-local) unless a
    lock file exists that is neither ours nor one of ``takeover`` ("crc:size" of expired
    locks, removed only if unchanged). ``record`` is the lock's JSON object without its
    closing brace; the host's clock fills acquired/renewed/expires."""
    lid = check(_LOCK_ID, lock_id, "lock id")
    takes = " ".join(check(_CKSUM, c, "lock checksum") for c in takeover)
    lease = int(lease_seconds)
    script = (
        _lock_prelude(state, local_dir)
        + f"""ID={shlex.quote(lid)}
RECORD={shlex.quote(record)}
TAKE={shlex.quote(takes)}
held=
for f in $P "$L"; do
  [ -f "$f" ] || continue
  cks "$f"
  case " $TAKE " in *" $c "*) rm -f "$f" && echo "TAKEN $f $c" || die "cannot remove $f"; continue ;; esac
  if ours "$f"; then echo "OURS $f"; continue; fi
  show "$f"; held=1
done
[ -z "$held" ] || {{ echo HELD; exit 0; }}
T=${{P:-$L}}
if [ -f "$T" ]; then echo "ACQUIRED $T"; exit 0; fi
at=$(date -u +%Y-%m-%dT%H:%M:%SZ) || die "date failed"
write_lock "$T" "$RECORD,\\"acquired_epoch\\":$NOW,\\"acquired_at\\":\\"$at\\",\\"renewed_epoch\\":$NOW,\\"expires_epoch\\":$((NOW + {lease}))}}"
echo "ACQUIRED $T"
"""
    )
    return RemoteCommand(script, f"csync lock acquire {lid}")


def lock_renew(state: DesiredState, lock_id: str, record: str, lease_seconds: int, *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> RemoteCommand:
    """Extend the lease of every lock file of ``lock_id`` on this node (``record`` carries the
    acquired epoch); prints LOST when none holds it any more (taken over or unlocked)."""
    lid = check(_LOCK_ID, lock_id, "lock id")
    lease = int(lease_seconds)
    script = (
        _lock_prelude(state, local_dir)
        + f"""ID={shlex.quote(lid)}
RECORD={shlex.quote(record)}
found=
for f in $P "$L"; do
  [ -f "$f" ] && ours "$f" || continue
  write_lock "$f" "$RECORD,\\"renewed_epoch\\":$NOW,\\"expires_epoch\\":$((NOW + {lease}))}}"
  echo "RENEWED $f"; found=1
done
[ -n "$found" ] || echo LOST
"""
    )
    return RemoteCommand(script, f"csync lock renew {lid}")


def lock_release(state: DesiredState, lock_id: str, *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> RemoteCommand:
    lid = check(_LOCK_ID, lock_id, "lock id")
    script = (
        _lock_prelude(state, local_dir)
        + f"""ID={shlex.quote(lid)}
for f in $P "$L"; do
  [ -f "$f" ] && ours "$f" || continue
  rm -f "$f" && echo "RELEASED $f" || die "cannot remove $f"
done
"""
    )
    return RemoteCommand(script, f"csync lock release {lid}")


def lock_show(state: DesiredState, *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> RemoteCommand:
    """Print the lock files on this node with their checksums (for `csync unlock`)."""
    script = (
        _lock_prelude(state, local_dir)
        + """for f in $P "$L"; do [ -f "$f" ] && show "$f"; done
exit 0
"""
    )
    return RemoteCommand(script, "csync lock show")


def lock_remove(state: DesiredState, checksums: list[str], *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> RemoteCommand:
    """Remove the lock files whose content is still exactly ``checksums`` ("crc:size")."""
    takes = " ".join(check(_CKSUM, c, "lock checksum") for c in checksums)
    script = (
        _lock_prelude(state, local_dir)
        + f"""TAKE={shlex.quote(takes)}
for f in $P "$L"; do
  [ -f "$f" ] || continue
  cks "$f"
  case " $TAKE " in *" $c "*) rm -f "$f" && echo "RELEASED $f" || die "cannot remove $f" ;; *) show "$f" ;; esac
done
"""
    )
    return RemoteCommand(script, "csync unlock")


def inventory_update(state: DesiredState, add: Sequence[tuple[str, str]], drop: Sequence[tuple[str, str]] = (), generation: int | None = None) -> RemoteCommand:
    """Rewrite the site's inventory (domain/inventory.py) atomically: its entries less ``drop``,
    plus ``add`` (HOST FILE), and its generation raised to ``generation`` when given (never
    lowered); lines of the first format (addresses) are dropped. On a cluster only where the
    package filesystem is mounted, never on the bare mount point."""

    def lines(entries: Sequence[tuple[str, str]]) -> str:
        out = []
        for host, file in entries:
            check(NAME_LABEL, host, "host name")
            check(KEY_FILE_NAME, file, "key file")
            if not file.startswith(dsau.PEER_KEY_PREFIX):
                raise UnsafeValue(f"refusing inventory entry {file!r}")
            out.append(f"{host} {file}\n")
        return "".join(sorted(out))

    added, dropped = lines(add), lines(drop)
    if generation is not None and (not isinstance(generation, int) or isinstance(generation, bool) or generation < 0):
        raise UnsafeValue(f"refusing key generation {generation!r}")
    gen = "" if generation is None else str(generation)
    if state.is_cluster:
        d = f"{state.package.mount}/{dsau.PACKAGE_CSYNC_STATE}"
        guard = f"{package_mounted(state)} || {{ echo 'the package filesystem is not mounted on this node' >&2; exit 3; }}\n"
    else:
        d, guard = dsau.STANDALONE_CSYNC_STATE, ""
    # One awk: the drop list, "%%", the add list, "%%", then the file; it prints "0 <header>",
    # "0 generation N" and "1 <entry>" lines, which sort orders; the prefix is then cut.
    merge = (
        'part == 0 { if ($0 == "%%") { part = 1; next } drop[$0] = 1; next }\n'
        'part == 1 { if ($0 == "%%") { part = 2; next } keep[$0] = 1; next }\n'
        "/^generation [0-9]+$/ { n = substr($0, 12) + 0; if (n > old) old = n; next }\n"
        "/^[A-Za-z0-9.-]+ root-[A-Za-z0-9.-]+[.]pub$/ { if (!($0 in drop)) keep[$0] = 1 }\n"
        'END { if (gen != "" && gen + 0 > old) old = gen + 0\n'
        f'  print "0 {HEADER}"; print "0 generation " (old + 0)\n'
        '  for (k in keep) print "1 " k }'
    )
    script = (
        f"umask 022\nLC_ALL=C; export LC_ALL\n{guard}d={shlex.quote(d)}\n"
        '[ ! -L "$d" ] || { echo "$d is a symbolic link" >&2; exit 3; }\n'
        'mkdir -p "$d" && [ -d "$d" ] || exit 3\n'
        f'f="$d/{INVENTORY_FILE}"; tmp="$d/.{INVENTORY_FILE}.$$.tmp"\n'
        '[ ! -L "$f" ] || { echo "$f is a symbolic link" >&2; exit 3; }\n'
        # every step in its own file and checked: a failing program never becomes an answer
        'i="$tmp.in"; m="$tmp.m"; s="$tmp.s"; trap \'rm -f "$i" "$m" "$s"\' 0\n'
        f"{{ printf '%s' {shlex.quote(dropped)}; echo '%%'; printf '%s' {shlex.quote(added)}; echo '%%'; }} > \"$i\" || exit 1\n"
        'if [ -f "$f" ]; then cat "$f" >> "$i" || exit 1; fi\n'
        f'awk -v gen={shlex.quote(gen)} {shlex.quote(merge)} "$i" > "$m" || exit 1\n'
        'sort -u "$m" > "$s" || exit 1\n'
        'cut -c3- "$s" > "$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$f" || { rm -f "$tmp"; exit 1; }\n'
        'c=$(grep -c \' root-\' "$f"); [ $? -le 1 ] || { echo "cannot count $f" >&2; exit 1; }\n'
        'g=$(sed -n \'s/^generation //p\' "$f") || { echo "cannot read $f" >&2; exit 1; }\n'
        'echo "INVENTORY $c $g"\n'
    )
    what = f"+{len(add)} -{len(drop)} key file(s)" + (f", generation {generation}" if generation is not None else "")
    return RemoteCommand(script, f"update {d}/{INVENTORY_FILE} ({what})")


def iso_time(epoch: int | None) -> str:
    if epoch is None:
        return "an unknown time"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LockRecord:
    """A lock file as found on a node: what it says, where, and its checksum."""

    node: str
    path: str
    checksum: str  # "crc:size" of the file, for compare-and-swap
    data: dict | None  # None: not a csync lock record (damaged)
    host_now: int  # the node's clock when it was read

    @property
    def id(self) -> str | None:
        return self.data.get("id") if self.data else None

    @property
    def expires_epoch(self) -> int | None:
        value = self.data.get("expires_epoch") if self.data else None
        return value if isinstance(value, int) else None

    @property
    def expired(self) -> bool:
        return self.expires_epoch is not None and self.expires_epoch <= self.host_now

    def holder(self) -> str:
        """'user@host (pid N, CI ...)' of the apply that holds it."""
        if self.data is None:
            return "an unreadable lock file"
        d = self.data
        text = f"{d.get('user', '?')}@{d.get('host', '?')} (pid {d.get('pid', '?')}"
        ci = d.get("ci")
        if isinstance(ci, dict) and ci:
            job = ", ".join(f"{k}={v}" for k, v in ci.items() if k != "system")
            text += f", {ci.get('system', 'ci')} job {job}"
        return text + ")"

    def describe(self) -> str:
        if self.data is None:
            return f"{self.node}:{self.path} exists but is not a csync lock record; inspect it and remove it by hand"
        since = iso_time(self.data.get("acquired_epoch"))
        left = (self.expires_epoch or 0) - self.host_now
        lease = f"lease expired {-left} s ago" if left <= 0 else f"lease expires in {left} s unless renewed"
        plan = f", plan {self.data['plan_digest']}" if self.data.get("plan_digest") else ""
        return f"lock {self.id} of {self.holder()} since {since} ({lease}{plan}) at {self.node}:{self.path}"


@dataclass
class LockReply:
    now: int | None = None
    records: list[LockRecord] = field(default_factory=list)
    tags: dict[str, list[str]] = field(default_factory=dict)

    def has(self, tag: str) -> bool:
        return tag in self.tags


def parse_reply(node: str, result: CommandResult, what: str) -> LockReply:
    """The tagged lines a lock script prints (see lock_acquire)."""
    if result.exit_code != 0:
        raise LockError(f"{what} on {node} failed (exit {result.exit_code}): {result.stderr_text() or 'no message'}")
    reply = LockReply()
    pending: tuple[str, str] | None = None
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "NOW" and rest.strip().isdigit():
            reply.now = int(rest)
        elif tag == "LOCK":
            path, _, checksum = rest.rpartition(" ")
            pending = (path, checksum)
        elif tag == "CONTENT" and pending is not None:
            try:
                data = json.loads(rest)
            except json.JSONDecodeError:
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("id"), str):
                data = None
            reply.records.append(LockRecord(node, pending[0], pending[1], data, reply.now or 0))
            pending = None
        elif tag:
            reply.tags.setdefault(tag, []).append(rest)
    if reply.now is None and not reply.has("BUSY"):
        raise LockError(f"{what} on {node}: no answer from the lock script ({result.stderr_text() or 'empty output'})")
    return reply


def parse_inventory_reply(result: CommandResult) -> tuple[int, int] | None:
    """(entries, generation) an `inventory_update` left in the inventory."""
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "INVENTORY" and parts[1].isdigit() and parts[2].isdigit():
            return int(parts[1]), int(parts[2])
    return None
