"""The YAML document `csync import` writes: a new one, or an existing one merged with what
was found (comments and order kept), checked against the model before it is written."""

from __future__ import annotations

import io
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from reconciler.desired.model import Access, DesiredState
from reconciler.desired.values import is_ipv4
from reconciler.errors import InvalidInput
from reconciler.importer.discover import Found, ImportFailed


def _yaml() -> YAML:
    y = YAML()  # round trip
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 200
    return y


def _flow(mapping: dict) -> CommentedMap:
    m = CommentedMap(mapping)
    m.fa.set_flow_style()
    return m


def _hosts_seq(hosts: list[dict]) -> CommentedSeq:
    return CommentedSeq([_flow(h) for h in hosts])


def access_data(access: Access, fields: set[str] | None, out_dir: Path | None) -> dict:
    """The access settings as a mapping to write: the fields that were given; key paths
    relative to the output file's directory (absolute on standard output); '~' kept."""
    dumped = access.model_dump(mode="json", exclude_none=True)
    wanted = fields if fields is not None else set(access.model_fields_set)
    data = {k: v for k, v in dumped.items() if k in wanted and not (k == "hosts" and not v)}

    def place(value: str) -> str:
        if value.startswith("~"):
            return value
        absolute = os.path.abspath(value)
        return os.path.relpath(absolute, out_dir) if out_dir is not None else absolute

    for section in [data, *(data.get("hosts") or {}).values()]:
        for key in ("identity_file", "plan_identity_file", "known_hosts"):
            if isinstance(section.get(key), str):
                section[key] = place(section[key])
    if "hosts" in data:
        data["hosts"] = {n: {k: v for k, v in o.items() if v is not None} for n, o in data["hosts"].items()}
    for section in [data, *(data.get("hosts") or {}).values()]:
        for key, value in section.items():
            if isinstance(value, float) and value.is_integer():
                section[key] = int(value)  # 5, as written, not 5.0
    return data


def new_document(found: Found, access: dict | None, source: str) -> CommentedMap:
    d = found.data
    doc = CommentedMap()
    doc["version"] = 1
    doc["site"] = d["site"]
    master = CommentedMap()
    for k, v in d["master"].items():
        if k == "members":
            master[k] = _hosts_seq(v)
        elif k in ("package", "host"):
            master[k] = _flow(v)
        else:
            master[k] = v
    doc["master"] = master
    doc["clients"] = _hosts_seq(d["clients"])
    doc["keys"] = _flow(d["keys"])
    for section in ("paths", "platform"):  # where the site keeps things, when csync would not find them otherwise
        if d.get(section):
            doc[section] = CommentedMap(d[section])
    if access:
        doc["access"] = CommentedMap(access)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc.yaml_set_start_comment(
        f"The site as `csync import --from {source}` found it on {stamp}.\n"
        "keys.distribution and keys.prune cannot be seen on the hosts: copy and false (import never\n"
        "turns on deleting keys) are assumed; change them to what the site should do."
    )
    return doc


def _merge_hosts(seq: Any, hosts: list[dict]) -> Any:
    if not isinstance(seq, list):
        return _hosts_seq(hosts)
    wanted = {h["name"]: h for h in hosts}
    for i in reversed(range(len(seq))):
        item = seq[i]
        name = item.get("name") if isinstance(item, dict) else None
        if name not in wanted:
            del seq[i]
            continue
        if item.get("address") != wanted[name]["address"]:
            item["address"] = wanted[name]["address"]
        found_extra = wanted[name].get("extra_addresses")
        if found_extra and list(item.get("extra_addresses") or []) != found_extra:
            # extra addresses found in the key store are added; declared ones it lacks are kept
            item["extra_addresses"] = list(dict.fromkeys([*(item.get("extra_addresses") or []), *found_extra]))
    present = {item.get("name") for item in seq}
    for h in hosts:
        if h["name"] not in present:
            seq.append(_flow(h))
    return seq


def merge_document(doc: Any, found: Found, access: dict | None) -> Any:
    """Update an existing desired-state document in place (round-trip: comments, order and
    the choices it holds are kept): the master and the hosts from the site; site, keys,
    paths and platform kept when present (a key import found is set: csync would not find a
    command or the package files without it); access replaced only when --access was given."""
    d = found.data
    if not isinstance(doc, dict):
        raise InvalidInput("the output file is not a YAML mapping; choose another -o FILE")
    doc.setdefault("version", 1)
    if "site" not in doc:
        doc["site"] = d["site"]
    old = doc.get("master")
    new = d["master"]
    if not isinstance(old, dict) or old.get("mode") != new["mode"]:
        doc["master"] = new_document(found, None, "").get("master")
    else:
        for k, v in new.items():
            if k == "members":
                old[k] = _merge_hosts(old.get(k), v)
            elif k in ("package", "host") and isinstance(old.get(k), dict):
                target = old[k]
                for pk, pv in v.items():
                    if target.get(pk) != pv:
                        target[pk] = pv
                for optional in ("node", "state"):  # what the site no longer shows goes
                    if k == "package" and optional not in v and optional in target:
                        del target[optional]
            elif k in ("package", "host"):
                old[k] = _flow(v)
            elif old.get(k) != v:
                old[k] = v
    doc["clients"] = _merge_hosts(doc.get("clients"), d["clients"])
    if "keys" not in doc:
        doc["keys"] = _flow(d["keys"])
    for section in ("paths", "platform"):
        if d.get(section):
            if isinstance(doc.get(section), dict):
                for k, v in d[section].items():
                    if doc[section].get(k) != v:
                        doc[section][k] = v
            else:
                doc[section] = CommentedMap(d[section])
    if access is not None:
        if isinstance(doc.get("access"), dict):
            target = doc["access"]
            for k in [k for k in target if k not in access]:
                del target[k]
            for k, v in access.items():
                if target.get(k) != v:
                    target[k] = v
        else:
            doc["access"] = CommentedMap(access)
    return doc


def read_existing(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
    return read_existing_text(text, str(path))


def read_existing_text(text: str, name: str = "the output file") -> Any:
    """A YAML document loaded for a round trip (comments and order kept)."""
    try:
        return _yaml().load(text)
    except Exception as e:  # ruamel's parser and scanner errors have no common public base
        raise InvalidInput(f"{name}: not valid YAML, so it cannot be updated: {e}") from None


def known_addresses(doc: Any) -> dict[str, str]:
    """name -> address of the hosts an existing document declares ('@package', '@mount' too)."""
    out: dict[str, str] = {}
    if not isinstance(doc, dict):
        return out
    master: dict = doc["master"] if isinstance(doc.get("master"), dict) else {}
    hosts = list(master.get("members") or []) + ([master["host"]] if isinstance(master.get("host"), dict) else [])
    hosts += list(doc.get("clients") or [])
    for h in hosts:
        if isinstance(h, dict) and isinstance(h.get("name"), str) and is_ipv4(h.get("address")):
            out[h["name"]] = h["address"]
    pkg: dict = master["package"] if isinstance(master.get("package"), dict) else {}
    if is_ipv4(pkg.get("address")):
        out["@package"] = pkg["address"]
    if isinstance(pkg.get("mount"), str):
        out["@mount"] = pkg["mount"]
    return out


def dump(doc: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()


def check(text: str, where: Path) -> DesiredState:
    """Validate the YAML about to be written, as `csync validate` would, from the directory
    it goes to (so relative key paths resolve as they will); the desired state it describes."""
    from reconciler.desired.loader import load_desired_state

    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".csync-import-", suffix=".yaml", dir=where)
    except OSError as e:
        raise InvalidInput(f"cannot write in {where}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            return load_desired_state([tmp])
        except InvalidInput as e:
            raise ImportFailed(f"the imported desired state does not validate (please report this):\n{e}") from None
    finally:
        os.unlink(tmp)
