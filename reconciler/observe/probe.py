"""Probe: every host's facts in one round trip, in parallel.

One connection per host (bounded by `access.parallelism`), one command per host: the probe
script of reconciler/driver/probe.sh for the host's role. Hosts that cannot be probed come back
as facts with `reachable=False` and the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from reconciler.desired.model import DesiredState, Host, Platform
from reconciler.domain import dsau
from reconciler.driver import commands, probeprogram
from reconciler.driver.transport import CommandResult, Pool, TransportError, fan_out
from reconciler.observe.facts import HostFacts, ProbeProgram, Role, parse_probe, parse_program, unreachable


@dataclass
class SiteFacts:
    """The facts of every probed host, by name, and what probing them cost."""

    hosts: dict[str, HostFacts]
    seconds: float = 0.0
    commands_sent: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> HostFacts:
        return self.hosts[name]

    @property
    def unreachable(self) -> list[HostFacts]:
        return [f for f in self.hosts.values() if not f.reachable]


def roles(state: DesiredState) -> list[tuple[Host, Role]]:
    master_role: Role = "member" if state.is_cluster else "master"
    return [(h, master_role) for h in state.master_hosts] + [(c, "client") for c in state.clients]


# A host that answered, but whose probe reported a program failing (a file that went while it
# was read: cfagent or the dispatcher replacing an input), is probed once more, this long after.
RETRY_AFTER_SECONDS = 1.0


def probe_host(pool: Pool, state: DesiredState, host: Host, role: Role, shared: dict | None = None) -> HostFacts:
    """Probe one host over the pool's connection to it; never raises for host trouble. A probe
    whose answer says a program failed is taken again once: a second failure stands."""
    facts = _probe_once(pool, state, host, role, shared)
    if facts.reachable or facts.reason_kind != "probe":
        return facts
    time.sleep(RETRY_AFTER_SECONDS)
    return _probe_once(pool, state, host, role, shared)


def _probe_once(pool: Pool, state: DesiredState, host: Host, role: Role, shared: dict | None) -> HostFacts:
    start = time.monotonic()
    try:
        session = pool.connect(host)
        timeout, serve = state.access.command_timeout, pool.serve_probes
        if session.identity == "plan":
            request = probeprogram.probe_request(state, role, serve=serve)
            result = session.serve_request(request, timeout=timeout) if serve else session.run_request(request, timeout=timeout)
            refused = program_refusal(host, role, result, state.platform)
            if refused is not None:
                return refused
        else:
            script = commands.probe(state, role, serve=serve)
            result = session.serve_script(script, timeout=timeout) if serve else session.run_script(script, timeout=timeout, hold_stdin=True)
    except TransportError as e:
        return unreachable(host.name, host.address, role, e.reason, e.kind)
    except commands.UnsafeValue as e:
        return unreachable(host.name, host.address, role, str(e), "probe")
    facts = parse_probe(host.name, host.address, role, result.stdout, result.exit_code, result.stderr, shared=shared)
    return facts.model_copy(update={"probe_seconds": round(time.monotonic() - start, 4)})


def program_refusal(host: Host, role: Role, result: CommandResult, platform: Platform) -> HostFacts | None:
    """The facts of a host whose probe program did not run the probe: missing (the forced
    command not found), another version or the program of another platform (it answered its
    version line), or it refused the request. Its other facts are unknown; the program's are
    known (plan its install)."""
    where = dsau.PROBE_PROGRAM
    if result.exit_code == 127:
        return unreachable(
            host.name,
            host.address,
            role,
            f"the probe program {where} is not installed (the plan identity's "
            "forced command was not found); install it with csync bootstrap, or csync apply with the root identity",
            "probe-program",
        ).model_copy(update={"probe_program": ProbeProgram(kind="missing")})
    if result.exit_code == probeprogram.EXIT_OTHER_PROGRAM:
        try:
            found = parse_program(json.loads(result.stdout.decode("utf-8", "replace")).get("program"))
        except (ValueError, AttributeError):
            found = None
        if found is not None and found.version is not None:
            newer = found.version > probeprogram.PROGRAM_VERSION
            why = (
                f"its probe program is version {found.version}, newer than this csync's (version {probeprogram.PROGRAM_VERSION}): "
                "use the csync that installed it"
                if newer
                else f"its probe program is version {found.version} ({found.digest}), not this csync's (version "
                f"{probeprogram.PROGRAM_VERSION}, {probeprogram.program_digest(platform)}, for this site's platform): its facts are not read until it is upgraded"
            )
            return unreachable(host.name, host.address, role, why, "probe-program").model_copy(update={"probe_program": found})
    if result.exit_code == probeprogram.EXIT_REFUSED:
        return unreachable(host.name, host.address, role, f"the probe program refused the request: {result.stderr_text(200)}", "probe-program")
    return None


def probe_site(
    state: DesiredState,
    pool: Pool,
    *,
    only: Iterable[str] | None = None,
    on_done: Callable[[HostFacts], None] | None = None,
    keep_open: bool = True,
) -> SiteFacts:
    """Probe every declared host (or only the named ones) in parallel. Without ``keep_open``
    each host's connection is closed once its probe has answered (a run that reads the
    hosts once: at 2,000 hosts, 2,000 idle connections were most of a plan's memory)."""
    wanted = set(only) if only is not None else None
    targets = [(h, r) for h, r in roles(state) if wanted is None or h.name in wanted]
    role_of = {h.name: r for h, r in targets}
    start = time.monotonic()
    shared: dict = {}  # equal key files parsed once and kept once (facts.parse_key_listing)

    def probe(h: Host) -> HostFacts:
        facts = probe_host(pool, state, h, role_of[h.name], shared)
        session = pool.sessions.get(h.name)
        if not keep_open and session is not None:
            session.close()
        return facts

    results = fan_out(
        [h for h, _ in targets],
        probe,
        parallelism=state.access.parallelism,
        on_done=(lambda _h, f: on_done(f)) if on_done else None,
        workers=pool.workers,
    )
    hosts = {h.name: results[h.name] for h, _ in targets}  # declared order, not completion order
    return SiteFacts(
        hosts=hosts,
        seconds=time.monotonic() - start,
        commands_sent={name: s.commands_sent for name, s in pool.sessions.items()},
    )
