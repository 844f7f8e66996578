"""SSH transport on fabric: one connection per host, opened in parallel, reused, closed.

Why it looks the way it does:
- Host keys are verified against the configured known_hosts by default. fabric accepts
  unknown keys (AutoAddPolicy) and loads none unless told: we replace the policy and feed
  each client the entries for its own host from one parse of the file.
- The socket is ours, with TCP_NODELAY: paramiko never sets it, and Nagle plus delayed ACK
  costs about 40 ms per round trip.
- fabric opens and owns the connection; commands go over a raw paramiko session channel
  (3-5 ms) rather than fabric's Runner (15-20 ms with its watcher threads), since csync
  never needs a pty or stdin forwarding.
- Failures to reach a host are values (`HostUnreachable` with a reason), never exceptions
  that end a run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import paramiko
from fabric import Config, Connection

from reconciler.desired.model import Access, Host
from reconciler.driver.commands import SHELL, RemoteCommand
from reconciler.driver.probeprogram import ProbeRequest

Identity = Literal["root", "plan"]

# paramiko logs a traceback for every failed handshake from its transport thread; csync
# reports each failure itself, once, as a fact.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

# A probe of a member with a few hundred clients is a few hundred KB; anything near this is
# a hostile or broken host, not data.
MAX_OUTPUT_BYTES = 64 * 1024 * 1024

# paramiko's transport thread reads its socket with a 0.1 s timeout and wakes on each one
# (to look for keepalives and a close) whether or not anything arrives: ten wakeups a second
# per open connection, each taking the GIL. A run keeps one connection per host open, so at
# 2,000 hosts that was 20,000 wakeups a second, a third of a core (0.09 CPU s a second for
# 500 idle connections here). Once a connection is open csync needs neither (no keepalive; a
# close ends the thread through its socket), so its socket's timeout becomes this.
IDLE_WAKE_SECONDS = 1.0


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def stderr_text(self, limit: int = 500) -> str:
        return self.stderr.decode("utf-8", "replace").strip()[:limit]


class TransportError(Exception):
    """A host could not be reached or a command could not complete on it."""

    def __init__(self, reason: str, *, kind: str = "error"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # unreachable | timeout | host-key | auth | output | error


class KnownHosts:
    """One parse of a known_hosts file, shared by every connection of a run, indexed by
    host name.

    paramiko's HostKeys compares a name with every entry, on lookup and on load (each line
    is checked against the lines before it): quadratic. At 2,000 hosts one load took
    seconds of CPU, and a lookup per connection as much again. Lines are parsed as paramiko
    parses them (HostKeyEntry); plain names go in a dict, hashed ones (``|1|salt|hash``)
    are matched as paramiko does, by hashing the name with each one's salt. The first key of
    a type for a name wins, as with paramiko's lookup."""

    def __init__(self, path: Path, policy: str):
        self.path = path
        self.policy = policy
        self._lock = threading.Lock()
        self._by_name: dict[str, dict[str, paramiko.PKey]] = {}
        self._hashed: list[tuple[str, paramiko.PKey]] = []
        if path.exists():
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        line = line.strip()
                        if not line or line.startswith("#"):
                            continue
                        try:
                            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, lineno)
                        except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey):
                            continue  # a line that is no key (paramiko's own load raised InvalidHostKey)
                        if entry is not None:
                            for name in entry.hostnames:
                                self._add(name, entry.key)
            except OSError as e:
                raise TransportError(f"cannot read known_hosts {path}: {e}", kind="host-key") from e

    def _add(self, name: str, key: paramiko.PKey) -> None:
        if name.startswith("|1|"):
            self._hashed.append((name, key))
        else:
            self._by_name.setdefault(name, {}).setdefault(key.get_name(), key)

    @staticmethod
    def lookup_name(address: str, port: int) -> str:
        return address if port == 22 else f"[{address}]:{port}"

    def entries_for(self, name: str) -> dict[str, paramiko.PKey]:
        with self._lock:
            found = dict(self._by_name.get(name, {}))
            for hashed, key in self._hashed:
                if key.get_name() not in found and paramiko.HostKeys.hash_host(name, hashed) == hashed:
                    found[key.get_name()] = key
            return found

    def record(self, name: str, key: paramiko.PKey) -> None:
        """Append a first-contact key (host_key_policy: accept-new)."""
        with self._lock:
            self._add(name, key)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="ascii") as f:
                f.write(f"{name} {key.get_name()} {key.get_base64()}\n")


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Like OpenSSH's StrictHostKeyChecking=accept-new: unknown keys are recorded.

    A *changed* key never reaches a policy: paramiko raises BadHostKeyException first.
    """

    def __init__(self, known_hosts: KnownHosts):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        self.known_hosts.record(hostname, key)


class _RejectPolicy(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        raise TransportError(
            f"unknown host key for {hostname} ({key.get_name()} {key.fingerprint}); add it to known_hosts, or allow first contact with --accept-new-host-keys",
            kind="host-key",
        )


# probe.sh's served mode (SERVE=1): its first line once it is ready for requests.
SERVE_READY = b"%%csync-ready\n"
# ...and the line that takes each request
SERVE_TAKEN = b"%%csync-got\n"


@dataclass
class _Server:
    """A probe server on one channel of a session: the digest of what started it, the requests
    it was sent."""

    key: bytes
    channel: paramiko.Channel
    requests: int = 0


@dataclass
class Session:
    """An open connection to one host; counts the commands sent over it."""

    host: Host
    connection: Connection
    commands_sent: int = 0
    closed: bool = False
    # Opening a channel is one protocol round trip: a host that does not answer it within
    # the connect timeout is hung, whatever the command's own (longer) timeout.
    open_timeout: float | None = None
    # Logged in with the plan identity: sshd runs the probe program whatever is asked, so
    # only probe requests are sent (run_request); scripts are refused here, before sending.
    identity: Identity = "root"
    # the probe server (serve_script, serve_request), kept open between requests
    _server: _Server | None = field(default=None, init=False, repr=False)
    _serving: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float, hold_stdin: bool = False) -> CommandResult:
        """Run one shell command string (built by reconciler.driver.commands) and collect output.

        With ``hold_stdin`` the command's standard input stays open after ``stdin`` until the
        command has ended: closing the channel (the timeout, or this process dying) is then
        what tells a command that watches its input (the probe, probe.sh) to end itself."""
        start = time.monotonic()
        channel = self._open_channel(timeout)
        self.commands_sent += 1
        try:
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            if not hold_stdin:
                channel.shutdown_write()
            out, err = _drain(channel, deadline=start + timeout)
            status = channel.recv_exit_status()
        except TransportError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise TransportError(f"connection lost during a command: {e or type(e).__name__}", kind="unreachable") from e
        finally:
            channel.close()
        return CommandResult(status, out, err, time.monotonic() - start)

    def run_script(self, command: RemoteCommand, *, timeout: float, hold_stdin: bool = False) -> CommandResult:
        """The one way csync runs a script on a host: `SHELL` with the script on stdin (held
        open until the script ends with ``hold_stdin``: the probe's, which watches it)."""
        if self.identity == "plan":
            raise TransportError(
                f"{command.display}: the plan identity runs csync's probe only; this needs the root identity (access.identity_file)", kind="auth"
            )
        return self.run(SHELL, stdin=command.script.encode(), timeout=timeout, hold_stdin=hold_stdin)

    def run_request(self, request: ProbeRequest, *, timeout: float) -> CommandResult:
        """A probe through the plan identity's forced command: the request line is the exec
        command (SSH_ORIGINAL_COMMAND for the probe program); nothing on stdin, which stays
        open until the probe ends (the probe ends itself when it closes)."""
        return self.run(request.line, timeout=timeout, hold_stdin=True)

    def serve_script(self, command: RemoteCommand, *, timeout: float) -> CommandResult:
        """One answer of the probe server that ``command`` starts (probe.sh with SERVE=1, on
        stdin to `SHELL`), started on this session the first time and again when the script
        changed (a reload changed its parameters)."""
        if self.identity == "plan":
            raise TransportError(
                f"{command.display}: the plan identity runs csync's probe only; this needs the root identity (access.identity_file)", kind="auth"
            )
        return self._serve(SHELL, command.script.encode(), timeout=timeout)

    def serve_request(self, request: ProbeRequest, *, timeout: float) -> CommandResult:
        """One answer of the probe program's server (a request with mode=serve)."""
        return self._serve(request.line, b"", timeout=timeout)

    def _serve(self, command: str, script: bytes, *, timeout: float) -> CommandResult:
        """A probe from this session's probe server (probe.sh, SERVE=1): a warm cycle of
        csync watch writes one request line on a channel that stays open, where a probe
        otherwise opens a channel, starts a shell and sends the script (half a warm cycle's
        cost at 200 hosts). A server that ends before it is ready (the probe program of
        another version answers its version line, or refuses) answers as that command would;
        one that does not answer a request in time, or ends, is closed: closing its input is
        what ends whatever it runs on the host (probe.sh's forwarder)."""
        start = time.monotonic()
        deadline = start + timeout
        key = hashlib.sha256(command.encode() + b"\0" + script).digest()
        with self._serving:
            server = self._server
            if server is not None and (server.key != key or server.channel.closed):
                self._stop_server()
                server = None
            try:
                if server is None:
                    channel = self._open_channel(timeout)
                    try:
                        channel.exec_command(command)
                        if script:
                            channel.sendall(script)
                        out, err = _drain(channel, deadline=deadline, until=lambda o, _e: o.startswith(SERVE_READY))
                    except BaseException:
                        channel.close()
                        raise
                    if not out.startswith(SERVE_READY):  # it ended without serving: its answer is the command's
                        status = channel.recv_exit_status()
                        channel.close()
                        self.commands_sent += 1
                        return CommandResult(status, out, err, time.monotonic() - start)
                    server = self._server = _Server(key, channel)
                server.requests += 1
                self.commands_sent += 1
                n = server.requests
                end_out = re.compile(rb"\n%%csync-end " + str(n).encode() + rb" ([0-9]{1,3})\n")
                end_err = b"\n%%csync-end " + str(n).encode() + b"\n"
                server.channel.sendall(f"probe {n}\n".encode())
                # the server takes the request at once: a host that does not is hung (as when a
                # channel does not open in time), whatever the probe's own timeout
                taking = min(timeout, self.open_timeout) if self.open_timeout else timeout
                answered = lambda o, e: end_err in e and end_out.search(o) is not None
                got, got_err = bytearray(), bytearray()  # the two reads below fill the same buffers
                try:
                    _drain(server.channel, deadline=time.monotonic() + taking, until=lambda o, _e: o.startswith(SERVE_TAKEN), out=got, err=got_err)
                except TransportError as e:
                    if e.kind != "timeout":
                        raise
                    raise TransportError(f"the probe server did not take a request within {taking:g}s (host hung or overloaded)", kind="timeout") from e
                if got.startswith(SERVE_TAKEN) and not answered(got, got_err):
                    _drain(server.channel, deadline=deadline, until=answered, out=got, err=got_err)
                out, err = bytes(got), bytes(got_err)
                found = end_out.search(out)
                if found is None or end_err not in err:
                    status = server.channel.exit_status if server.channel.exit_status_ready() else -1
                    self._stop_server()
                    if status == -1:
                        raise TransportError("connection lost during a command", kind="unreachable")
                    raise TransportError(f"the probe server ended (exit {status}): {err.decode('utf-8', 'replace')[:300]}", kind="error")
                return CommandResult(int(found[1]), out[len(SERVE_TAKEN) : found.start()], err[: err.index(end_err)], time.monotonic() - start)
            except TransportError:
                self._stop_server()
                raise
            except (paramiko.SSHException, OSError, EOFError) as e:
                self._stop_server()
                raise TransportError(f"connection lost during a command: {e or type(e).__name__}", kind="unreachable") from e

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.channel.close()

    def _open_channel(self, timeout: float) -> paramiko.Channel:
        """A new session channel; opening one is a protocol round trip, bounded by
        ``open_timeout`` (a host that does not answer it is hung)."""
        transport = self.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError("connection lost", kind="unreachable")
        opening = min(timeout, self.open_timeout) if self.open_timeout else timeout
        try:
            return transport.open_session(timeout=opening)
        except (paramiko.SSHException, OSError, EOFError) as e:
            if "Timeout" in str(e):
                raise TransportError(f"cannot open a session: timed out after {opening:g}s without an answer (host hung or overloaded)", kind="timeout") from e
            raise TransportError(f"cannot open a session: {e or type(e).__name__}", kind="unreachable") from e

    @property
    def alive(self) -> bool:
        """Open, and its SSH transport still up: a host that restarted or dropped the
        connection leaves a session that is not (`csync watch` reconnects it)."""
        if self.closed:
            return False
        transport = self.connection.client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._stop_server()
            self.connection.close()


def _drain(
    channel: paramiko.Channel,
    *,
    deadline: float,
    until: Callable[[bytearray, bytearray], bool] | None = None,
    out: bytearray | None = None,
    err: bytearray | None = None,
) -> tuple[bytes, bytes]:
    """The channel's output and error output, up to the end of the command, or until
    ``until(out, err)`` holds (a served probe's marks); appended to ``out`` and ``err`` when
    given (a read that goes on from an earlier one)."""
    out = bytearray() if out is None else out
    err = bytearray() if err is None else err
    size = len(out) + len(err)
    # poll, not select: with a connection per host open, a channel's descriptor passes 1024
    # past about a thousand hosts, and select() refuses it ("filedescriptor out of range",
    # seen at 2,000 hosts)
    poller = select.poll()
    poller.register(channel.fileno(), select.POLLIN)
    while True:
        got = False
        while channel.recv_ready():
            chunk = channel.recv(1 << 16)
            out += chunk
            size += len(chunk)
            got = True
        while channel.recv_stderr_ready():
            chunk = channel.recv_stderr(1 << 16)
            err += chunk
            size += len(chunk)
            got = True
        if size > MAX_OUTPUT_BYTES:
            raise TransportError(f"output exceeds {MAX_OUTPUT_BYTES} bytes; refusing it", kind="output")
        if got and until is not None and until(out, err):
            break
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            # exit status can arrive before the last data is read: one more non-blocking pass
            if channel.eof_received:
                break
            if channel.closed:
                # closed under us (the connection dropped, or the session was closed to stop a
                # run) without an end of data: nothing more will come, whatever the timeout
                if channel.exit_status == -1:
                    raise TransportError("connection lost during a command", kind="unreachable")
                break
        if got:
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportError("command timed out", kind="timeout")
        if channel.eof_received:
            # paramiko leaves the channel's pipe readable for good once EOF has come, so
            # poll would return at once until the exit status arrives: wait for that itself
            # (set on a close too). The spin cost up to 160 CPU s in a probe of 2,000 hosts
            # on a loaded machine, where a shell's exit lags its output.
            channel.status_event.wait(min(remaining, 1.0))
        else:
            poller.poll(min(remaining, 1.0) * 1000)
    return bytes(out), bytes(err)


@dataclass
class Pool:
    """Connections to the hosts of one run, opened in parallel and closed together."""

    access: Access
    accept_new_host_keys: bool = False
    sessions: dict[str, Session] = field(default_factory=dict)
    # root: access.identity_file, scripts on stdin; plan: access.plan_identity_file, probe
    # requests to the forced command only (docs/SECURITY.md)
    identity: Identity = "root"
    # Threads kept for the probes of a long-lived pool (csync watch): a fan-out that starts its
    # threads anew pays for starting them every time (tens of ms on a loaded machine). None:
    # each probe of the site starts and ends its own.
    workers: ThreadPoolExecutor | None = None
    # Probe through each session's probe server (Session.serve_script, serve_request) rather
    # than a command per probe: for a pool that probes its hosts again and again (csync watch).
    serve_probes: bool = False

    def __post_init__(self) -> None:
        policy = "accept-new" if self.accept_new_host_keys else self.access.host_key_policy
        self._known_hosts: dict[str, KnownHosts] = {}
        self._known_lock = threading.Lock()
        self._policy = policy
        self._keys: dict[str, paramiko.PKey] = {}
        self._keys_lock = threading.Lock()
        self._config = Config(lazy=True, overrides={"load_ssh_configs": False})
        self._config_lock = threading.Lock()

    def _known(self, path: str) -> KnownHosts:
        # under the lock: every thread of the fan-out asks at once at the start, and each
        # one that found it missing loaded the whole file again (64 loads of a 2,000-line
        # known_hosts, 130-160 CPU s of a 2,000-host probe)
        with self._known_lock:
            if path not in self._known_hosts:
                self._known_hosts[path] = KnownHosts(Path(path), self._policy)
            return self._known_hosts[path]

    def _identity(self, path: str) -> paramiko.PKey:
        with self._keys_lock:
            if path not in self._keys:
                try:
                    self._keys[path] = paramiko.PKey.from_path(path)
                except FileNotFoundError as e:
                    raise TransportError(f"identity file {path} does not exist", kind="auth") from e
                except (paramiko.SSHException, OSError, ValueError) as e:
                    raise TransportError(f"cannot load identity file {path}: {e}", kind="auth") from e
            return self._keys[path]

    def connect(self, host: Host) -> Session:
        """Open (or reuse) the connection to ``host``; raises TransportError."""
        if host.name in self.sessions and not self.sessions[host.name].closed:
            return self.sessions[host.name]
        settings = self.access.for_host(host.name)
        known = self._known(os.path.expanduser(settings.known_hosts))
        key_file = settings.identity_file if self.identity == "root" else settings.plan_identity_file
        if key_file is None:
            raise TransportError(f"no plan identity for {host.name} (access.plan_identity_file)", kind="auth")
        pkey = self._identity(os.path.expanduser(key_file))
        name = KnownHosts.lookup_name(host.address, settings.port)
        try:
            sock = socket.create_connection((host.address, settings.port), timeout=settings.connect_timeout)
        except TimeoutError as e:
            raise TransportError(f"connect to {host.address}:{settings.port} timed out after {settings.connect_timeout:g}s", kind="timeout") from e
        except OSError as e:
            raise TransportError(f"cannot connect to {host.address}:{settings.port}: {e.strerror or e}", kind="unreachable") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Each connection gets its own copy of the configuration: fabric keeps the Config it is
        # given and reads it lazily while opening, so one shared between threads was read by
        # one while another changed it ("No attribute or config key found for
        # 'authentication'", issue #19). Cloning reads the shared one, under the lock.
        with self._config_lock:
            config = self._config.clone()
        conn = Connection(
            host=host.address,
            user=settings.user,
            port=settings.port,
            config=config,
            connect_timeout=settings.connect_timeout,
            connect_kwargs={
                "pkey": pkey,
                "look_for_keys": False,
                "allow_agent": False,
                "sock": sock,
                "banner_timeout": settings.connect_timeout,
                "auth_timeout": settings.connect_timeout,
            },
        )
        client = conn.client
        for keytype, key in known.entries_for(name).items():
            client.get_host_keys().add(name, keytype, key)
        client.set_missing_host_key_policy(_AcceptNewPolicy(known) if known.policy == "accept-new" else _RejectPolicy())
        started = time.monotonic()
        try:
            conn.open()
        except TransportError:
            sock.close()
            raise
        except paramiko.BadHostKeyException as e:
            sock.close()
            raise TransportError(
                f"host key for {name} has CHANGED (got {e.key.get_name()} {e.key.fingerprint}, "
                f"known_hosts has {e.expected_key.fingerprint}); possible man-in-the-middle: "
                f"verify the host, then fix {known.path}",
                kind="host-key",
            ) from e
        except paramiko.AuthenticationException as e:
            sock.close()
            if self.identity == "plan":
                raise TransportError(
                    f"authentication as {settings.user} with the plan identity refused: {e} (is the plan key "
                    "authorized there, with its forced command? csync bootstrap --authorize)",
                    kind="auth",
                ) from e
            raise TransportError(f"authentication as {settings.user} refused: {e}", kind="auth") from e
        except (paramiko.SSHException, OSError, EOFError) as e:
            sock.close()
            text = str(e) or type(e).__name__
            if time.monotonic() - started >= settings.connect_timeout * 0.9 or isinstance(e, TimeoutError):
                raise TransportError(f"no SSH answer within {settings.connect_timeout:g}s (host hung or overloaded)", kind="timeout") from e
            raise TransportError(f"ssh handshake failed: {text}", kind="unreachable") from e
        sock.settimeout(IDLE_WAKE_SECONDS)  # the handshake is done: see IDLE_WAKE_SECONDS
        session = Session(host=host, connection=conn, open_timeout=settings.connect_timeout, identity=self.identity)
        self.sessions[host.name] = session
        return session

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


T = TypeVar("T")


def fan_out(
    hosts: Iterable[Host],
    work: Callable[[Host], T],
    *,
    parallelism: int,
    on_done: Callable[[Host, T], None] | None = None,
    workers: ThreadPoolExecutor | None = None,
) -> dict[str, T]:
    """Run ``work(host)`` for every host on a bounded thread pool; results by host name.
    ``workers``: threads of the caller's to run on (their number is the bound), else a pool
    of ``parallelism`` threads made for this call.

    ``work`` must not raise for expected failures (it returns them as values); anything it
    raises is a bug and propagates.
    """
    hosts = list(hosts)
    results: dict[str, T] = {}
    if not hosts:
        return results
    if workers is not None:
        _collect(workers, hosts, work, results, on_done)
        return results
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(hosts))), thread_name_prefix="csync-ssh") as ex:
        _collect(ex, hosts, work, results, on_done)
    return results


def _collect(ex: ThreadPoolExecutor, hosts: list[Host], work: Callable[[Host], T], results: dict[str, T], on_done: Callable[[Host, T], None] | None) -> None:
    futures = {ex.submit(work, h): h for h in hosts}
    for fut in as_completed(futures):
        host = futures[fut]
        results[host.name] = fut.result()
        if on_done:
            on_done(host, results[host.name])
