"""cfengine key files: what a key file is, its fingerprint, and whether it verifiably holds
a given key. Pure; shared by the probe's parser, the planner, apply's verification and trust.
"""

from __future__ import annotations

import base64
import binascii
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
# public key, and a peer's key named by its IPv4 address [src: cfengine 2 key lookup].
KEY_FILE_NAME = re.compile(r"^(localhost\.pub|root-(\d{1,3}\.){3}\d{1,3}\.pub)$")
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


def peer_address(file: str) -> str | None:
    """The address a peer key file is named after (root-ADDRESS.pub), or None."""
    if file.startswith(dsau.PEER_KEY_PREFIX) and file.endswith(dsau.PEER_KEY_SUFFIX):
        return file[len(dsau.PEER_KEY_PREFIX):-len(dsau.PEER_KEY_SUFFIX)]
    return None


def key_problem(current: KeyFile | None, fp: str) -> str | None:
    """Why a key file does not verifiably hold the key ``fp``, or None when it does."""
    if current is None:
        return "missing"
    if current.kind == "symlink":
        return "is a symbolic link"
    if not current.usable:
        return current.problem or "not a usable key"
    if current.fingerprint != fp:
        return f"holds another key ({current.fingerprint})"
    if current.mode is not None and current.mode & WRITABLE_BY_OTHERS:
        return f"is writable by others (mode {current.mode:04o})"
    return None


def is_verified_copy(key: KeyFile) -> bool:
    """A key file whose content may be copied to another name: checked by content, not name."""
    return key.usable and not (key.mode is not None and key.mode & WRITABLE_BY_OTHERS)
