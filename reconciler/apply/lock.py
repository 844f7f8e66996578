"""The site lock: one `csync apply` at a time per site.

Where it lives (docs/APPLY.md): on the node that runs the csync package, as
`<package mount>/dsau/csync/lock.json`; while the package is not mounted there, as
`/var/opt/dsau/csync/lock.json` on the node that will start it; on a standalone master, as
`/var/opt/dsau/csync/lock.json`. Whichever file an apply creates, it first checks both on
that node under one node-local mutex, so an apply that found the package down and one that
found it running (after the first started it) cannot both hold the lock.

A lock is a lease: the host's clock writes `expires_epoch`, a background thread renews it
while the apply runs, and a lock whose lease has run out (its apply was killed) is taken
over by the next apply, only if the file is still byte for byte the expired one.
The remote side is built in reconciler.driver.commands; this module decides and explains.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from reconciler import __version__
from reconciler.desired.model import DesiredState, Host
from reconciler.domain.package import decide_package
from reconciler.driver import commands
from reconciler.driver.transport import CommandResult, TransportError
from reconciler.errors import CsyncError, LockHeld

LEASE_ENV = "CSYNC_LOCK_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 120
DEFAULT_LOCK_TIMEOUT = 60.0
MIN_LEASE_SECONDS = 3
LOCK_COMMAND_TIMEOUT = 90.0  # a lock script may wait up to a minute for the node's mutex
POLL_SECONDS = 2.0

Runner = Callable[[str], CommandResult]


class LockError(CsyncError):
    """The lock could not be taken, renewed or released for a reason other than another holder."""


class Interrupted(CsyncError):
    """SIGINT or SIGTERM: exits 128 + the signal's number."""

    exit_code = 130


def lease_seconds() -> int:
    """The lease length: CSYNC_LOCK_LEASE_SECONDS, else 120 s."""
    raw = os.environ.get(LEASE_ENV)
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        value = int(raw)
    except ValueError:
        raise LockError(f"{LEASE_ENV}={raw!r} is not a whole number of seconds") from None
    if value < MIN_LEASE_SECONDS:
        raise LockError(f"{LEASE_ENV}={value} is shorter than the minimum of {MIN_LEASE_SECONDS} s")
    return value


def ci_identity(environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """Which CI job runs csync, if any (GitHub Actions, GitLab CI, or a generic CI=true)."""
    env = os.environ if environ is None else environ
    if env.get("GITHUB_ACTIONS") == "true" or env.get("GITHUB_RUN_ID"):
        keys = ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB", "GITHUB_WORKFLOW", "GITHUB_SHA",
                "GITHUB_REF", "GITHUB_EVENT_NAME", "GITHUB_ACTOR")
        ident = {"system": "github", **{k.lower().removeprefix("github_"): env[k] for k in keys if env.get(k)}}
        if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
            ident["url"] = f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        return ident
    if env.get("GITLAB_CI") or env.get("CI_JOB_ID"):
        keys = ("CI_PROJECT_PATH", "CI_PIPELINE_ID", "CI_JOB_ID", "CI_JOB_NAME", "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME",
                "CI_PIPELINE_SOURCE", "CI_JOB_URL")
        ident = {"system": "gitlab", **{k.lower().removeprefix("ci_"): env[k] for k in keys if env.get(k)}}
        if env.get("GITLAB_USER_LOGIN"):
            ident["actor"] = env["GITLAB_USER_LOGIN"]
        return ident
    if env.get("CI", "").lower() in ("true", "1", "yes"):
        keys = ("BUILD_ID", "BUILD_URL", "JOB_NAME", "BUILD_NUMBER")
        return {"system": "ci", **{k.lower(): env[k] for k in keys if env.get(k)}}
    return None


def user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def who() -> dict:
    """The identity an apply records in its lock and journal."""
    return {"user": user_name(), "host": socket.gethostname(), "pid": os.getpid(), "ci": ci_identity()}


def _iso(epoch: int | None) -> str:
    if epoch is None:
        return "an unknown time"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        since = _iso(self.data.get("acquired_epoch"))
        left = (self.expires_epoch or 0) - self.host_now
        lease = f"lease expired {-left} s ago" if left <= 0 else f"lease expires in {left} s unless renewed"
        plan = f", plan {self.data['plan_digest']}" if self.data.get("plan_digest") else ""
        return f"lock {self.id} of {self.holder()} since {since} ({lease}{plan}) at {self.node}:{self.path}"


@dataclass
class _Reply:
    now: int | None = None
    records: list[LockRecord] = field(default_factory=list)
    tags: dict[str, list[str]] = field(default_factory=dict)

    def has(self, tag: str) -> bool:
        return tag in self.tags


def parse_reply(node: str, result: CommandResult, what: str) -> _Reply:
    """The tagged lines a lock script prints (see commands.lock_acquire)."""
    if result.exit_code != 0:
        raise LockError(f"{what} on {node} failed (exit {result.exit_code}): {result.stderr_text() or 'no message'}")
    reply = _Reply()
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


def _record(fields: dict) -> str:
    """The lock's JSON object without its closing brace: the node appends its clock's times."""
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return text[:-1]


class SiteLock:
    """The lock of one site, held by this process; renewed in the background once started."""

    def __init__(
        self,
        state: DesiredState,
        node: Host,
        runner: Runner,
        *,
        lock_id: str | None = None,
        lease: int | None = None,
        plan_digest: str | None = None,
        local_dir: str = commands.dsau.STANDALONE_CSYNC_STATE,
    ):
        self.state = state
        self.node = node
        self.run = runner
        self.id = lock_id or str(uuid.uuid4())
        self.lease = lease if lease is not None else lease_seconds()
        self.plan_digest = plan_digest
        self.local_dir = local_dir
        self.identity = who()
        self.acquired_epoch: int | None = None
        self.paths: list[str] = []
        self.taken_over: list[LockRecord] = []
        self.lost: str | None = None  # why the lock can no longer be trusted
        self.renewals = 0
        self._held_until = 0.0  # monotonic estimate of the lease's end
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    # --- what the lock file says ---------------------------------------------------------
    def _fields(self) -> dict:
        fields = {
            "id": self.id,
            "site": self.state.site,
            **self.identity,
            "tool_version": __version__,
            "plan_digest": self.plan_digest,
            "lease_seconds": self.lease,
        }
        if self.acquired_epoch is not None:
            fields["acquired_epoch"] = self.acquired_epoch
            fields["acquired_at"] = _iso(self.acquired_epoch)
        return fields

    def _call(self, command: commands.RemoteCommand, what: str) -> _Reply:
        try:
            result = self.run(command.script)
        except TransportError as e:
            raise LockError(f"{what} on {self.node.name} ({self.node.address}): {e.reason}") from None
        return parse_reply(self.node.name, result, what)

    # --- acquire -------------------------------------------------------------------------
    def acquire(self, timeout: float, *, stop: threading.Event | None = None, on_wait: Callable[[LockRecord], None] | None = None) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for another apply to release it;
        raises LockHeld naming the holder. Expired leases are taken over."""
        deadline = time.monotonic() + timeout
        takeover: list[str] = []
        told: set[str] = set()
        while True:
            start = time.monotonic()
            reply = self._call(
                commands.lock_acquire(self.state, self.id, _record(self._fields()), self.lease, takeover, local_dir=self.local_dir),
                "taking the site lock",
            )
            if reply.has("ACQUIRED"):
                self.acquired_epoch = reply.now
                self.paths = reply.tags["ACQUIRED"]
                self._held_until = start + self.lease
                return
            held = reply.records
            if not reply.has("BUSY") and not held:
                raise LockError(f"taking the site lock on {self.node.name}: unexpected answer {reply.tags}")
            expired = [r for r in held if r.expired]
            if held and len(expired) == len(held):
                # the holder's lease ran out (killed, or lost its host): take over, unless the
                # file changed since we read it (the script compares checksums)
                self.taken_over = [r for r in expired if r.checksum not in takeover] + self.taken_over
                takeover = [r.checksum for r in expired]
                continue
            if stop is not None and stop.is_set():
                raise Interrupted("interrupted while waiting for the site lock")
            if time.monotonic() >= deadline:
                live = next((r for r in held if not r.expired), None)
                if live is None:
                    raise LockHeld(f"the site lock's mutex on {self.node.name} stayed busy; try again")
                raise LockHeld(
                    f"site {self.state.site} is locked by another apply: {live.describe()}; "
                    + (f"waited {timeout:g} s (--lock-timeout). " if timeout else "")
                    + f"If that apply is dead, its lease expires by itself; to release it now: csync unlock {live.id} --force"
                )
            for r in held:
                if on_wait and r.checksum not in told:
                    told.add(r.checksum)
                    on_wait(r)
            pause = min(POLL_SECONDS, max(0.1, deadline - time.monotonic()))
            if stop is not None:
                stop.wait(pause)
            else:
                time.sleep(pause)

    # --- renew ---------------------------------------------------------------------------
    def renew(self) -> None:
        """Extend the lease now; marks the lock lost if another apply or an unlock took it."""
        with self._mutex:
            start = time.monotonic()
            reply = self._call(
                commands.lock_renew(self.state, self.id, _record(self._fields()), self.lease, local_dir=self.local_dir),
                "renewing the site lock",
            )
            if reply.has("LOST"):
                self.lost = f"the site lock {self.id} on {self.node.name} was removed or taken over by someone else"
            elif reply.has("RENEWED"):
                self._held_until = start + self.lease
                self.renewals += 1

    def set_plan_digest(self, digest: str) -> None:
        """Record the plan in the lock file (known only after planning under the lock)."""
        self.plan_digest = digest
        self.renew()

    def _renew_loop(self) -> None:
        interval = max(1.0, self.lease / 3)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LockError as e:
                # keep trying until the lease is gone: a host that hiccups is not a lost lock
                if time.monotonic() >= self._held_until:
                    self.lost = f"could not renew the site lock before its lease ran out: {e}"
                interval = max(1.0, self.lease / 10)
                continue
            interval = max(1.0, self.lease / 3)
            if self.lost:
                return

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="csync-lock-renewal", daemon=True)
        self._thread.start()

    def check(self) -> str | None:
        """Why the lock can no longer be trusted, or None while it is held."""
        if self.lost is None and self._thread is not None and time.monotonic() >= self._held_until:
            self.lost = "the site lock's lease ran out before it could be renewed"
        return self.lost

    # --- release -------------------------------------------------------------------------
    def release(self) -> list[str]:
        """Stop renewing and remove our lock file(s); returns the paths released."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=LOCK_COMMAND_TIMEOUT)
        with self._mutex:
            reply = self._call(commands.lock_release(self.state, self.id, local_dir=self.local_dir), "releasing the site lock")
        return reply.tags.get("RELEASED", [])


def session_runner(pool, host: Host) -> Runner:
    """Run lock scripts over the pool's connection to ``host`` (a transport.Pool)."""

    def run(script: str) -> CommandResult:
        return pool.connect(host).run(commands.SHELL, stdin=script.encode(), timeout=LOCK_COMMAND_TIMEOUT)

    return run


def lock_node(state: DesiredState, member_facts) -> Host:
    """The node that holds the site lock: the standalone master; else the member that runs
    the package (or would start it, as the planner chooses), else the preferred node, else
    the first declared member."""
    if not state.is_cluster:
        return state.master.host  # type: ignore[union-attr]
    node = decide_package(state, member_facts).node
    if node:
        return state.host(node)
    preferred = state.master.package.node  # type: ignore[union-attr]
    if preferred and any(m.name == preferred for m in state.members):
        return state.host(preferred)
    return state.members[0]


# --- unlock ------------------------------------------------------------------------------
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def find_locks(state: DesiredState, runners: dict[str, Runner], *, local_dir: str = commands.dsau.STANDALONE_CSYNC_STATE) -> tuple[list[LockRecord], dict[str, str]]:
    """Every lock file on the master hosts, and the hosts that could not be asked (why)."""
    records: list[LockRecord] = []
    errors: dict[str, str] = {}
    for name, run in runners.items():
        try:
            result = run(commands.lock_show(state, local_dir=local_dir).script)
            records += parse_reply(name, result, "reading the site lock").records
        except (TransportError, LockError) as e:
            errors[name] = getattr(e, "reason", None) or str(e)
    return records, errors


def unlock(state: DesiredState, lock_id: str, runners: dict[str, Runner], *, force: bool, local_dir: str = commands.dsau.STANDALONE_CSYNC_STATE) -> list[LockRecord]:
    """Remove the lock ``lock_id`` wherever it is held; without ``force`` only once its lease
    has expired. Returns the records removed."""
    if not _ID.match(lock_id):
        raise LockError(f"{lock_id!r} is not a csync lock id (a UUID as printed by apply, e.g. in 'locked by ...')")
    records, errors = find_locks(state, runners, local_dir=local_dir)
    mine = [r for r in records if r.id == lock_id]
    if not mine:
        others = ", ".join(f"{r.id} ({r.node})" for r in records) or "none"
        unasked = f"; could not ask {', '.join(f'{n} ({why})' for n, why in errors.items())}" if errors else ""
        raise LockError(f"no lock {lock_id} on the master hosts of site {state.site} (locks found: {others}){unasked}")
    live = [r for r in mine if not r.expired]
    if live and not force:
        raise LockHeld(
            f"{live[0].describe()}: its lease is live, so its apply may still be running; "
            f"wait for it, or if you are sure it is dead: csync unlock {lock_id} --force"
        )
    removed: list[LockRecord] = []
    for node in sorted({r.node for r in mine}):
        at_node = [r for r in mine if r.node == node]
        reply = parse_reply(node, runners[node](commands.lock_remove(state, [r.checksum for r in at_node], local_dir=local_dir).script), "removing the site lock")
        released = set(reply.tags.get("RELEASED", []))
        removed += [r for r in at_node if r.path in released]
        changed = [r for r in at_node if r.path not in released]
        if changed:
            raise LockError(f"lock {lock_id} at {node}:{changed[0].path} changed while unlocking (its apply renewed it: it is alive); nothing removed there")
    return removed
