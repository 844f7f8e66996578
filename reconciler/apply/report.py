"""What an apply reports: each action's result, the inventory update, the whole run."""

from __future__ import annotations

import hashlib
import signal
from dataclasses import dataclass, field
from typing import Literal

from reconciler.plan.artefact import Action, Plan

Outcome = Literal["done", "failed", "skipped", "stale"]
OUTCOMES: tuple[Outcome, ...] = ("done", "failed", "skipped", "stale")


def plan_digest(plan: Plan) -> str:
    """The identity of a plan: sha256 of its canonical JSON."""
    return "sha256:" + hashlib.sha256(plan.to_json().encode()).hexdigest()


@dataclass(frozen=True)
class ActionResult:
    action: Action
    outcome: Outcome
    wave: int
    detail: str | None = None  # the error, what blocked it, or what changed since the plan
    verified: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Inventory:
    node: str | None
    path: str | None
    addresses: int | None = None
    error: str | None = None


@dataclass
class ApplyReport:
    plan: Plan
    results: list[ActionResult] = field(default_factory=list)
    final_plan: Plan | None = None
    interrupted: str | None = None
    signal_number: int | None = None
    cancelled: bool = False
    lock_problem: str | None = None
    inventory: Inventory | None = None
    seconds: float = 0.0
    round_trips: dict[str, int] = field(default_factory=dict)

    def of(self, outcome: Outcome) -> list[ActionResult]:
        return [r for r in self.results if r.outcome == outcome]

    def counts(self) -> dict[str, int]:
        return {o: len(self.of(o)) for o in OUTCOMES}

    @property
    def converged(self) -> bool:
        return self.final_plan is not None and self.final_plan.clean

    @property
    def succeeded(self) -> bool:
        return (
            self.converged
            and not self.interrupted
            and not self.cancelled
            and not self.lock_problem
            and all(r.outcome == "done" for r in self.results)
            and not self.plan.blocked
            and not self.plan.unknown
        )

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + (self.signal_number or signal.SIGINT)
        return 0 if self.succeeded else 1
