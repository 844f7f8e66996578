"""Load the desired state from YAML files, with diagnostics an admin can act on.

Every problem is one line, `file:line:column: field.path: what is wrong and what to do`,
and a run reports all of them: field errors and cross-field errors together. Problems that
make a file unreadable as YAML (syntax, duplicate keys, anchors, tags, a missing path) are
reported first, alone, because the fields of a file that cannot be read would only show up
as a flood of "missing" errors.

Files are merged: each path is a file, or a directory whose `*.yaml` and `*.yml` files
(not recursive, dot-files ignored) are read in name order. A top-level key may be set in
one file only, except `clients`, whose lists are concatenated; `clients[i]` is the index
into the merged list, and its diagnostics point at the file and line where it was written.

YAML is read with ruamel.yaml's composer (one parse, a position for every node) and
converted to plain data here, so that:
- anchors and aliases are refused outright (no alias can expand: no "billion laughs"),
- every duplicate key is reported with the line of the first one,
- only plain YAML values are accepted: no tags (`!!binary`, `!foo`), no complex keys.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.desired.locations import field_names, tag_problem, yaml_loc
from reconciler.desired.model import Access, DesiredState
from reconciler.desired.rules import CONFLICT_ERROR, format_loc
from reconciler.desired.values import Loc, show
from reconciler.errors import InvalidInput

MAX_FILE_BYTES = 1024 * 1024
# The deepest field (access.hosts.NAME.port) is four levels down; far deeper nesting is
# not a desired state, and refusing it keeps recursion bounded.
MAX_DEPTH = 32
CONCATENATED_KEYS = ("clients",)
RELATIVE_TO_FILE = ("identity_file", "plan_identity_file", "known_hosts")
_MISSING = "required field is missing"

_YAML_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_YAML_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_STR_TAG = f"{_YAML_TAG}str"
_MAP_TAG = f"{_YAML_TAG}map"
_SEQ_TAG = f"{_YAML_TAG}seq"
_NULL_TAG = f"{_YAML_TAG}null"

Mark = tuple[str, int, int]  # file as given, line and column (1-based)


@dataclass(frozen=True)
class Diagnostic:
    """One problem: where it is (line and column are None when the problem is the path
    itself), the field path (empty for a problem of the file), and what to do."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DesiredStateInvalid(InvalidInput):
    """The desired state is unusable; `diagnostics` lists every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)


# --- Reading YAML ---------------------------------------------------------------------------


class _Source:
    """Where each value and each key of the merged data was written."""

    def __init__(self) -> None:
        self.values: dict[Loc, Mark] = {}
        self.keys: dict[Loc, Mark] = {}

    def value(self, loc: Loc) -> Mark:
        """The value at ``loc``, or its nearest written ancestor (a missing field's mapping)."""
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in self.values:
                return self.values[loc[:cut]]
        raise KeyError(loc)

    def key(self, loc: Loc) -> Mark:
        """The key of the field at ``loc``, else where its value is."""
        return self.keys.get(loc) or self.value(loc)


def _mark(file: str, node: Node) -> Mark:
    return file, node.start_mark.line + 1, node.start_mark.column + 1


class _Reader:
    """Reads files into plain data, recording positions in `source` and every YAML-level
    problem in `problems`."""

    def __init__(self) -> None:
        self.source = _Source()
        self.problems: list[Diagnostic] = []
        self._yaml = YAML(typ="safe", pure=True)
        self._reported_anchors: set[int] = set()

    def problem(self, mark: Mark, loc: Loc, message: str) -> None:
        self.problems.append(Diagnostic(*mark, format_loc(loc), message))

    def files(self, paths: Sequence[str | Path]) -> list[Path]:
        """The files ``paths`` name, directories expanded, each file once."""
        found: list[Path] = []
        for given in paths:
            path = Path(given)
            if path.is_dir():
                try:
                    entries = sorted(path.iterdir(), key=lambda p: p.name)
                except OSError as e:
                    self.problems.append(Diagnostic(str(path), None, None, "", f"cannot list the directory: {e.strerror}"))
                    continue
                yaml_files = [p for p in entries if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()]
                if not yaml_files:
                    self.problems.append(Diagnostic(str(path), None, None, "", "the directory has no *.yaml or *.yml files"))
                found += yaml_files
            elif path.exists():
                found.append(path)
            else:
                self.problems.append(Diagnostic(str(path), None, None, "", "no such file or directory"))
        unique: dict[Path, Path] = {}
        for file in found:
            # `-f desired-state -f desired-state/site.yaml` names a file twice: read it once.
            unique.setdefault(file.resolve(), file)
        return list(unique.values())

    def parse(self, file: Path) -> MappingNode | None:
        """The top-level mapping of ``file``, or None after recording why there is none."""
        name = str(file)
        try:
            with file.open("rb") as stream:
                raw = stream.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            self.problems.append(Diagnostic(name, None, None, "", f"cannot read the file: {e.strerror}"))
            return None
        if len(raw) > MAX_FILE_BYTES:
            self.problem((name, 1, 1), (), f"the file is larger than {MAX_FILE_BYTES} bytes (1 MiB), the limit for a desired-state file")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
            self.problem((name, line, column), (), f"the file is not UTF-8 text (byte 0x{raw[e.start]:02x}); save it as UTF-8")
            return None
        text = text.removeprefix("\ufeff")
        try:
            documents = [d for d in self._yaml.compose_all(text) if not (isinstance(d, ScalarNode) and d.tag == _NULL_TAG)]
        except MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = (name, mark.line + 1, mark.column + 1) if mark else (name, 1, 1)
            context = f" ({e.context})" if e.context and e.problem else ""
            self.problem(where, (), f"invalid YAML: {e.problem or e.context}{context}")
            return None
        except YAMLError as e:
            # The reader's errors (control characters) carry a character index, not a mark.
            position = getattr(e, "position", 0) or 0
            line = text.count("\n", 0, position) + 1
            column = position - (text.rfind("\n", 0, position) + 1) + 1
            character = getattr(e, "character", None)
            if isinstance(character, int):
                character = chr(character)
            what = f"the character {ascii(character)}" if isinstance(character, str) else "a character"
            self.problem((name, line, column), (), f"invalid YAML: {what} is not allowed in YAML text; remove it")
            return None
        except RecursionError:
            self.problem((name, 1, 1), (), f"invalid YAML: nested too deeply (a desired state is at most {MAX_DEPTH} levels deep)")
            return None
        if not documents:
            self.problem((name, 1, 1), (), "the file is empty; a desired-state file is a mapping of fields, such as 'version: 1'")
            return None
        if len(documents) > 1:
            second = _mark(name, documents[1])
            self.problem(second, (), "more than one YAML document: a second one starts here; write one document per file (remove the '---')")
            return None
        root = documents[0]
        if not isinstance(root, MappingNode):
            found = "a list" if isinstance(root, SequenceNode) else "a single value"
            self.problem(_mark(name, root), (), f"the top level is {found}; it must be a mapping of fields (version, site, master, ...)")
            return None
        return root

    def fields(self, node: MappingNode, file: str, loc: Loc) -> list[tuple[str, Node, Node]]:
        """(key, key node, value node) of a mapping, after refusing non-text keys, tags,
        anchors and duplicate keys."""
        if not self.plain(node, file, loc, _MAP_TAG):
            return []
        out: list[tuple[str, Node, Node]] = []
        first: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            key_mark = _mark(file, key_node)
            if not isinstance(key_node, ScalarNode):
                self.problem(key_mark, loc, "a key must be a field name; a list or mapping cannot be a key")
                continue
            key = key_node.value
            if not self.plain(key_node, file, loc + (key,), None):
                continue
            if key in first:
                self.problem(key_mark, loc + (key,), f"duplicate key: it is already set at line {first[key][1]}; keep one")
                continue
            first[key] = key_mark
            out.append((key, key_node, value_node))
        return out

    def value(self, node: Node, file: str, loc: Loc, source: _Source, depth: int = 0) -> Any:
        """``node`` as plain data, recording where each value and key is in ``source``."""
        source.values.setdefault(loc, _mark(file, node))
        if depth > MAX_DEPTH:
            self.problem(_mark(file, node), loc, f"nested more than {MAX_DEPTH} levels deep; this is not a desired state")
            return None
        if isinstance(node, MappingNode):
            out = {}
            for key, key_node, value_node in self.fields(node, file, loc):
                source.keys.setdefault(loc + (key,), _mark(file, key_node))
                out[key] = self.value(value_node, file, loc + (key,), source, depth + 1)
            return out
        if isinstance(node, SequenceNode):
            return self.items(node, file, loc, source, depth) if self.plain(node, file, loc, _SEQ_TAG) else None
        assert isinstance(node, ScalarNode)
        return self._scalar(node, file, loc)

    def items(self, node: SequenceNode, file: str, loc: Loc, source: _Source, depth: int = 0, first_index: int = 0) -> list[Any]:
        """A sequence's items; the first one is ``loc[first_index]`` (clients of a later file
        continue the merged list)."""
        return [self.value(item, file, loc + (first_index + i,), source, depth + 1) for i, item in enumerate(node.value)]

    def plain(self, node: Node, file: str, loc: Loc, expected_tag: str | None) -> bool:
        """Whether ``node`` is plain YAML: no anchor, and the tag YAML itself gives it."""
        if node.anchor:
            # An alias is the anchored node itself: report the anchor once, never descend.
            if id(node) not in self._reported_anchors:
                self._reported_anchors.add(id(node))
                anchor = node.anchor
                self.problem(_mark(file, node), loc, f"YAML anchors and aliases are not allowed (&{anchor}, *{anchor}); write the value out")
            return False
        tag = str(node.tag)
        if (tag != expected_tag) if expected_tag else (tag not in _SCALAR_TAGS):
            self.problem(_mark(file, node), loc, f"the YAML tag {tag.replace(_YAML_TAG, '!!')} is not allowed; write a plain value")
            return False
        return True

    def _scalar(self, node: ScalarNode, file: str, loc: Loc) -> Any:
        if not self.plain(node, file, loc, None):
            return None
        if node.tag == _STR_TAG:
            return node.value
        try:
            return self._yaml.constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, OverflowError):
            # e.g. 2024-02-30 looks like a date but is none
            self.problem(_mark(file, node), loc, f"{show(node.value)} cannot be read as a YAML value; put it in quotes if it is text")
            return None


def _resolve_relative_paths(access: Any, directory: Path) -> None:
    """Make relative key and known_hosts paths relative to the YAML file's directory, as
    documented: the same file works from any working directory. '~' is kept."""
    if not isinstance(access, dict):
        return
    sections = [access]
    if isinstance(access.get("hosts"), dict):
        sections += [h for h in access["hosts"].values() if isinstance(h, dict)]
    for section in sections:
        for key in RELATIVE_TO_FILE:
            value = section.get(key)
            if isinstance(value, str) and value and not value.startswith(("/", "~")):
                section[key] = str(directory / value)


# --- Loading ---------------------------------------------------------------------------------


def load_desired_state(paths: Sequence[str | Path]) -> DesiredState:
    """The validated desired state from ``paths`` (files, or directories of *.yaml/*.yml
    files), merged. Raises DesiredStateInvalid listing every problem found."""
    if not paths:
        raise ValueError("load_desired_state needs at least one path")
    reader = _Reader()
    merged: dict[str, Any] = {}
    owners: dict[str, Mark] = {}
    conflicts: list[Diagnostic] = []
    files = reader.files(paths)
    order = {str(f): i for i, f in enumerate(files)}
    for file in files:
        root = reader.parse(file)
        if root is None:
            continue
        name = str(file)
        reader.source.values.setdefault((), _mark(name, root))
        for key, key_node, value_node in reader.fields(root, name, ()):
            here = _mark(name, key_node)
            if key in CONCATENATED_KEYS and isinstance(value_node, SequenceNode) and isinstance(merged.get(key, []), list):
                reader.source.keys.setdefault((key,), here)
                reader.source.values.setdefault((key,), _mark(name, value_node))
                owners.setdefault(key, here)
                if reader.plain(value_node, name, (key,), _SEQ_TAG):
                    items = merged.setdefault(key, [])
                    items += reader.items(value_node, name, (key,), reader.source, first_index=len(items))
            elif key in owners:
                first = owners[key]
                conflicts.append(Diagnostic(*here, key, f"also set in {first[0]}:{first[1]}:{first[2]}; set it in one file"))
                reader.value(value_node, name, (key,), _Source())  # still check its YAML
            else:
                owners[key] = here
                reader.source.keys[(key,)] = here
                merged[key] = reader.value(value_node, name, (key,), reader.source)
                if key == "access":
                    _resolve_relative_paths(merged[key], file.parent)
    if reader.problems:
        raise DesiredStateInvalid(_sorted(reader.problems + conflicts, order))
    try:
        state = DesiredState.model_validate(merged)
    except ValidationError as error:
        raise DesiredStateInvalid(_sorted(conflicts + _diagnostics(error, (), merged, reader.source), order)) from None
    if conflicts:
        raise DesiredStateInvalid(_sorted(conflicts, order))
    return state


def load_access_file(path: str | Path) -> Access:
    """The `access:` section of a desired-state-like YAML file (defaults when it has none),
    validated with the same diagnostics; for `csync import --access FILE`. The rest of
    the file is not read."""
    reader = _Reader()
    file = Path(path)
    root = reader.parse(file)
    data: Any = {}
    if root is not None:
        name = str(file)
        reader.source.values[()] = _mark(name, root)
        for key, key_node, value_node in reader.fields(root, name, ()):
            if key == "access":
                reader.source.keys[("access",)] = _mark(name, key_node)
                data = reader.value(value_node, name, ("access",), reader.source)
                _resolve_relative_paths(data, file.parent)
    if reader.problems:
        raise DesiredStateInvalid(reader.problems)
    try:
        return Access.model_validate(data)
    except ValidationError as error:
        raise DesiredStateInvalid(_sorted(_diagnostics(error, ("access",), {"access": data}, reader.source), {})) from None


def _sorted(diagnostics: list[Diagnostic], order: dict[str, int]) -> list[Diagnostic]:
    unique = dict.fromkeys(diagnostics)
    return sorted(unique, key=lambda d: (order.get(d.file, -1), d.line or 0, d.column or 0, d.path))


# --- pydantic errors as diagnostics ------------------------------------------------------------


def _diagnostics(error: ValidationError, prefix: Loc, data: dict[str, Any], source: _Source) -> list[Diagnostic]:
    """One diagnostic per pydantic error, at the YAML node it is about. ``prefix`` is the
    location of the validated model within a desired state (`access` for an access file)."""
    out: list[Diagnostic] = []
    suggested: set[Loc] = set()  # a misspelt field is reported once, as unknown, not also as missing
    for err in error.errors(include_url=False):
        loc = yaml_loc(prefix + tuple(err["loc"]), data)
        kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
        if kind == "extra_forbidden":
            parent, key = loc[:-1], loc[-1]
            known = field_names(parent, data)
            guess = _closest(str(key), known)
            if guess:
                suggested.add(parent + (guess,))
                hint = f"; did you mean {guess!r}?"
            else:
                hint = f"; the fields here are: {', '.join(known)}" if known else ""
            out.append(Diagnostic(*source.key(loc), format_loc(parent), f"unknown field {str(key)!r}{hint}"))
        elif kind == "missing":
            out.append(Diagnostic(*source.value(loc[:-1]), format_loc(loc), _MISSING))
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            tag_loc, message = tag_problem(kind, loc, value, data)
            out.append(Diagnostic(*source.value(tag_loc), format_loc(tag_loc), message))
        elif kind == CONFLICT_ERROR:
            related = tuple(ctx["related"]) if "related" in ctx else None
            where = ":".join(str(p) for p in source.value(prefix + related)) if related is not None else ""
            mark = source.key(loc[:-1]) if loc[-1] == "[key]" else source.value(loc)
            out.append(Diagnostic(*mark, format_loc(loc), ctx["template"].replace("{where}", where)))
        else:
            mark = source.key(loc[:-1]) if loc and loc[-1] == "[key]" else source.value(loc)
            out.append(Diagnostic(*mark, format_loc(loc), _message(kind, value, ctx, err["msg"])))
    taken = {format_loc(loc) for loc in suggested}
    return [d for d in out if not (d.message == _MISSING and d.path in taken)]


def _message(kind: str, value: Any, ctx: dict[str, Any], default: str) -> str:
    """pydantic's message rewritten for an admin: what is wrong and what to write."""
    if kind == "value_error":
        return str(ctx.get("error", default))
    if kind in _EXPECTED:
        return _wrong_type(value, _EXPECTED[kind])
    if kind == "literal_error":
        choices = ", ".join(a or b for a, b in re.findall(r"'((?:[^'\\]|\\.)*)'|(-?\d+)", str(ctx.get("expected", ""))))
        if value is None or isinstance(value, (dict, list)):
            return f"expected one of: {choices}, found {_found(value)}"
        return f"{show(value)} is not allowed; must be one of: {choices}"
    if kind in _BOUNDS:
        word, relation, bound = _BOUNDS[kind]
        limit = ctx.get(bound)
        return f"{show(value)} is {word}; it must be {relation} {limit:g}" if isinstance(limit, (int, float)) else default
    if kind == "too_short":
        minimum = ctx.get("min_length", 1)
        return f"at least {minimum} {'entry is' if minimum == 1 else 'entries are'} required, found {ctx.get('actual_length', 0)}"
    if kind == "finite_number":
        return f"{show(value)} is not a finite number"
    return f"{show(value)}: {default[:1].lower()}{default[1:]}"


_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list ('- ' items)",
    "dict_type": "a mapping ('field: value' lines)",
    "model_type": "a mapping ('field: value' lines)",
    "model_attributes_type": "a mapping ('field: value' lines)",
}

_BOUNDS = {  # error type -> (what the value is, the rule, the ctx key of the bound)
    "greater_than": ("too small", "greater than", "gt"),
    "greater_than_equal": ("too small", "at least", "ge"),
    "less_than": ("too large", "less than", "lt"),
    "less_than_equal": ("too large", "at most", "le"),
}


def _found(value: Any) -> str:
    if value is None:
        return "no value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return show(value)
    if isinstance(value, (int, float)):
        return f"the number {show(value)}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    return f"the text {show(value)}"


def _wrong_type(value: Any, expected: str) -> str:
    message = f"expected {expected}, found {_found(value)}"
    if expected == "text" and isinstance(value, (int, float, bool, date)):
        return message + "; put it in quotes if it is meant as text"
    if isinstance(value, str) and expected in ("a whole number", "a number") and re.fullmatch(r"\s*[-+]?[0-9._]+\s*", value):
        return message + "; remove the quotes"
    if isinstance(value, str) and expected == "true or false":
        return message + "; write true or false (YAML 1.2 reads yes, no, on, off as text)"
    return message


def _closest(key: str, known: list[str]) -> str | None:
    by_case = {k.lower(): k for k in known}
    if key.lower() in by_case:
        return by_case[key.lower()]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return close[0] if close else None
