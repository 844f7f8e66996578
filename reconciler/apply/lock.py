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
from typing import Protocol

from reconciler import __version__
from reconciler.desired.model import DesiredState, Host
from reconciler.domain import dsau
from reconciler.domain.package import decide_package
from reconciler.driver import commands, sitestate
from reconciler.driver.sitestate import LockRecord, LockReply, parse_reply
from reconciler.driver.transport import CommandResult, TransportError
from reconciler.errors import CsyncError, LockError, LockHeld

LEASE_ENV = "CSYNC_LOCK_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 120
DEFAULT_LOCK_TIMEOUT = 60.0
MIN_LEASE_SECONDS = 3
LOCK_COMMAND_TIMEOUT = 90.0  # a lock script may wait up to a minute for the node's mutex
POLL_SECONDS = 2.0

Runner = Callable[[commands.RemoteCommand], CommandResult]


class StopSignal(Protocol):
    """What `acquire` waits on: a threading.Event, or apply's StopFlag."""

    def is_set(self) -> bool: ...
    def wait(self, seconds: float) -> bool: ...


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
        keys: tuple[str, ...] = (
            "GITHUB_REPOSITORY",
            "GITHUB_RUN_ID",
            "GITHUB_RUN_ATTEMPT",
            "GITHUB_JOB",
            "GITHUB_WORKFLOW",
            "GITHUB_SHA",
            "GITHUB_REF",
            "GITHUB_EVENT_NAME",
            "GITHUB_ACTOR",
        )
        ident = {"system": "github", **{k.lower().removeprefix("github_"): env[k] for k in keys if env.get(k)}}
        if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
            ident["url"] = f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        return ident
    if env.get("GITLAB_CI") or env.get("CI_JOB_ID"):
        keys = ("CI_PROJECT_PATH", "CI_PIPELINE_ID", "CI_JOB_ID", "CI_JOB_NAME", "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME", "CI_PIPELINE_SOURCE", "CI_JOB_URL")
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
        local_dir: str = dsau.STANDALONE_CSYNC_STATE,
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
            fields["acquired_at"] = sitestate.iso_time(self.acquired_epoch)
        return fields

    def _call(self, command: commands.RemoteCommand, what: str) -> LockReply:
        try:
            result = self.run(command)
        except TransportError as e:
            raise LockError(f"{what} on {self.node.name} ({self.node.address}): {e.reason}") from None
        return parse_reply(self.node.name, result, what)

    # --- acquire -------------------------------------------------------------------------
    def acquire(self, timeout: float, *, stop: StopSignal | None = None, on_wait: Callable[[LockRecord], None] | None = None) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for another apply to release it;
        raises LockHeld naming the holder. Expired leases are taken over."""
        deadline = time.monotonic() + timeout
        takeover: list[str] = []
        told: set[str] = set()
        while True:
            start = time.monotonic()
            reply = self._call(
                sitestate.lock_acquire(self.state, self.id, _record(self._fields()), self.lease, takeover, local_dir=self.local_dir),
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
                sitestate.lock_renew(self.state, self.id, _record(self._fields()), self.lease, local_dir=self.local_dir),
                "renewing the site lock",
            )
            if reply.has("LOST"):
                self.lost = f"the site lock {self.id} on {self.node.name} was removed or taken over by someone else"
            elif reply.has("RENEWED"):
                self._held_until = start + self.lease

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
            reply = self._call(sitestate.lock_release(self.state, self.id, local_dir=self.local_dir), "releasing the site lock")
        return reply.tags.get("RELEASED", [])


def session_runner(pool, host: Host) -> Runner:
    """Run lock scripts over the pool's connection to ``host`` (a transport.Pool)."""

    def run(command: commands.RemoteCommand) -> CommandResult:
        return pool.connect(host).run_script(command, timeout=LOCK_COMMAND_TIMEOUT)

    return run


def lock_node(state: DesiredState, member_facts) -> Host:
    """The node that holds the site lock: the standalone master; else the member that runs
    the package (or would start it, as the planner chooses), else the preferred node, else
    the first declared member."""
    if not state.is_cluster:
        return state.standalone_host
    node = decide_package(state, member_facts).node
    if node:
        return state.host(node)
    preferred = state.package.node
    if preferred and any(m.name == preferred for m in state.members):
        return state.host(preferred)
    return state.members[0]


# --- unlock ------------------------------------------------------------------------------
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def find_locks(state: DesiredState, runners: dict[str, Runner], *, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> tuple[list[LockRecord], dict[str, str]]:
    """Every lock file on the master hosts, and the hosts that could not be asked (why)."""
    records: list[LockRecord] = []
    errors: dict[str, str] = {}
    for name, run in runners.items():
        try:
            result = run(sitestate.lock_show(state, local_dir=local_dir))
            records += parse_reply(name, result, "reading the site lock").records
        except (TransportError, LockError) as e:
            errors[name] = getattr(e, "reason", None) or str(e)
    return records, errors


def unlock(state: DesiredState, lock_id: str, runners: dict[str, Runner], *, force: bool, local_dir: str = dsau.STANDALONE_CSYNC_STATE) -> list[LockRecord]:
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
        reply = parse_reply(node, runners[node](sitestate.lock_remove(state, [r.checksum for r in at_node], local_dir=local_dir)), "removing the site lock")
        released = set(reply.tags.get("RELEASED", []))
        removed += [r for r in at_node if r.path in released]
        changed = [r for r in at_node if r.path not in released]
        if changed:
            raise LockError(f"lock {lock_id} at {node}:{changed[0].path} changed while unlocking (its apply renewed it: it is alive); nothing removed there")
    return removed
