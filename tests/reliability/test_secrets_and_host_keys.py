"""Secrets and host keys, against the lab.

Secrets: a full cycle (plan in every format, a plan file and `show`, apply from the file,
apply again, facts in every format, the journal, every stdout and stderr) is scanned for
private key material: PEM private-key headers, and the lab's actual private keys (every
host's cfengine localhost.priv, root ssh keys, host keys, the admin key) as base64 and hex
fragments.

Host keys: first contact with an unknown host key fails unless explicitly allowed
(--accept-new-host-keys); a changed host key always fails, with accept-new too.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.support import PKG, csync, desired, drop_keys, lock_text

pytestmark = pytest.mark.lab

PEM_PRIVATE = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----\n(.*?)-----END \1PRIVATE KEY-----", re.S)


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _b64_fragments(data: bytes) -> set[str]:
    """40-character pieces of ``data`` in base64, at each of base64's three alignments."""
    out = set()
    for shift in range(3):
        text = base64.b64encode(b"\0" * shift + data).decode()
        out.update(text[i : i + 40] for i in range(0, len(text) - 39))
    return out


def private_fragments(lab) -> set[str]:
    """What a leak of any part of one of the lab's private keys would contain: 40-character
    pieces of each key's base64 body and of the hex of its secret numbers, without the
    pieces that are its public key (a private key file embeds the public key, which csync
    prints by design)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    fragments: set[str] = set()
    keys = 0
    for p in lab.state_dir.parent.rglob("*"):
        if not p.is_file() or p.is_symlink() or p.stat().st_size > 1_000_000:
            continue
        for m in PEM_PRIVATE.finditer(p.read_text(errors="replace").replace("\\n", "\n")):
            pem = m.group(0).encode()
            key = serialization.load_ssh_private_key(pem, None) if b"OPENSSH" in pem else serialization.load_pem_private_key(pem, None)
            public = key.public_key()
            blobs = [
                public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
                base64.b64decode(public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).split()[1]),
            ]
            if isinstance(key, rsa.RSAPrivateKey):
                blobs.append(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1))
                n = key.private_numbers()
                secrets = [n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp]
                secret_hex = [format(x, "x") for x in secrets]
            elif isinstance(key, ed25519.Ed25519PrivateKey):
                raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
                secret_hex = [raw.hex()]
            else:
                secret_hex = []
            public_pieces = set().union(*(_b64_fragments(b) for b in blobs))
            body = "".join(m.group(2).split())
            fragments.update(f for f in (body[i : i + 40] for i in range(0, len(body) - 40, 20)) if f not in public_pieces)
            for h in secret_hex:
                fragments.update(h[i : i + 40] for i in range(0, max(1, len(h) - 40), 20))
            keys += 1
    assert keys >= 5, "the lab's private keys were not found: the scan would prove nothing"
    return fragments


def test_no_private_key_material_in_anything_csync_prints_or_writes(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=3, clients=2)
    drop_keys(lab, "client1", PKG, "127.0.10.1", "127.0.10.2", "127.0.10.3")
    drop_keys(lab, "client2", PKG)
    lab.exec(
        "node3", "rm -f /etc/cmcluster/csync/*", check=True
    )  # unconfigured (no package files): a dispatch too  # installed from PEM (public keys in the plan)
    path = desired(lab, tmp_path)
    runs = [
        cli(tmp_path, "plan", "-f", str(path)),
        cli(tmp_path, "plan", "-f", str(path), "--format", "json"),
        cli(tmp_path, "plan", "-f", str(path), "--format", "markdown"),
        cli(tmp_path, "plan", "-f", str(path), "--out", "plan.json"),
        cli(tmp_path, "show", "plan.json"),
        cli(tmp_path, "facts", "-f", str(path)),
        cli(tmp_path, "facts", "-f", str(path), "--format", "json"),
        csync(tmp_path, "apply", "plan.json", "-f", str(path)),
        csync(tmp_path, "apply", "-f", str(path), "--auto-approve"),
        cli(tmp_path, "facts", "-f", str(path), "--format", "json"),
    ]
    assert runs[7].returncode == 0 and runs[8].returncode == 0, runs[7].stdout + runs[7].stderr
    written = {str(p.relative_to(tmp_path)): p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.name != "desired-state.yaml"}
    assert "plan.json" in written and any(k.startswith(".csync/runs/") for k in written)
    texts = {f"run {i} ({' '.join(r.args[2:5])}) {stream}": getattr(r, stream) for i, r in enumerate(runs) for stream in ("stdout", "stderr")}
    texts.update(written)
    fragments = private_fragments(lab)
    # the control: the scan finds a private key where there is one
    priv = "".join(lab.exec("client1", "cat /var/opt/dsau/cfengine/ppkeys/localhost.priv", check=True).stdout.split())
    assert any(f in priv for f in fragments)
    for where, text in texts.items():
        assert "PRIVATE KEY" not in text, where
        flat = "".join(text.split()).replace("\\n", "")
        leaked = [f for f in fragments if f in flat or f in text]
        assert not leaked, f"private key material in {where}"
    assert "BEGIN RSA PUBLIC KEY" in written["plan.json"]  # the control: key bodies do reach what is scanned


def known_hosts_entry(lab, address: str) -> tuple[str, str]:
    name = lab.known_hosts_name(address) + " "
    line = next(x for x in lab.known_hosts.read_text().splitlines() if x.startswith(name))
    return line, name


def test_apply_refuses_unknown_host_keys_unless_first_contact_is_allowed(lab_factory, tmp_path):
    lab = lab_factory("fresh", members=2, clients=2)
    drop_keys(lab, "client2", PKG)
    path = desired(lab, tmp_path)
    line, _ = known_hosts_entry(lab, "127.0.10.22")
    lab.known_hosts.write_text("".join(x + "\n" for x in lab.known_hosts.read_text().splitlines() if x != line))
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve")
    assert r.returncode == 1 and "unknown host key" in r.stdout + r.stderr and "--accept-new-host-keys" in r.stdout + r.stderr
    assert not (lab.host_path("client2", "/var/opt/dsau/cfengine/ppkeys") / f"root-{PKG}.pub").exists()
    assert lab.known_hosts.read_text().count("127.0.10.22") == 0
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", "--accept-new-host-keys")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.known_hosts.read_text().count("127.0.10.22") == 1 and lock_text(lab) is None


@pytest.mark.parametrize("accept_new", [False, True])
def test_apply_refuses_a_changed_host_key_even_with_accept_new(lab_factory, tmp_path, accept_new):
    lab = lab_factory("fresh", members=2, clients=2)
    drop_keys(lab, "client1", PKG)
    drop_keys(lab, "client2", PKG)
    path = desired(lab, tmp_path)
    line2, name2 = known_hosts_entry(lab, "127.0.10.22")
    line1, _ = known_hosts_entry(lab, "127.0.10.21")
    forged = name2 + line1.split(" ", 1)[1]  # client2 "presents" client1's key: a changed key
    before = lab.known_hosts.read_text().replace(line2, forged)
    lab.known_hosts.write_text(before)
    r = csync(tmp_path, "apply", "-f", str(path), "--auto-approve", *(["--accept-new-host-keys"] if accept_new else []))
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "CHANGED" in out and "man-in-the-middle" in out, out
    assert "client.client1.key" in out and not (lab.host_path("client2", "/var/opt/dsau/cfengine/ppkeys") / f"root-{PKG}.pub").exists()
    assert lab.known_hosts.read_text() == before  # never "fixed" by csync
