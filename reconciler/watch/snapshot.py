"""What one cycle saw, and what changed since the cycle before. Pure.

A `Snapshot` keeps, of a cycle's plan and facts, what the watch reports on: the drift (each
planned action, and each blocked finding: work csync would do and cannot), each host's
up/down, and the failover verdict. `changes` compares two snapshots and names each change,
one `Change` per line the watch logs. The first cycle is compared with nothing: everything
it sees that is not as desired is reported once, as appeared or lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.observe.facts import HostFacts
from reconciler.plan.artefact import Plan
from reconciler.watch.readiness import Readiness

# A host whose probe got an answer over SSH, even one csync cannot use (its probe program
# missing or of another version, an unusable answer), is up: it is the facts that are unknown.
ANSWERED = frozenset({"probe", "probe-program"})

DRIFT_APPEARED = "drift-appeared"
DRIFT_RESOLVED = "drift-resolved"
HOST_LOST = "host-lost"
HOST_BACK = "host-back"
READINESS_CHANGED = "failover-readiness-changed"


def host_up(facts: HostFacts) -> bool:
    return facts.reachable or facts.reason_kind in ANSWERED


@dataclass(frozen=True)
class Drift:
    kind: str  # the action's kind, or "blocked"
    address: str
    host: str | None
    reason: str


@dataclass(frozen=True)
class HostState:
    role: str
    up: bool
    reason: str | None = None
    reason_kind: str | None = None


@dataclass(frozen=True)
class Snapshot:
    drift: dict[str, Drift]
    hosts: dict[str, HostState]
    readiness: Readiness

    @classmethod
    def of(cls, plan: Plan, facts: Mapping[str, HostFacts], readiness: Readiness) -> Snapshot:
        drift = {a.id: Drift(a.kind, a.address, a.host, a.reason) for a in plan.actions}
        for f in plan.blocked:
            drift[f"blocked:{f.address}:{f.host or ''}"] = Drift("blocked", f.address, f.host, f.message)
        hosts = {n: HostState(f.role, host_up(f), f.reason, f.reason_kind) for n, f in facts.items()}
        return cls(drift, hosts, readiness)


@dataclass(frozen=True)
class Change:
    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    level: str = "info"


def changes(before: Snapshot | None, now: Snapshot) -> list[Change]:
    """Every change from ``before`` to ``now``: hosts lost and back, drift resolved and
    appeared (in plan order), then the failover verdict."""
    out: list[Change] = []
    old_hosts = before.hosts if before is not None else {}
    for name, h in now.hosts.items():
        was = old_hosts.get(name)
        if not h.up and (was is None or was.up):
            out.append(Change(HOST_LOST, {"host": name, "role": h.role, "reason": h.reason, "reason_kind": h.reason_kind}, "warning"))
        elif h.up and was is not None and not was.up:
            out.append(Change(HOST_BACK, {"host": name, "role": h.role}))
    old_drift = before.drift if before is not None else {}
    for key, d in old_drift.items():
        if key not in now.drift:
            out.append(Change(DRIFT_RESOLVED, {"id": key, "kind": d.kind, "address": d.address, "host": d.host}))
    for key, d in now.drift.items():
        if key not in old_drift:
            out.append(Change(DRIFT_APPEARED, {"id": key, "kind": d.kind, "address": d.address, "host": d.host, "reason": d.reason}, "warning"))
    if before is None or before.readiness.ready != now.readiness.ready:
        out.append(
            Change(
                READINESS_CHANGED,
                {"from": before.readiness.word if before is not None else None, "to": now.readiness.word, "reasons": list(now.readiness.reasons)},
                "info" if now.readiness.ready else "warning",
            )
        )
    return out
