"""Real RSA keys for tests, in cfengine 2's PEM forms, made once per session."""

from __future__ import annotations

from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reconciler.observe.facts import public_key_fingerprint


@cache
def keypair(label: str) -> tuple[str, str]:
    """(private PEM, public PEM) for a label; the same label gives the same key in a run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
    return private, public


def public(label: str) -> str:
    return keypair(label)[1]


@cache
def fp(label: str) -> str:
    fingerprint, problem = public_key_fingerprint(public(label))
    assert problem is None
    return fingerprint
