"""What an apply reports as it goes (views and the journal listen), and how it is stopped."""

from __future__ import annotations

import threading

from reconciler.apply.journal import Journal
from reconciler.apply.lock import SiteLock
from reconciler.apply.report import ActionResult, ApplyReport, Inventory
from reconciler.plan.artefact import Action, Plan


class Events:
    """What an apply reports as it goes; every method may be called from worker threads
    (through `Fanout`, which serialises them)."""

    def lock_waiting(self, record) -> None: ...
    def lock_acquired(self, lock: SiteLock) -> None: ...
    def planned(self, plan: Plan, facts_seconds: float | None) -> None: ...
    def wave_started(self, number: int, total: int, actions: list[Action]) -> None: ...
    def action_started(self, action: Action) -> None: ...
    def action_finished(self, result: ActionResult) -> None: ...
    def wave_finished(self, number: int, results: list[ActionResult]) -> None: ...
    def notice(self, text: str) -> None: ...
    def inventory(self, inventory: Inventory) -> None: ...
    def converging(self) -> None: ...
    def finished(self, report: ApplyReport) -> None: ...


class Fanout(Events):
    """Several listeners as one; calls are serialised (worker threads report concurrently)."""

    def __init__(self, *listeners: Events):
        self.listeners = listeners
        self._lock = threading.RLock()

    def _emit(self, name: str, *args) -> None:
        with self._lock:
            for listener in self.listeners:
                getattr(listener, name)(*args)

    def lock_waiting(self, record) -> None:
        self._emit("lock_waiting", record)

    def lock_acquired(self, lock: SiteLock) -> None:
        self._emit("lock_acquired", lock)

    def planned(self, plan: Plan, facts_seconds: float | None) -> None:
        self._emit("planned", plan, facts_seconds)

    def wave_started(self, number: int, total: int, actions: list[Action]) -> None:
        self._emit("wave_started", number, total, actions)

    def action_started(self, action: Action) -> None:
        self._emit("action_started", action)

    def action_finished(self, result: ActionResult) -> None:
        self._emit("action_finished", result)

    def wave_finished(self, number: int, results: list[ActionResult]) -> None:
        self._emit("wave_finished", number, results)

    def notice(self, text: str) -> None:
        self._emit("notice", text)

    def inventory(self, inventory: Inventory) -> None:
        self._emit("inventory", inventory)

    def converging(self) -> None:
        self._emit("converging")

    def finished(self, report: ApplyReport) -> None:
        self._emit("finished", report)


class JournalEvents(Events):
    """Writes the run's events to its journal (fingerprints, never key material)."""

    def __init__(self, journal: Journal):
        self.journal = journal

    def action_started(self, action: Action) -> None:
        self.journal.record(
            "action-start",
            action=action.id,
            address=action.address,
            kind=action.kind,
            host=action.host,
            host_address=action.host_address,
            wave=action.wave,
            command=action.command,
        )

    def action_finished(self, result: ActionResult) -> None:
        a = result.action
        self.journal.record(
            "action-end",
            action=a.id,
            address=a.address,
            kind=a.kind,
            host=a.host,
            wave=result.wave,
            command=a.command,
            outcome=result.outcome,
            verified=result.verified or None,
            error=result.detail if result.outcome != "done" else None,
            seconds=result.seconds,
        )

    def notice(self, text: str) -> None:
        self.journal.record("notice", message=text)

    def inventory(self, inventory: Inventory) -> None:
        self.journal.record("inventory", node=inventory.node, path=inventory.path, addresses=inventory.addresses, error=inventory.error)


class StopFlag:
    """Set by SIGINT/SIGTERM: no new action starts; running host scripts finish."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self.signal_number: int | None = None

    def set(self, reason: str, signal_number: int | None = None) -> None:
        if not self._event.is_set():
            self.reason, self.signal_number = reason, signal_number
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)
