"""cfengine key files: what a key file is, its fingerprint, and whether it verifiably holds
a given key. Pure; shared by the probe's parser, the planner, apply's verification and trust.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import Field

from reconciler.domain import dsau
from reconciler.domain.base import Frozen

# The names of the key files csync reads and writes in a ppkeys directory: the host's own
# public key, and a peer's key named by its IPv4 address or by a host name (cfrun looks up
# root-<host as written>.pub before root-<address>.pub; cfservd with HostnameKeys uses the
# caller's name) [src: cfengine 2's src/cfrun.c PollServer, src/cfservd.c CheckStoreKey].
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")  # a host name, qualified or not
_ADDRESS = re.compile(r"^(\d{1,3}\.){3}\d{1,3}$")
KEY_FILE_NAME = re.compile(rf"^(localhost\.pub|root-(\d{{1,3}}\.){{3}}\d{{1,3}}\.pub|root-(?=[^/]{{1,253}}\.pub$){_LABEL}(?:\.{_LABEL})*\.pub)$")
# Group or others may write: the file's content cannot be trusted [ours].
WRITABLE_BY_OTHERS = 0o022


class KeyFile(Frozen):
    """A cfengine public key file in a ppkeys directory."""

    name: str
    kind: Literal["file", "symlink", "other"] = "file"
    mode: int | None = Field(None, description="permission bits, e.g. 0o644")
    size: int | None = None
    fingerprint: str | None = Field(None, description="SHA256 of the public key's DER, base64")
    pem: str | None = Field(None, description="the public key PEM block (public material only)")
    problem: str | None = Field(None, description="why this file is not a usable key")

    @property
    def usable(self) -> bool:
        return self.kind == "file" and self.fingerprint is not None and self.problem is None

    @property
    def md5(self) -> str | None:
        """The key's digest in cfengine's own notation (``MD5=<hex>``), or None; see `cfengine_digest`."""
        return cfengine_digest(self.pem) if self.usable else None

    def shown(self) -> str:
        """The key's SHA256 fingerprint with its cfengine digest, as plans and trust show a key."""
        return show_key(self.fingerprint, self.md5)


def own_fingerprint(keys: Mapping[str, KeyFile]) -> str | None:
    """The fingerprint of a host's own key (localhost.pub) when it is a usable key."""
    k = keys.get(dsau.OWN_PUBLIC_KEY)
    return k.fingerprint if k and k.usable else None


def public_key_fingerprint(pem: str | None) -> tuple[str | None, str | None]:
    """(fingerprint, problem): SHA256 of an RSA public key's PKCS#1 DER, or why there is none."""
    if not pem:
        return None, "holds no RSA public key"
    if not pem.rstrip().endswith(dsau.PUBLIC_KEY_PEM_END):
        return None, "truncated key (no END line)"
    body = "".join(line.strip() for line in pem.splitlines() if line and not line.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (binascii.Error, ValueError, TypeError, UnicodeEncodeError):
        return None, "not an RSA public key"
    if not isinstance(key, rsa.RSAPublicKey):
        return None, "not an RSA public key"
    return fingerprint_der(der), None


def fingerprint_der(der: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


@functools.lru_cache(maxsize=65536)
def cfengine_digest(pem: str | None) -> str | None:
    """A public key's digest as a cfengine administrator reads it: ``MD5=`` and 32 lower-case
    hex digits, or None when ``pem`` holds no RSA public key.

    The notation is cfengine 2's (src/checksums.c, ChecksumPrint with type 'm': "MD5=" then
    the digest's bytes as %02x). cfengine 2 has no reproducible digest of a key: its only
    one, KeyPrint (src/crypto.c), digests the bytes of the in-memory RSA structure rather
    than the key, and no program calls it. So the digest is taken as cfengine 3's HashPubKey
    takes it (the modulus, then the public exponent, each as big-endian bytes with no
    leading zeros: OpenSSL's BN_bn2bin), which is what cf-key -p printed with MD5 digests."""
    if not pem:
        return None
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        return None
    if not isinstance(key, rsa.RSAPublicKey):
        return None
    numbers = key.public_numbers()
    h = hashlib.md5(usedforsecurity=False)
    for value in (numbers.n, numbers.e):
        h.update(value.to_bytes((value.bit_length() + 7) // 8, "big"))
    return "MD5=" + h.hexdigest()


def show_key(fingerprint: str | None, md5: str | None) -> str:
    """'SHA256:..., MD5=...': a key as plans and trust show it (its cfengine digest when known)."""
    if fingerprint is None:
        return "an unknown key"
    return f"{fingerprint}, {md5}" if md5 else fingerprint


def peer_address(file: str) -> str | None:
    """The peer part of a peer key file's name (root-PEER.pub: an address or a host name), or None."""
    if file.startswith(dsau.PEER_KEY_PREFIX) and file.endswith(dsau.PEER_KEY_SUFFIX) and len(file) > len(dsau.PEER_KEY_PREFIX) + len(dsau.PEER_KEY_SUFFIX):
        return file[len(dsau.PEER_KEY_PREFIX) : -len(dsau.PEER_KEY_SUFFIX)]
    return None


def peer_ip(file: str) -> str | None:
    """The address of a key file named by an address (root-ADDRESS.pub), or None."""
    peer = peer_address(file)
    return peer if peer is not None and _ADDRESS.match(peer) else None


def peer_hostname(file: str) -> str | None:
    """The host name of a key file named by a host name (root-NAME.pub, not an address), or None."""
    peer = peer_address(file)
    return peer if peer is not None and not _ADDRESS.match(peer) and HOST_NAME.match(peer) else None


def name_key_file(name: str) -> str:
    """root-<name>.pub: the file cfengine looks up for a peer written by its host name."""
    if not HOST_NAME.match(name) or _ADDRESS.match(name):
        raise ValueError(f"not a host name: {name!r}")
    return dsau.peer_key_name(name)


def key_problem(current: KeyFile | None, fp: str) -> str | None:
    """Why a key file does not verifiably hold the key ``fp``, or None when it does."""
    if current is None:
        return "missing"
    if current.kind == "symlink":
        return "is a symbolic link"
    if not current.usable:
        return current.problem or "not a usable key"
    if current.fingerprint != fp:
        return f"holds another key ({current.shown()})"
    if current.mode is not None and current.mode & WRITABLE_BY_OTHERS:
        return f"is writable by others (mode {current.mode:04o})"
    return None


def is_verified_copy(key: KeyFile) -> bool:
    """A key file whose content may be copied to another name: checked by content, not name."""
    return key.usable and not (key.mode is not None and key.mode & WRITABLE_BY_OTHERS)
