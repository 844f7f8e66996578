"""Load the desired state from YAML files, with diagnostics an admin can act on.

Every problem is reported as `file:line:column: field.path: what is wrong`, all of them in
one run. Files of a directory are merged: a top-level key may be set in one file only,
except `clients`, whose lists are concatenated.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from reconciler.errors import InvalidInput
from reconciler.model import Access, DesiredState, semantic_problems

MAX_FILE_BYTES = 1024 * 1024
_RELATIVE_PATH_FIELDS = ("identity_file", "known_hosts")


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DesiredStateInvalid(InvalidInput):
    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics) + f"\n{len(diagnostics)} problem(s) in the desired state.")


@dataclass(frozen=True)
class _Doc:
    file: str
    data: CommentedMap


class _Positions:
    """Where each merged field came from: field path -> (file, line, column)."""

    def __init__(self) -> None:
        self.at: dict[tuple, tuple[str, int, int]] = {}

    def record(self, file: str, node: Any, path: tuple) -> None:
        if isinstance(node, CommentedMap):
            for key in node:
                try:
                    line, col = node.lc.key(key)
                except (KeyError, TypeError):
                    line, col = node.lc.line, node.lc.col
                self.at.setdefault(path + (("key", key),), (file, line + 1, col + 1))
                try:
                    vline, vcol = node.lc.value(key)
                except (KeyError, TypeError):
                    vline, vcol = line, col
                self.at.setdefault(path + (key,), (file, vline + 1, vcol + 1))
                self.record(file, node[key], path + (key,))
        elif isinstance(node, CommentedSeq):
            for i, item in enumerate(node):
                try:
                    line, col = node.lc.item(i)
                except (KeyError, TypeError, IndexError):
                    line, col = node.lc.line, node.lc.col
                self.at.setdefault(path + (i,), (file, line + 1, col + 1))
                self.record(file, item, path + (i,))

    def find(self, path: tuple, default: tuple[str, int, int]) -> tuple[str, int, int]:
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.at:
                return self.at[path[:cut]]
        return default


def _field_path(path: Sequence) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def _files(paths: Sequence[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    files: list[Path] = []
    problems: list[Diagnostic] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(q for q in path.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
            if not found:
                problems.append(Diagnostic(str(path), 0, 0, "", "directory has no *.yaml files"))
            files += found
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Diagnostic(str(path), 0, 0, "", "no such file or directory"))
    return files, problems


def _parse(file: Path) -> tuple[CommentedMap | None, list[Diagnostic]]:
    name = str(file)
    try:
        raw = file.read_bytes()
    except OSError as e:
        return None, [Diagnostic(name, 0, 0, "", f"cannot read: {e.strerror}")]
    if len(raw) > MAX_FILE_BYTES:
        return None, [Diagnostic(name, 1, 1, "", f"file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, [Diagnostic(name, 1, 1, "", f"not UTF-8 (byte {e.start})")]
    if "&" in text or "*" in text:
        # Anchors and aliases are refused outright: no YAML bomb can expand.
        for n, line in enumerate(text.splitlines(), 1):
            stripped = line.split("#", 1)[0]
            for token in ("&", "*"):
                idx = stripped.find(token)
                if idx >= 0 and (idx + 1 < len(stripped)) and (stripped[idx + 1].isalnum() or stripped[idx + 1] in "_-") and (idx == 0 or stripped[idx - 1] in " [{,:-"):
                    return None, [Diagnostic(name, n, idx + 1, "", "YAML anchors and aliases are not allowed in desired state; write each value out")]
    try:
        docs = list(_yaml().load_all(text))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = (e.problem or e.context or "invalid YAML").strip()
        if "duplicate key" in str(e):
            what = f"{what}; each key may appear once in a mapping"
        return None, [Diagnostic(name, line, col, "", f"YAML: {what}")]
    except (YAMLError, ValueError, RecursionError) as e:
        return None, [Diagnostic(name, 1, 1, "", f"YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}")]
    docs = [d for d in docs if d is not None]
    if not docs:
        return None, [Diagnostic(name, 1, 1, "", "file is empty; it should be a mapping such as 'version: 1'")]
    if len(docs) > 1:
        return None, [Diagnostic(name, 1, 1, "", "more than one YAML document ('---'); use one document per file")]
    doc = docs[0]
    if not isinstance(doc, CommentedMap):
        return None, [Diagnostic(name, 1, 1, "", f"the top level is a {type(doc).__name__}, it must be a mapping of fields (version, site, master, ...)")]
    return doc, []


def _plain(node: Any) -> Any:
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    if isinstance(node, (bool, int, float, str)) or node is None:
        return node if type(node) in (bool, int, float, str, type(None)) else _scalar(node)
    return str(node)


def _scalar(node: Any) -> Any:
    for t in (bool, int, float, str):
        if isinstance(node, t):
            return t(node)
    return str(node)


def _resolve_relative(data: dict, base: Path) -> None:
    access = data.get("access")
    if not isinstance(access, dict):
        return
    targets = [access] + [h for h in (access.get("hosts") or {}).values() if isinstance(h, dict)] if isinstance(access.get("hosts"), dict) else [access]
    for section in targets:
        for key in _RELATIVE_PATH_FIELDS:
            value = section.get(key)
            if isinstance(value, str) and value and not value.startswith(("/", "~")):
                section[key] = str(base / value)


def load_desired_state(paths: Sequence[str | Path]) -> DesiredState:
    """The validated desired state from files and directories; raises DesiredStateInvalid
    listing every problem found."""
    files, problems = _files(paths)
    merged: dict[str, Any] = {}
    owner: dict[str, tuple[str, int, int]] = {}
    positions = _Positions()
    client_offset = 0
    for file in files:
        doc, errs = _parse(file)
        problems += errs
        if doc is None:
            continue
        name = str(file)
        data = _plain(doc)
        _resolve_relative(data, file.parent)
        for key in doc:
            line, col = doc.lc.key(key)
            here = (name, line + 1, col + 1)
            if key == "clients" and isinstance(data.get("clients"), list) and isinstance(merged.get("clients", []), list):
                shifted = CommentedMap()
                shifted["clients"] = doc["clients"]
                for i, item in enumerate(doc["clients"] if isinstance(doc["clients"], CommentedSeq) else []):
                    try:
                        iline, icol = doc["clients"].lc.item(i)
                    except (KeyError, TypeError, IndexError):
                        iline, icol = line, col
                    positions.at.setdefault(("clients", client_offset + i), (name, iline + 1, icol + 1))
                    positions.record(name, item, ("clients", client_offset + i))
                positions.at.setdefault(("clients",), here)
                merged.setdefault("clients", []).extend(data["clients"])
                client_offset += len(data["clients"])
                continue
            if key in owner:
                f0, l0, c0 = owner[key]
                problems.append(Diagnostic(name, line + 1, col + 1, str(key), f"also set in {f0}:{l0}:{c0}; set it in one file"))
                continue
            owner[key] = here
            merged[str(key)] = data[str(key)]
            positions.at.setdefault((("key", key),), here)
            vline, vcol = doc.lc.value(key)
            positions.at.setdefault((key,), (name, vline + 1, vcol + 1))
            positions.record(name, doc[key], (key,))
    if problems:
        raise DesiredStateInvalid(problems)
    default = (str(files[0]) if files else "desired-state", 1, 1)
    try:
        state = DesiredState.model_validate(merged)
    except pydantic.ValidationError as e:
        raise DesiredStateInvalid(_diagnostics(e, merged, positions, default)) from None
    semantic = semantic_problems(state)
    if semantic:
        diags = [Diagnostic(*positions.find(path, default), _field_path(path), message) for path, message in semantic]
        raise DesiredStateInvalid(sorted(diags, key=lambda d: (d.file, d.line, d.column)))
    return state


def _diagnostics(error: pydantic.ValidationError, data: dict, positions: _Positions, default) -> list[Diagnostic]:
    out = []
    seen = set()
    for err in error.errors():
        loc = _clean_loc(err["loc"], data)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = loc[-1]
            parent = loc[:-1]
            where = positions.at.get(parent + (("key", key),)) or positions.find(loc, default)
            message = f"unknown field {key!r}" + _did_you_mean(str(key), _allowed_fields(parent, data))
            path = _field_path(parent)
            out.append(Diagnostic(*where, path, message))
            continue
        where = positions.find(loc, default)
        message = _message(err, loc)
        key = (where, _field_path(loc), message)
        if key in seen:
            continue
        seen.add(key)
        out.append(Diagnostic(*where, _field_path(loc), message))
    return sorted(out, key=lambda d: (d.file, d.line, d.column, d.path))


def _clean_loc(loc: tuple, data: dict) -> tuple:
    # pydantic puts the discriminator's value into the location of union members
    # ("master", "serviceguard", "cluster"): drop it so paths match the YAML.
    out = []
    for i, part in enumerate(loc):
        if i == 1 and loc[0] == "master" and part in ("serviceguard", "standalone"):
            continue
        out.append(part)
    return tuple(out)


def _allowed_fields(parent: tuple, data: dict) -> list[str]:
    from reconciler import model

    node: Any = model.DesiredState
    for part in parent:
        if isinstance(part, int):
            continue
        if node is model.DesiredState and part == "master":
            mode = (data.get("master") or {}).get("mode") if isinstance(data.get("master"), dict) else None
            node = model.StandaloneMaster if mode == "standalone" else model.ServiceguardMaster
            continue
        field = getattr(node, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        node = next((a for a in getattr(ann, "__args__", ()) if hasattr(a, "model_fields")), ann)
        if part == "hosts":
            node = model.HostAccess
    return list(getattr(node, "model_fields", {}))


def _did_you_mean(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; allowed: {', '.join(allowed)}" if allowed else ""


def _message(err: dict, loc: tuple) -> str:
    kind, msg, value = err["type"], err["msg"], err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"{value!r} is not allowed; must be one of: {ctx.get('expected', '').replace(chr(39), '')}"
    if kind == "union_tag_invalid":
        return f"mode {ctx.get('tag')!r} is not allowed; must be one of: serviceguard, standalone"
    if kind == "union_tag_not_found":
        return "required field 'mode' is missing (serviceguard or standalone)"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in ("string_type", "int_type", "int_parsing", "float_type", "float_parsing", "bool_type", "bool_parsing", "list_type", "dict_type", "model_type", "model_attributes_type"):
        expected = {"string_type": "a string", "int_type": "a whole number", "int_parsing": "a whole number", "float_type": "a number",
                    "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
                    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping"}[kind]
        return f"{_show(value)} is not {expected}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long"):
        return f"{_show(value)}: {msg[0].lower()}{msg[1:]}"
    return f"{_show(value)}: {msg}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_access_file(path: str | Path) -> Access:
    """The `access:` section of a YAML file (e.g. the lab's desired state), validated."""
    file = Path(path)
    doc, problems = _parse(file) if file.is_file() else (None, [Diagnostic(str(file), 0, 0, "", "no such file")])
    if doc is None:
        raise DesiredStateInvalid(problems)
    data = _plain(doc)
    _resolve_relative(data, file.parent)
    positions = _Positions()
    positions.record(str(file), doc, ())
    try:
        return Access.model_validate(data.get("access") or {})
    except pydantic.ValidationError as e:
        diags = []
        for err in e.errors():
            loc = ("access",) + tuple(err["loc"])
            diags.append(Diagnostic(*positions.find(loc, (str(file), 1, 1)), _field_path(loc), _message(err, loc)))
        raise DesiredStateInvalid(diags) from None
