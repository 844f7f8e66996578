"""The plan: a versioned, self-contained, JSON-serialisable artefact.

A plan is data. It carries, for every action, where it runs, the exact command, why, what
it depends on, the facts it was planned from (`precondition`, and their `facts_fingerprint`)
and the state it must leave (`expected`), so `apply` can re-check each action on its host
before running it and verify it afterwards. The same desired state and facts always give
the byte-identical plan: everything is sorted and there is no timestamp.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from reconciler import __version__
from reconciler.domain.base import Frozen
from reconciler.domain.preview import Preview
from reconciler.errors import InvalidInput, StalePlan
from reconciler.plan.kinds import KINDS, spec_of

# The kinds csync knows, as a type (validated by pydantic's core): their names come from
# reconciler/plan/kinds.py.
ActionKind = Literal.__getitem__(tuple(KINDS))

FORMAT_VERSION = 1


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(data: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(data).encode()).hexdigest()[:32]


class Action(Frozen):
    address: str = Field(description="the resource this action changes, e.g. client.web1.key[root-10.0.0.1.pub]")
    kind: ActionKind = Field(description="one of the kinds of reconciler/plan/kinds.py")  # type: ignore[valid-type]
    host: str = Field(description="name of the host the action runs on")
    host_address: str
    command: str = Field(description="the command, as shown to the user")
    reason: str = Field(description="the fact that differs from the desired state")
    depends_on: tuple[str, ...] = ()
    wave: int = 0
    params: dict[str, Any] = Field(default_factory=dict, description="typed inputs of the command")
    precondition: dict[str, Any] = Field(default_factory=dict, description="facts the action was planned from")
    facts_fingerprint: str = ""
    expected: dict[str, Any] = Field(default_factory=dict, description="the state the action must leave")
    replaces: bool = False

    @property
    def id(self) -> str:
        """Unique within a plan: a resource may need two actions (start, then enable)."""
        return f"{self.kind}:{self.address}"


class Finding(Frozen):
    """Something the plan cannot change: blocked work, unknown resources, notices."""

    address: str
    host: str | None = None
    message: str


class Plan(Frozen):
    format_version: int = FORMAT_VERSION
    tool_version: str = __version__
    site: str
    desired_state_digest: str
    git_commit: str | None = None
    cluster_key: str | None = Field(None, description="fingerprint of the cluster (or master) key")
    cluster_key_source: str | None = None
    cluster_key_inferred: bool = Field(
        False, description="read from the members' own keys: apply confirms it on the package filesystem after starting the package"
    )
    package_node: str | None = Field(None, description="the node that runs (or will run) the package")
    actions: tuple[Action, ...] = ()
    blocked: tuple[Finding, ...] = ()
    unknown: tuple[Finding, ...] = ()
    notices: tuple[Finding, ...] = ()
    cluster_operations: int = Field(0, description="actions that start, halt or reconfigure the package, or dispatch a member")
    previews: tuple[Preview, ...] = Field((), description="Serviceguard's -t preview of each cluster operation (reconciler/domain/preview.py)")
    failover_ready_after: bool | None = None
    failover_notes: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def clean(self) -> bool:
        """Nothing to do and nothing blocked or unknown: the site is converged."""
        return not (self.actions or self.blocked or self.unknown)

    def waves(self) -> list[list[Action]]:
        out: dict[int, list[Action]] = {}
        for a in self.actions:
            out.setdefault(a.wave, []).append(a)
        return [out[w] for w in sorted(out)]

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for a in self.actions:
            key = "replace" if a.replaces else a.kind
            c[key] = c.get(key, 0) + 1
        return c

    def summary(self) -> str:
        by: dict[str, int] = {}
        for a in self.actions:
            what = "replace" if a.replaces else spec_of(a.kind).summary
            by[what] = by.get(what, 0) + 1
        parts = [
            f"{by.get('start', 0)} to start/dispatch",
            f"{by.get('add', 0)} keys to add",
            f"{by.get('replace', 0)} to replace",
            f"{by.get('remove', 0)} to remove",
        ]
        if by.get("halt"):
            parts.insert(1, f"{by['halt']} to halt")
        if by.get("regenerate"):
            parts.append("key regeneration")
        if by.get("program"):
            parts.append(f"{by['program']} probe program(s) to install")
        text = "Plan: " + ", ".join(parts) + "."
        if self.cluster_operations:
            text += f" {self.cluster_operations} cluster operation(s)."
        if self.blocked:
            text += f" {len(self.blocked)} blocked."
        if self.unknown:
            text += f" {len(self.unknown)} unknown."
        return text

    def cluster_actions(self) -> list[Action]:
        """The cluster operations of the plan (`csync apply --auto-approve` needs --allow-cluster-ops)."""
        return [a for a in self.actions if spec_of(a.kind).cluster_op]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "plan file") -> Plan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{source}:{e.lineno}:{e.colno}: not a csync plan: {e.msg}") from None
        if not isinstance(data, dict) or "format_version" not in data:
            raise InvalidInput(f"{source}: not a csync plan (no format_version)")
        if data["format_version"] != FORMAT_VERSION:
            raise StalePlan(
                f"{source}: plan format {data['format_version']!r} is not understood by csync {__version__} "
                f"(it reads format {FORMAT_VERSION}); make a new plan with this version"
            )
        try:
            return cls.model_validate(data)
        except Exception as e:  # pydantic.ValidationError: the message names the field
            raise InvalidInput(f"{source}: damaged plan: {str(e).splitlines()[0]} ({e.__class__.__name__})") from None

    def select(self, targets: tuple[str, ...] = (), excludes: tuple[str, ...] = ()) -> Plan:
        """The plan restricted to actions whose address matches a target (and what they
        depend on) and matches no exclude. A pattern matches an address equal to it or
        beginning with it followed by '.' or '[' (`client.web1` matches its keys)."""
        by_id = {a.id: a for a in self.actions}
        chosen = [a for a in self.actions if (not targets or any(_matches(a.address, t) for t in targets))]
        keep = {a.id for a in chosen}
        stack = list(chosen)
        while stack:
            for dep in stack.pop().depends_on:
                if dep in by_id and dep not in keep:
                    keep.add(dep)
                    stack.append(by_id[dep])
        kept = [a for a in self.actions if a.id in keep and not any(_matches(a.address, e) for e in excludes)]
        kept_ids = {a.id for a in kept}
        # an action whose dependency was excluded cannot run
        kept = [a for a in kept if all(d in kept_ids for d in a.depends_on)]
        return self.model_copy(update={"actions": tuple(kept), "cluster_operations": sum(1 for a in kept if spec_of(a.kind).cluster_op)})


def _matches(address: str, pattern: str) -> bool:
    return address == pattern or address.startswith(pattern + ".") or address.startswith(pattern + "[")
