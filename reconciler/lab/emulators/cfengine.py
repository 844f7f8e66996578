#!/usr/bin/python3 -Es
"""Emulated cfengine 2 key trust for the csync lab, chosen by the name it is called by:

    cfagent [-q] [-K] [-v] [--policy-server ADDRESS]   pull check against the policy host
    cfrun [-T SECONDS] ADDRESS...                       "run now" requests to clients
    cfservd [CONNECTED-ADDRESS]                         the server side (ssh forced command)
    cfkey                                               a new localhost.priv/.pub pair

What is checked is cfengine 2's key rules (docs/DOMAIN.md, "why the key rules are what they
are"), with real RSA keys and a real challenge-response between two lab hosts:

- the caller (cfagent, cfrun) reads ``ppkeys/root-<address it connects to>.pub``;
- the server (cfservd) reads ``ppkeys/root-<caller's source address>.pub`` and requires the
  caller's offered public key (its ``localhost.pub``) to be that very key, as cfservd's
  CheckStoreKey does (no trustkeysfrom: an unknown key is never accepted on trust);
- each side proves it holds its ``localhost.priv`` by signing the other's fresh nonce, and
  the other side verifies the signature with the file it looked up.

The network [ours]: cfengine's TCP 5308 is emulated by ssh between the hosts, leaving from
the caller's own address (``ssh -b``), with a lab-wide key that each host's sshd only
accepts for the forced command ``cfservd`` (``/run/csync-host/cfservd_authorized_keys``); so
the server sees the caller's real source address, and root's own authorized_keys, which
csync manages, is not involved. "Who answers at address X" is the host with address X, or
for the package address the node running the package (none while it is halted).

Output, one line per target, in the order given [ours, parsed by csync]:

    <tool> <address>: ok
    <tool> <address>: <cfengine message> [<where> <detail>]

where <where> is ``local`` (the caller's file), ``remote`` (the server's file) or
``unreachable``; for local/remote the detail is ``<path> missing|mismatch|unreadable``.
Exit codes: 0 every target ok, 1 any failed, 2 bad command line.
"""

from __future__ import annotations

import base64
import getopt
import json
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

try:
    from . import labhost, sgcluster
except ImportError:
    import labhost  # type: ignore[no-redef]
    import sgcluster  # type: ignore[no-redef]

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

OWN_PRIVATE = f"{labhost.PPKEYS}/localhost.priv"
OWN_PUBLIC = f"{labhost.PPKEYS}/localhost.pub"
CFNET_CONFIG = f"{labhost.IN_HOST_STATE}/cfnet/ssh_config"
SERVER_CONTEXT = b"csync-lab cfservd\0"
CLIENT_CONTEXT = b"csync-lab client\0"
DEFAULT_TIMEOUT = 15.0


def peer_key_path(address: str) -> str:
    return f"{labhost.PPKEYS}/root-{address}.pub"


class Refused(Exception):
    """A failed dialogue: the cfengine-style message and the bracketed detail."""

    def __init__(self, message: str, detail: str):
        super().__init__(message)
        self.message, self.detail = message, detail


def _load_private(path: str, where: str) -> rsa.RSAPrivateKey:
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError:
        raise Refused("", f"{where} {path} missing") from None
    except (OSError, ValueError, TypeError):
        raise Refused("", f"{where} {path} unreadable") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise Refused("", f"{where} {path} unreadable")
    return key


def _load_public(data: bytes, path: str, where: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise Refused("", f"{where} {path} unreadable") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("", f"{where} {path} unreadable")
    return key


def _read_public(path: str, where: str) -> rsa.RSAPublicKey:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise Refused("", f"{where} {path} missing") from None
    except OSError:
        raise Refused("", f"{where} {path} unreadable") from None
    return _load_public(data, path, where)


def _same(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()


def _sign(key: rsa.RSAPrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


def _verify(key: rsa.RSAPublicKey, signature: str, data: bytes) -> bool:
    try:
        key.verify(base64.b64decode(signature), data, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def _send(stream, message: dict) -> None:
    stream.write(json.dumps(message).encode() + b"\n")
    stream.flush()


def _receive(stream) -> dict | None:
    line = stream.readline()
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


# --- the caller's side (cfagent, cfrun) -------------------------------------------------------


def dialogue(address: str, timeout: float) -> None:
    """Authenticate against whoever answers at ``address``; raises Refused on failure."""
    failed = f"Key-authentication for {address} failed"
    try:
        own = _load_private(OWN_PRIVATE, "local")
        with open(OWN_PUBLIC, "rb") as f:
            own_public_pem = f.read()
    except FileNotFoundError:
        raise Refused(failed, f"local {OWN_PUBLIC} missing") from None
    except Refused as e:
        raise Refused(failed, e.detail) from None
    try:
        if not _same(_load_public(own_public_pem, OWN_PUBLIC, "local"), own.public_key()):
            raise Refused(failed, f"local {OWN_PUBLIC} mismatch")  # cannot prove the key it offers
        server_key = _read_public(peer_key_path(address), "local")
    except Refused as e:
        raise Refused(failed, e.detail) from None

    lab = labhost.LabState()
    target = _answering(lab, address)
    me = lab.own_host()["address"]
    argv = [labhost.SSH, "-F", CFNET_CONFIG, "-b", me, target, "cfservd", address]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        nonce = os.urandom(32)
        _send(proc.stdin, {"hello": own_public_pem.decode(), "nonce": base64.b64encode(nonce).decode()})
        reply = _receive(proc.stdout)
        if reply is None:
            raise Refused(f"Couldn't connect to {address}", f"unreachable {_ssh_failure(proc, timeout, expired)}")
        if not reply.get("ok"):
            raise Refused(reply.get("message", "BAD: refused"), reply.get("detail", "remote refused"))
        if not _verify(server_key, reply.get("signature", ""), SERVER_CONTEXT + address.encode() + b"\0" + nonce):
            _send(proc.stdin, {"abort": True})
            raise Refused(failed, f"local {peer_key_path(address)} mismatch")
        challenge = base64.b64decode(reply.get("challenge", ""))
        _send(proc.stdin, {"response": _sign(own, CLIENT_CONTEXT + challenge)})
        final = _receive(proc.stdout)
        if final is None:
            raise Refused(f"Couldn't connect to {address}", f"unreachable {_ssh_failure(proc, timeout, expired)}")
        if not final.get("ok"):
            raise Refused(final.get("message", "BAD: refused"), final.get("detail", "remote refused"))
    except BrokenPipeError:
        raise Refused(f"Couldn't connect to {address}", f"unreachable {_ssh_failure(proc, timeout, expired)}") from None
    finally:
        timer.cancel()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answering(lab: labhost.LabState, address: str) -> str:
    """The real address of the host that answers at ``address`` in the lab: the host with that
    address, or for the package address the node that runs the package."""
    package = lab.package()
    if package and address == package["address"]:
        # [ours] a package that is still starting does not answer yet; a detached one still does.
        owner = next((p.get("owner") for p in sgcluster.Cluster.read(lab).packages
                      if p["address"] == address and p["status"] != "starting"), None)
        if not owner:
            raise Refused(f"Couldn't connect to {address}", f"unreachable package {package['name']} is not running")
        return lab.host(owner)["address"]
    host = lab.host(address)
    if host is None:
        raise Refused(f"Couldn't connect to {address}", "unreachable no host of the lab answers at this address")
    return host["address"]


def _ssh_failure(proc: subprocess.Popen, timeout: float, expired: threading.Event) -> str:
    """Why the peer did not answer, in one line: the timeout, or ssh's last complaint."""
    if expired.is_set():
        return f"no answer within {timeout:g}s"
    try:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    except (OSError, ValueError):
        err = ""
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    return lines[-1] if lines else "connection closed"


def run_one(tool: str, address: str, timeout: float) -> tuple[bool, str]:
    try:
        dialogue(address, timeout)
    except Refused as e:
        return False, f"{tool} {address}: {e.message} [{e.detail}]"
    except labhost.LabStateError as e:
        return False, f"{tool} {address}: Couldn't connect to {address} [unreachable {e}]"
    return True, f"{tool} {address}: ok"


def cfrun(argv: list[str]) -> int:
    try:
        opts, args = getopt.getopt(argv, "T:")
        timeout = float(dict(opts).get("-T", DEFAULT_TIMEOUT))
    except (getopt.GetoptError, ValueError) as e:
        return _usage("cfrun", str(e), "cfrun [-T SECONDS] ADDRESS...")
    if not args:
        return _usage("cfrun", "name at least one host", "cfrun [-T SECONDS] ADDRESS...")
    lab = labhost.LabState()
    targets = []
    for a in args:  # lab host names are accepted for convenience; addresses are what cfrun uses
        host = lab.host(a) if not re.fullmatch(r"[0-9.]+", a) else None
        targets.append(host["address"] if host else a)
    with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
        results = list(pool.map(lambda t: run_one("cfrun", t, timeout), targets))
    for _, line in results:
        print(line)
    return 0 if all(ok for ok, _ in results) else 1


POLICY_HOST = re.compile(r"policyhost\s*=\s*\(\s*([0-9.]+)\s*\)")


def cfagent(argv: list[str]) -> int:
    usage = "cfagent [-q] [-K] [-v] [--policy-server ADDRESS]"
    try:
        opts, args = getopt.getopt(argv, "qKv", ["policy-server="])
    except getopt.GetoptError as e:
        return _usage("cfagent", str(e), usage)
    if args:
        return _usage("cfagent", f"unexpected argument {args[0]!r}", usage)
    server = dict(opts).get("--policy-server")
    if server is None:
        update = f"{labhost.INPUTS}/update.conf"
        try:
            with open(update) as f:
                found = POLICY_HOST.search(f.read())
        except OSError:
            found = None
        if not found:
            print(f"cfagent: no policy host: {update} is missing or names none", file=sys.stderr)
            return 1
        server = found.group(1)
    ok, line = run_one("cfagent", server, DEFAULT_TIMEOUT)
    print(line)
    return 0 if ok else 1


# --- the server's side (cfservd, as an ssh forced command) ------------------------------------


def cfservd(argv: list[str]) -> int:
    peer = (os.environ.get("SSH_CLIENT") or "").split(" ")[0]
    if not peer:
        print("cfservd: runs as the lab's cfengine network endpoint (an ssh forced command) only", file=sys.stderr)
        return 2
    connected = argv[0] if argv else (os.environ.get("SSH_ORIGINAL_COMMAND", "").split() + ["", ""])[1]
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    hello = _receive(inp)
    if hello is None:
        return 1
    path = peer_key_path(peer)
    try:
        try:
            saved = _read_public(path, "remote")
        except Refused as e:
            # cfservd's CheckStoreKey: no key on file for this address, and no trustkeysfrom.
            trust = "BAD: key could not be accepted on trust" if e.detail.endswith(" missing") else "BAD: key could not be read"
            raise Refused(trust, e.detail) from None
        offered = _load_public(hello.get("hello", "").encode(), "offered key", "remote")
        if not _same(saved, offered):
            raise Refused("BAD: keys did not match", f"remote {path} mismatch")
        try:
            own = _load_private(OWN_PRIVATE, "remote")
        except Refused as e:
            raise Refused("BAD: server has no usable key pair", e.detail) from None
    except Refused as e:
        _send(out, {"ok": False, "message": e.message or "BAD: offered key unreadable", "detail": e.detail})
        return 1
    nonce = base64.b64decode(hello.get("nonce", ""))
    challenge = os.urandom(32)
    _send(out, {"ok": True, "signature": _sign(own, SERVER_CONTEXT + connected.encode() + b"\0" + nonce),
                "challenge": base64.b64encode(challenge).decode()})
    answer = _receive(inp)
    if answer is None or answer.get("abort"):
        return 1
    if not _verify(saved, answer.get("response", ""), CLIENT_CONTEXT + challenge):
        _send(out, {"ok": False, "message": "BAD: challenge response was incorrect", "detail": f"remote {path} mismatch"})
        return 1
    _send(out, {"ok": True, "message": f"OK: key accepted for {peer}"})
    return 0


def cfkey(argv: list[str]) -> int:
    if argv:
        return _usage("cfkey", f"unexpected argument {argv[0]!r}", "cfkey")
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    os.makedirs(labhost.PPKEYS, mode=0o700, exist_ok=True)
    labhost.write_atomic(OWN_PRIVATE, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                                        serialization.NoEncryption()), 0o600)
    labhost.write_atomic(OWN_PUBLIC, key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1), 0o644)
    print(f"cfkey: new key pair in {labhost.PPKEYS}")
    return 0


def _usage(tool: str, problem: str, usage: str) -> int:
    print(f"{tool}: {problem}\nusage: {usage}", file=sys.stderr)
    return 2


COMMANDS = {"cfagent": cfagent, "cfrun": cfrun, "cfservd": cfservd, "cfkey": cfkey}

if __name__ == "__main__":
    tool = os.path.basename(sys.argv[0])
    if tool not in COMMANDS:
        print(f"{tool}: not a cfengine command of the lab ({', '.join(COMMANDS)})", file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[tool](sys.argv[1:]))
