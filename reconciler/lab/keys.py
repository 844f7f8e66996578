"""Keys for the lab: cfengine 2 RSA key pairs (from a reusable pool) and OpenSSH ed25519 keys.

cfengine 2's ``cfkey`` makes 1024-bit RSA keys and stores them as PKCS#1 PEM:
``-----BEGIN RSA PRIVATE KEY-----`` in ``localhost.priv`` and ``-----BEGIN RSA PUBLIC
KEY-----`` in ``localhost.pub`` / ``root-<IP>.pub``. The lab makes the same.

Generating RSA keys is the slow part of starting a lab (about 15 ms a key here, so 3 s for a
200-client lab), so they come from a pool of pre-generated keys in a cache directory shared
by every lab on the machine (``$CSYNC_LAB_CACHE``, else ``$XDG_CACHE_HOME/csync-lab``, else
``~/.cache/csync-lab``). The pool only grows (NNNNN.pem + NNNNN.pub per pair); a lab takes keys by index, so the same lab
size always gets the same keys, and a lab records the keys it uses (``keys.json`` in its
directory) so that ``reseed`` restores exactly them. Key pairs made *inside* the lab by the
emulated commands (csync_wizard, cfkey) are always fresh.

ed25519 keys (host keys, root's ssh keys, the admin key) cost microseconds and are made fresh.
"""

from __future__ import annotations

import fcntl
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

RSA_BITS = 1024  # what cfengine 2's cfkey generates
_PARALLEL_THRESHOLD = 24  # below this, a process pool costs more than it saves


@dataclass(frozen=True)
class RsaPair:
    """A cfengine key pair as the files hold it."""

    private_pem: bytes  # PKCS#1 "RSA PRIVATE KEY"
    public_pem: bytes  # PKCS#1 "RSA PUBLIC KEY"


def rsa_pair() -> tuple[bytes, bytes]:
    """A fresh cfengine 2 key pair: (private PEM, public PEM), both PKCS#1, 1024 bits."""
    pair = _generate(0)
    return pair.private_pem, pair.public_pem


def _generate(_: int) -> RsaPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return _pair_of(key)


def _pair_of(key: rsa.RSAPrivateKey) -> RsaPair:
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return RsaPair(private, public)


def public_of(private_pem: bytes) -> bytes:
    """The PKCS#1 public PEM of a private PEM."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)


def cache_dir() -> Path:
    if os.environ.get("CSYNC_LAB_CACHE"):
        return Path(os.environ["CSYNC_LAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "csync-lab"


class RsaPool:
    """Pre-generated RSA key pairs in ``directory/rsa1024/NNNNN.pem``, shared by labs.

    Filling is serialised with an flock on ``directory/rsa1024/.lock`` so that two labs
    starting at once never hand out a key file that is being replaced.
    """

    def __init__(self, directory: Path | None = None):
        self.dir = (directory or cache_dir()) / f"rsa{RSA_BITS}"

    def pairs(self, count: int) -> list[RsaPair]:
        """The first ``count`` pairs of the pool, generating the missing ones. Each pair is
        two files, NNNNN.pem and NNNNN.pub (deriving a public key from a private PEM means
        loading and checking it: milliseconds a key)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            missing = [i for i in range(count) if not (self.dir / f"{i:05d}.pub").exists()]
            for i, pair in zip(missing, _generate_many(len(missing))):
                # private first: a .pub file means its .pem is complete
                self._store(f"{i:05d}.pem", pair.private_pem, 0o600)
                self._store(f"{i:05d}.pub", pair.public_pem, 0o644)
            return [RsaPair((self.dir / f"{i:05d}.pem").read_bytes(), (self.dir / f"{i:05d}.pub").read_bytes()) for i in range(count)]

    def _store(self, name: str, data: bytes, mode: int) -> None:
        tmp = self.dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.dir / name)


def _generate_many(count: int) -> list[RsaPair]:
    if count < _PARALLEL_THRESHOLD or (os.cpu_count() or 1) < 2:
        return [_generate(i) for i in range(count)]
    # "spawn": the caller may be a threaded process (a test session with paramiko threads),
    # where fork is unsafe.
    import multiprocessing

    with ProcessPoolExecutor(max_workers=os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_generate, range(count), chunksize=8))


def ssh_ed25519(comment: str) -> tuple[bytes, bytes]:
    """A fresh OpenSSH ed25519 key: (private key in OpenSSH format, public line with comment)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + f" {comment}\n".encode()
