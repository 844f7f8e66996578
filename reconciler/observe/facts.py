"""Typed facts about hosts, and the pure parser from probe output to them.

Nothing here does I/O: `parse_probe` takes the bytes a probe printed and returns
`HostFacts`. A host that could not be probed is a `HostFacts` too, with `reachable=False`
and the reason, so that "unknown" is never mistaken for "nothing there".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from reconciler.desired.model import Role
from reconciler.domain import dsau
from reconciler.domain.base import Frozen
from reconciler.domain.keys import (
    HOST_NAME,
    KEY_FILE_NAME,
    KeyFile,
    own_fingerprint,
    public_key_fingerprint,
)
from reconciler.domain.serviceguard import (
    ClusterView,
    CmviewclParseError,
    parse_cmviewcl_line,
    parse_cmviewcl_table,
)
from reconciler.driver.probeprogram import parse_version_line

PathKind = Literal["dir", "file", "symlink", "other", "missing"]


class SshKey(Frozen):
    type: str
    fingerprint: str
    line: str = Field(description="'type base64' of the public key (no options, no comment)")


class CfrunHosts(Frozen):
    """What cfrun takes from a hosts file (cfengine 2's src/cfrun.c, ReadCfrunConf): the hosts
    as written (with the file's ``domain`` appended to a name without a dot, as cfrun does),
    and whether ``hostnamekeys`` makes cfrun authenticate a host by root-<host as written>.pub.
    Included files (``include = FILE``) are named, not read."""

    hosts: tuple[str, ...] = ()
    hostnamekeys: bool = False
    includes: tuple[str, ...] = ()


class ProbeProgram(Frozen):
    """csync's probe program on a host (driver/probeprogram.py): the plan identity's forced command."""

    kind: PathKind = Field(description="the file at dsau.PROBE_PROGRAM: file, missing, ...")
    version: int | None = Field(None, description="its version (None: no readable version line)")
    digest: str | None = None


class PackageFilesystem(Frozen):
    """What the node running the package sees on the package's filesystem."""

    mounted: bool
    cluster_key: KeyFile | None = None
    inputs_digest: str | None = None
    inputs_sums: dict[str, str] | None = Field(None, description="path -> 'cksum size' of the master inputs")
    cfrun_hosts: CfrunHosts | None = Field(None, description="the master inputs' cfrun.hosts (None: no such file)")
    inventory: tuple[str, ...] | None = None
    lock: str | None = None


class MasterFiles(Frozen):
    """A standalone master's own master files."""

    inputs_digest: str | None = None
    cfrun_hosts: CfrunHosts | None = None
    inventory: tuple[str, ...] | None = None
    lock: str | None = None


class KeyStoreReader:
    """What a host's key store says about its own key and its peers' (``self.keys``)."""

    __slots__ = ()
    keys: Mapping[str, KeyFile]

    @property
    def own_key(self) -> KeyFile | None:
        return self.keys.get(dsau.OWN_PUBLIC_KEY)

    @property
    def own_fingerprint(self) -> str | None:
        return own_fingerprint(self.keys)

    def peer_key(self, address: str) -> KeyFile | None:
        return self.keys.get(dsau.peer_key_name(address))


class HostFacts(KeyStoreReader, Frozen):
    name: str
    address: str
    role: Role
    reachable: bool
    reason: str | None = Field(None, description="why the host's facts are unknown")
    reason_kind: str | None = None
    hostname: str | None = None
    cfengine_dir: PathKind = "missing"
    ppkeys_dir: PathKind = "missing"
    inputs_dir: PathKind = "missing"
    keys: dict[str, KeyFile] = Field(default_factory=dict)
    inputs_digest: str | None = None
    inputs_count: int | None = Field(None, description="regular files in the inputs directory (None: no directory)")
    inputs_sums: dict[str, str] | None = Field(None, description="members only: path -> 'cksum size' of each input file")
    hostname_keys: bool = Field(
        False, description="its cfservd authenticates callers by root-<caller's name>.pub (HostnameKeys = ( on ) in inputs/cfservd.conf)"
    )
    cfrun_hosts: CfrunHosts | None = Field(None, description="members and masters: inputs/cfrun.hosts, which their cfrun reads")
    package_files: int | None = Field(None, description="members only: regular files in the package's directory (paths.package_files_dir)")
    cluster: ClusterView | None = None
    cluster_error: str | None = None
    cluster_format: Literal["line", "table"] | None = Field(
        None, description="members only: the cmviewcl format read (table when the release refuses -f line, or platform.cmviewcl_format says so)"
    )
    package_fs: PackageFilesystem | None = None
    master_files: MasterFiles | None = None
    ssh_public_keys: tuple[SshKey, ...] = ()
    ssh_authorized: tuple[str, ...] = ()
    probe_program: ProbeProgram | None = Field(None, description="None: not known (the probe did not say)")
    probe_seconds: float | None = None


def unreachable(name: str, address: str, role: Role, reason: str, kind: str) -> HostFacts:
    return HostFacts(name=name, address=address, role=role, reachable=False, reason=reason, reason_kind=kind)


class ProbeOutputError(ValueError):
    pass


def parse_probe(name: str, address: str, role: Role, stdout: bytes, exit_code: int, stderr: bytes = b"", *, shared: dict | None = None) -> HostFacts:
    """Typed facts from one probe's output; malformed output gives an unreachable fact.

    ``shared``: one dict for every host of a run (see parse_key_listing)."""
    try:
        return _parse(name, address, role, stdout, exit_code, stderr, shared)
    except ProbeOutputError as e:
        return unreachable(name, address, role, f"probe answer unusable: {e}", "probe")


def _parse(name: str, address: str, role: Role, stdout: bytes, exit_code: int, stderr: bytes, shared: dict | None) -> HostFacts:
    if exit_code != 0:
        err = stderr.decode("utf-8", "replace").strip().splitlines()
        raise ProbeOutputError(f"probe exited {exit_code}" + (f": {err[-1][:200]}" if err else ""))
    try:
        doc = json.loads(stdout.decode("utf-8", "replace"))
    except json.JSONDecodeError as e:
        raise ProbeOutputError(f"not JSON ({e.msg} at byte {e.pos}; {len(stdout)} bytes)") from None
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise ProbeOutputError("not a csync probe document of format 1")
    failed = probe_errors(doc)
    if failed:
        # A program that failed is never an empty answer: what it would have told is unknown,
        # and so is everything decided from it (keys, inputs, package files...): the host's facts.
        raise ProbeOutputError(failed)
    cf = _dict(doc, "cf")
    fields: dict = {
        "name": name,
        "address": address,
        "role": role,
        "reachable": True,
        "hostname": _first(_lines(doc, "hostname")),
        "cfengine_dir": _kind(cf.get("dir")),
        "ppkeys_dir": _kind(cf.get("ppkeys")),
        "inputs_dir": _kind(cf.get("inputs")),
        "keys": parse_key_listing(_lines(doc, "keys"), shared),
        "inputs_digest": tree_digest(_lines(doc, "inputs")) if cf.get("inputs") == "dir" else None,
        "inputs_count": len(_lines(doc, "inputs")) if cf.get("inputs") == "dir" else None,
        "hostname_keys": hostname_keys(_optional_lines(doc, "cfservd") or ()),
    }
    if role != "client":
        fields["cfrun_hosts"] = parse_cfrun_hosts(_optional_lines(doc, "cfrun_hosts"))
    if role == "member":
        if cf.get("inputs") == "dir":
            fields["inputs_sums"] = tree_sums(_lines(doc, "inputs"))
        pkgfiles = _dict(doc, "pkgfiles")
        if isinstance(pkgfiles.get("count"), int):
            fields["package_files"] = pkgfiles["count"] if pkgfiles.get("dir") == "dir" else 0
        sg = _dict(doc, "cmviewcl")
        lines = _lines(sg, "lines")
        table = sg.get("format") == "table"
        if sg.get("rc") == 0:
            try:
                fields["cluster"] = parse_cmviewcl_table(lines) if table else parse_cmviewcl_line(lines)
                fields["cluster_format"] = "table" if table else "line"
            except CmviewclParseError as e:
                what = (
                    ("cmviewcl -v (table format, -f line refused)" if sg.get("line_rc") is not None else "cmviewcl -v (table format)")
                    if table
                    else "cmviewcl -v -f line"
                )
                fields["cluster_error"] = f"{what} output not understood: {e}"
        else:
            detail = next((line for line in reversed(lines) if line.strip()), "")
            fields["cluster_error"] = f"cmviewcl failed (exit {sg.get('rc')}): {detail[:200]}"
        pkg = _dict(doc, "pkgfs")
        if pkg.get("mounted") is True:
            key_files = parse_key_listing(_lines(pkg, "keys"), shared)
            fields["package_fs"] = PackageFilesystem(
                mounted=True,
                cluster_key=key_files.get(dsau.OWN_PUBLIC_KEY),
                inputs_digest=tree_digest(_lines(pkg, "inputs")),
                inputs_sums=tree_sums(_lines(pkg, "inputs")),
                cfrun_hosts=parse_cfrun_hosts(_optional_lines(pkg, "cfrun_hosts")),
                inventory=_optional_lines(pkg, "inventory"),
                lock=_optional_text(pkg, "lock"),
            )
        else:
            fields["package_fs"] = PackageFilesystem(mounted=False)
    elif role == "master":
        master = _dict(doc, "master")
        fields["master_files"] = MasterFiles(
            inputs_digest=tree_digest(_lines(master, "inputs")) if master.get("inputs_dir") == "dir" else None,
            cfrun_hosts=parse_cfrun_hosts(_optional_lines(master, "cfrun_hosts")),
            inventory=_optional_lines(master, "inventory"),
            lock=_optional_text(master, "lock"),
        )
    ssh = _dict(doc, "ssh")
    fields["ssh_public_keys"] = tuple(k for k in map(parse_ssh_key_line, _lines(ssh, "public")) if k)
    fields["ssh_authorized"] = tuple(sorted({k.fingerprint for k in map(parse_ssh_key_line, _lines(ssh, "authorized")) if k}))
    fields["probe_program"] = parse_program(doc.get("program"))
    return HostFacts(**fields)


def parse_program(section: object) -> ProbeProgram | None:
    """The probe's ``program`` section: the kind of the file at dsau.PROBE_PROGRAM and its
    version line, if it has one."""
    if not isinstance(section, dict):
        return None
    header = section.get("header")
    found = None
    if isinstance(header, list):
        found = next((v for line in header if isinstance(line, str) and (v := parse_version_line(line))), None)
    return ProbeProgram(kind=_kind(section.get("kind")), version=found[0] if found else None, digest=found[1] if found else None)


def probe_errors(doc: dict) -> str:
    """The programs that failed during the probe, as one message ('' when none did). A probe
    without an "errors" list is refused: a probe of this format always prints one."""
    errors = doc.get("errors")
    if not isinstance(errors, list):
        raise ProbeOutputError("section 'errors' missing or not a list (truncated output?)")
    parts = []
    for e in errors:
        if not isinstance(e, dict):
            raise ProbeOutputError("an error record is not an object")
        message = str(e.get("message") or "no message")[:200]
        parts.append(f"{e.get('tool')} failed (exit {e.get('status')}) reading {e.get('section')}: {message}")
    if not parts:
        return ""
    return "probe: " + "; ".join(parts[:3]) + (f"; and {len(parts) - 3} more" if len(parts) > 3 else "")


def _dict(doc: dict, key: str) -> dict:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ProbeOutputError(f"section {key!r} missing or not an object (truncated output?)")
    return value


def _lines(doc: dict, key: str) -> list[str]:
    value = doc.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProbeOutputError(f"section {key!r} missing or not a list of lines (truncated output?)")
    return value


def _optional_lines(doc: dict, key: str) -> tuple[str, ...] | None:
    return None if doc.get(key) is None else tuple(line for line in _lines(doc, key) if line)


def _optional_text(doc: dict, key: str) -> str | None:
    return None if doc.get(key) is None else "\n".join(_lines(doc, key))


def _first(lines: list[str]) -> str | None:
    return lines[0].strip() if lines and lines[0].strip() else None


def _kind(value: object) -> PathKind:
    return value if value in ("dir", "file", "symlink", "other", "missing") else "other"


def mode_from_ls(text: str) -> int | None:
    """Permission bits from an `ls -l` mode string such as '-rw-r--r--' or '-rw-------+'."""
    if len(text) < 10:
        return None
    bits = (0o400, 0o200, 0o100, 0o040, 0o020, 0o010, 0o004, 0o002, 0o001)
    return sum(bit for ch, bit in zip(text[1:10], bits) if ch in "rwxst")


def parse_key_listing(lines: list[str], shared: dict | None = None) -> dict[str, KeyFile]:
    """Key files from the probe's `keys` section (see reconciler/driver/probe.sh).

    ``shared``, a dict kept across the hosts of one run, makes equal key files one object:
    most of a site's key files are copies (every member holds every client's key, every
    client the cluster key), so a 100,000-client site parses each key once, not 9 times,
    and keeps one KeyFile for each instead of one per host. KeyFile is immutable."""
    listing: dict[str, tuple[str, int | None, int | None]] = {}
    symlinks: set[str] = set()
    pems: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines:
        tag, _, rest = line.partition(" ")
        if tag == "L":
            parts = rest.split(None, 8)
            if len(parts) == 9 and KEY_FILE_NAME.match(parts[8]):
                size = int(parts[4]) if parts[4].isdigit() else None
                # two listing lines for one name: a forged name; trust neither
                listing[parts[8]] = ("ambiguous", None, None) if parts[8] in listing else (parts[0], mode_from_ls(parts[0]), size)
        elif tag == "S" and KEY_FILE_NAME.match(rest):
            symlinks.add(rest)
        elif tag == "F" and KEY_FILE_NAME.match(rest):
            current = rest
            pems[current] = []
        elif tag == "P" and current is not None:
            pems[current].append(rest)
    result: dict[str, KeyFile] = {}
    for name in sorted(symlinks):
        result[name] = KeyFile(name=name, kind="symlink", problem="is a symbolic link (not followed)")
    for name, pem_lines in sorted(pems.items()):
        modestr, mode, size = listing.get(name, ("", None, None))
        if modestr == "ambiguous":
            result[name] = KeyFile(name=name, kind="other", problem="listed twice (a forged file name?)")
            continue
        pem = "\n".join(pem_lines) + "\n" if pem_lines else None
        ident = (name, mode, size, pem)
        key = shared.get(ident) if shared is not None else None
        if key is None:
            fingerprint, problem = public_key_fingerprint(pem)
            key = KeyFile(name=name, mode=mode, size=size, fingerprint=fingerprint, pem=pem if fingerprint else None, problem=problem)
            if shared is not None:
                shared[ident] = key
        result[name] = key
    for name, (modestr, mode, _size) in sorted(listing.items()):
        if name not in result and not modestr.startswith(("-", "l")):
            result[name] = KeyFile(name=name, kind="other", mode=mode, problem="not a regular file")
    return dict(sorted(result.items()))


# cfservd.conf's control setting [src: cfengine 2 macro.c OptionIs: "on" or "true"]
_HOSTNAME_KEYS = re.compile(r"^\s*HostnameKeys\s*=\s*\(\s*(\S+?)\s*\)")
# cfrun.hosts' settings [src: cfengine 2 src/cfrun.c ReadCfrunConf]
_CFRUN_SETTING = re.compile(r"^(domain|hostnamekeys|include)\s*=\s*([^#\s]*)")
_ADDRESS = re.compile(r"^(\d{1,3}\.){3}\d{1,3}$")


def hostname_keys(lines: tuple[str, ...] | list[str]) -> bool:
    """Whether cfservd.conf's HostnameKeys lines (from the probe) turn hostname keys on."""
    found = [m.group(1) for line in lines if (m := _HOSTNAME_KEYS.match(line))]
    return bool(found) and found[-1] in ("on", "true")


def parse_cfrun_hosts(lines: tuple[str, ...] | None) -> CfrunHosts | None:
    """A cfrun hosts file from the probe's "S <setting line>" and "H <host>" lines, in file
    order. A host is kept when it is an IPv4 address or a host name (its ``:PORT`` cut, as
    cfrun's ParseHostname does); anything else cannot be a host csync knows."""
    if lines is None:
        return None
    hosts: dict[str, None] = {}  # in file order, once each
    domain = ""
    hostnamekeys = False
    includes: list[str] = []
    for line in lines:
        tag, _, rest = line.partition(" ")
        if tag == "S":
            m = _CFRUN_SETTING.match(rest)
            if m is None:
                continue
            what, value = m.groups()
            if what == "domain":
                domain = value if HOST_NAME.match(value) else ""
            elif what == "hostnamekeys":
                hostnamekeys = hostnamekeys or value in ("yes", "true")
            elif value:
                includes.append(value)
        elif tag == "H":
            host = rest.split(":", 1)[0]
            if not (_ADDRESS.match(host) or HOST_NAME.match(host)):
                continue
            if "." not in host and domain:
                host = f"{host}.{domain}"
            hosts.setdefault(host)
    return CfrunHosts(hosts=tuple(hosts), hostnamekeys=hostnamekeys, includes=tuple(includes))


def tree_digest(cksum_lines: list[str]) -> str:
    """Digest of a directory tree from its sorted `cksum` lines (content, size, path)."""
    h = hashlib.sha256()
    for line in sorted(cksum_lines):
        h.update(line.encode("utf-8", "replace") + b"\n")
    return "sha256:" + h.hexdigest()[:32]


def tree_sums(cksum_lines: list[str]) -> dict[str, str]:
    """path -> 'cksum size' from `cksum` lines ('crc size ./path')."""
    out = {}
    for line in cksum_lines:
        parts = line.split(" ", 2)
        if len(parts) == 3:
            out[parts[2]] = f"{parts[0]} {parts[1]}"
    return out


def parse_ssh_key_line(line: str) -> SshKey | None:
    """An OpenSSH public key line (options and comment allowed) as type + fingerprint."""
    parts = line.split()
    for i, part in enumerate(parts[:-1]):
        if part.startswith(("ssh-", "ecdsa-sha2-", "sk-")):
            try:
                blob = base64.b64decode(parts[i + 1], validate=True)
            except (binascii.Error, ValueError):
                return None
            digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
            return SshKey(type=part, fingerprint=f"SHA256:{digest}", line=f"{part} {parts[i + 1]}")
    return None
