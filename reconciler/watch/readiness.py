"""Is the site failover-ready now: yes, no, or unknown; from one cycle's facts. Pure.

The verdict is `csync trust`'s prediction (reconciler/trust/predict.py) of the site as it is
(not as a plan would leave it). It is unknown, rather than no, when a host did not answer or
the site holds something the desired state does not declare, unless something that did
answer already shows it is not ready (the package is not running, a member cannot take over,
a check is known to fail): a halted package is "no" even while a client is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.desired.model import DesiredState
from reconciler.observe.facts import HostFacts
from reconciler.trust.predict import TrustReport, trust_report


@dataclass(frozen=True)
class Readiness:
    ready: bool | None  # None: unknown
    reasons: tuple[str, ...] = ()

    @property
    def word(self) -> str:
        return "unknown" if self.ready is None else "yes" if self.ready else "no"

    @property
    def value(self) -> float:
        """The metric's value: 1, 0, or NaN for unknown."""
        return float("nan") if self.ready is None else 1.0 if self.ready else 0.0


def _known_failure(report: TrustReport, cfrun_counts: bool) -> bool:
    if report.server is None or any(t.can_take_over is False for t in report.takeover):
        return True
    if any(c.ok is False for c in report.cfagent.values()) or any(c.ok is False for row in report.cfagent_extra.values() for c in row.values()):
        return True
    return cfrun_counts and any(c.ok is False for row in report.cfrun.values() for c in row.values())


def readiness(state: DesiredState, facts: Mapping[str, HostFacts]) -> Readiness:
    report = trust_report(state, facts)
    reasons = tuple(f"unknown: {u}" for u in report.unsure) + report.reasons
    if report.failover_ready:
        return Readiness(True)
    if (report.unreachable or report.unsure) and not _known_failure(report, state.keys.cfrun == "all-members"):
        return Readiness(None, reasons)
    return Readiness(False, reasons)
