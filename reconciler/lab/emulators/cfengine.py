#!/usr/bin/python3 -Es
"""Emulated cfengine 2 key trust for the csync lab, chosen by the name it is called by:

    cfrun [-f HOSTSFILE] [-h] [-d] [-v] [-S] [-T] [HOST...] [-- OPTIONS... [-- CLASSES...]]
    cfagent [OPTIONS] [-f FILE]                         cfengine 2's options; -f: copies, else the update
    cfservd [CONNECTED-ADDRESS]                         the server side (ssh forced command)
    cfkey                                               a new localhost.priv/.pub pair

cfrun follows cfengine 2's src/cfrun.c (CheckOptsAndInit, ReadCfrunConf, PollServer) and the
client half of src/proto.c (KeyAuthentication); cfservd the server half of src/cfservd.c
(CheckStoreKey); the key files follow src/crypto.c (HavePublicKey, SavePublicKey):

- options are matched on their first two characters (``-T5`` is ``-T``); ``-T`` trusts every
  key it lacks, and so writes it; there is no timeout option; a bad option prints the usage
  and exits 0; cfrun always exits 0, whatever happened to each host;
- the hosts come from the hosts file (``-f FILE``; default ``cfrun.hosts`` in $CFINPUTS, else
  in /var/opt/dsau/cfengine/inputs; a name without ``/`` is taken from there too); hosts named
  on the command line only restrict that list, compared with each line's host as written;
  the file's ``domain``, ``hostnamekeys``, ``maxchild``, ``bindtointerface`` and ``include``
  lines are read; ``HOST:PORT`` is accepted and the port ignored [ours: one lab port];
- for each host, cfrun looks for ``root-<host as written>.pub``, then ``root-<its address>.pub``
  (the first address the host name resolves to): with neither (a file that does not parse
  counts as absent), ``-T`` accepts the key on trust, otherwise cfrun asks "Do you want to
  accept one on trust? (yes/no)" and reads stdin until it gets yes or no;
- the key that authenticates the server is ``root-<its address>.pub``, or with
  ``hostnamekeys = true`` in the hosts file ``root-<host as written>.pub``: so a name key that
  exists but is wrong defeats a correct address key only with hostnamekeys; without it, a
  name key only stops the question (and ``-T``) while the address key is missing;
- a key accepted on trust is saved under that name once the dialogue succeeds, with mode 600
  (cfrun's umask 077), and never over an existing file;
- the server (cfservd) authenticates the caller with ``root-<caller's source address>.pub``,
  or, with ``HostnameKeys = ( on )`` in its inputs/cfservd.conf, ``root-<caller's name>.pub``,
  the name being what the caller's own resolver gives for its source address (lower case);
  a missing key is refused ("BAD: key could not be accepted on trust": no TrustKeysFrom),
  another key too ("BAD: keys did not match");
- nothing is bounded in time: a host that accepts the connection and never answers makes
  cfrun wait for ever, as cfrun's recv does (connect() has a 10 s alarm, CF_TIMEOUT, but in
  the lab nobody listening means refused at once);
- a cfrun leaves from the address ``bindtointerface`` names when it is one of the host's
  (else, silently, as bind() failing does, from the default), else from the address routing
  picks: in the lab the host's own address, or CSYNC_LAB_SOURCE_ADDRESS [ours].

Each side proves it holds its ``localhost.priv`` by signing the other's fresh nonce, and the
other side verifies the signature with the file it looked up (RSA, as cfengine does with its
encrypted nonces).

The network [ours]: cfengine's TCP 5308 is emulated by ssh between the hosts, leaving from
the caller's chosen address (``ssh -b``), with a lab-wide key that each host's sshd only
accepts for the forced command ``cfservd`` (``/run/csync-host/cfservd_authorized_keys``); so
the server sees the caller's real source address, and root's own authorized_keys, which
csync manages, is not involved. "Who answers at address X" is the host with address X (its
main or extra address), or for a package address the node running the package (none while
it is halted).

Output, one line per host [ours, parsed by csync], after cfrun's own questions and notices:

    <tool> <host as written>: ok
    <tool> <host as written>: <cfengine message> [<where> <detail>]

where <where> is ``local`` (the caller's file), ``remote`` (the server's file) or
``unreachable``; for local/remote the detail is ``<path> missing|mismatch|unreadable``. cfrun
prints each host's lines when that host is done (as its forked child's buffered output
appears when the child exits), so with ``maxchild`` above 1 the hosts come in the order they
finish.

cfagent follows src/cfagent.c (CheckOpts, main) and parse.c (FindInputFile, ParseInputFile):
cfengine 2's option letters and long options; an unknown one prints the syntax and exits 1;
``-f FILE`` reads FILE (as it is when it starts with '.' or '/', else from $CFINPUTS or the
inputs directory; a missing file is no error) and skips update.conf, ``-B`` stops after the
update, ``-n`` writes nothing, ``-k`` copies nothing, ``-p`` only parses. The input file is
read with a subset of cfengine 2's grammar [ours]: ``control:`` with ``actionsequence = (
copy )``, ``copy:`` entries ``SOURCE dest=... server=... [trustkey=] [encrypt=] [mode=]
[type=]``, ``any::`` and comments; anything else is an error (exit 1, as cfengine exits after
errors in parsing). Each copy authenticates as above (trustkey=false by default: a missing key
is never trusted), then asks cfservd for the file, which serves only regular files of its host's
master inputs that its cfservd.conf's ``admit:`` grants the caller [ours]; the copy is written
beside its destination (``.cfnew``) and renamed. Without -f, cfagent runs the update:
it authenticates against update.conf's ``policyhost`` and copies nothing [ours]. Its result
line per copy (or update) follows the grammar above; cfagent exits 0 whatever its copies did.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import getopt
import ipaddress
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
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
CFAGENT_TIMEOUT = 15.0  # [ours] cfagent's limit per dialogue
CF_TIMEOUT = 10  # [src] globals.c: the connect() alarm of RemoteConnect (ip.c)
CFRUN_HOSTS = "cfrun.hosts"  # [src] cfrun.c: VCFRUNHOSTS
CFINPUTS_ENV = "CFINPUTS"  # [src] cf.defs.h: CF_INPUTSVAR
SOURCE_ENV = "CSYNC_LAB_SOURCE_ADDRESS"  # [ours] the address routing picks for this host's connections
PROMPT_REPEAT_SECONDS = 1.0  # [ours] cfrun spins on end of input; the lab repeats its question once a second
STDIO_BUFFER = 4096  # what one stdio refill of a pipe reads (a child's first fgets takes what is there)
FGETS_SIZE = 8  # [src] cfrun.c: fgets(reply, 8, stdin)


def key_path(name: str) -> str:
    """ppkeys/root-<name>.pub: a peer's key under its address or its host name."""
    return f"{labhost.PPKEYS}/root-{name}.pub"


peer_key_path = key_path  # the name the lab's first tests used


class Refused(Exception):
    """A failed dialogue: the cfengine-style message and the bracketed detail."""

    def __init__(self, message: str, detail: str):
        super().__init__(message)
        self.message, self.detail = message, detail


# --- keys -------------------------------------------------------------------------------------


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


def have_public_key(name: str) -> tuple[rsa.RSAPublicKey | None, str]:
    """crypto.c HavePublicKey: the key in ppkeys/root-<name>.pub, or None when the file is
    missing or does not parse (both count as "no key"); and why not (missing|unreadable)."""
    try:
        return _read_public(key_path(name), "local"), ""
    except Refused as e:
        return None, e.detail.rsplit(" ", 1)[1]


def save_public_key(name: str, pem: bytes) -> None:
    """crypto.c SavePublicKey: write ppkeys/root-<name>.pub unless a file is there already;
    cfrun's umask (077) leaves it mode 600."""
    path = key_path(name)
    if os.path.lexists(path):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


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


class Caller:
    """One dialogue, as proto.c's KeyAuthentication runs it for cfrun or cfagent.

    ``server`` is the host as written (cfrun) or the address (cfagent); ``address`` the
    address it resolved to and connects to; ``keyname`` what root-<keyname>.pub the server's
    key is looked up as; ``trust`` whether a missing key may be accepted on trust."""

    def __init__(
        self, tool: str, server: str, address: str, keyname: str, trust: bool, source: str, timeout: float | None, domain: str = "", get: str | None = None
    ):
        self.tool, self.server, self.address, self.keyname = tool, server, address, keyname
        self.trust, self.source, self.timeout, self.domain = trust, source, timeout, domain
        self.get = get  # cfagent's copy: the server's file to fetch once authenticated
        self.fetched: tuple[bytes, int] | None = None  # its content and mode

    def _unreachable(self, reason: str) -> Refused:
        message = f"No response hailing {self.server}" if self.tool == "cfrun" else f"Couldn't connect to {self.address}"
        return Refused(message, f"unreachable {reason}")

    def _failed(self, detail: str, message: str = "") -> Refused:
        if self.tool == "cfagent":  # the lab's first messages, which csync's tests read
            return Refused(f"Key-authentication for {self.address} failed", detail)
        return Refused(message or f"Key-authentication for {self.server} failed", detail)

    def _asserted_name(self) -> str:
        """IdentifyForVerification: the name this caller's resolver gives its source address
        (the address itself when it has none), with cfrun's domain appended to a bare name."""
        try:
            name = socket.getnameinfo((self.source, 0), 0)[0]
        except OSError:
            name = self.source
        if self.domain and "." not in name:
            name = f"{name}.{self.domain}"
        return name

    def run(self) -> None:
        if self.tool == "cfagent":
            self._precheck()
        lab = labhost.LabState()
        target = _answering(lab, self.address, self._unreachable)
        # cfrun: no time limit once connected (recv), and connecting to a lab address that
        # nobody listens on is refused at once; cfagent: the lab's limits [ours]
        limit = "none" if self.timeout is None else str(CF_TIMEOUT)
        argv = [labhost.SSH, "-F", CFNET_CONFIG, "-o", f"ConnectTimeout={limit}", "-b", self.source, target, "cfservd", self.address]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        expired = threading.Event()
        timer = None
        if self.timeout is not None:

            def expire() -> None:
                expired.set()
                proc.kill()

            timer = threading.Timer(self.timeout, expire)
            timer.start()
        try:
            self._dialogue(proc, expired)
        except BrokenPipeError:
            raise self._gone(proc, expired) from None
        finally:
            if timer is not None:
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

    def _precheck(self) -> None:
        """The lab's cfagent checks its own files before connecting [ours: cfengine connects
        first; the order only matters when the server is unreachable too]."""
        try:
            own = _load_private(OWN_PRIVATE, "local")
            if not _same(_read_public(OWN_PUBLIC, "local"), own.public_key()):
                raise Refused("", f"local {OWN_PUBLIC} mismatch")
        except Refused as e:
            raise self._failed(e.detail) from None
        key, why = have_public_key(self.keyname)
        if key is None and not self.trust:
            raise self._failed(f"local {key_path(self.keyname)} {why}")

    def _gone(self, proc: subprocess.Popen, expired: threading.Event) -> Exception:
        """Why the server did not answer."""
        if expired.is_set():
            return self._unreachable(f"no answer within {self.timeout:g}s")
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        try:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        except (OSError, ValueError):
            err = ""
        lines = [line.strip() for line in err.splitlines() if line.strip()]
        return self._unreachable(lines[-1] if lines else "connection closed")

    def _dialogue(self, proc: subprocess.Popen, expired: threading.Event) -> None:
        # The caller's key pair (KeyAuthentication: "No public/private key pair found").
        try:
            own = _load_private(OWN_PRIVATE, "local")
            with open(OWN_PUBLIC, "rb") as f:
                own_public_pem = f.read()
            if not _same(_load_public(own_public_pem, OWN_PUBLIC, "local"), own.public_key()):
                raise Refused("", f"local {OWN_PUBLIC} mismatch")  # it could not prove the key it offers
        except FileNotFoundError:
            raise self._failed(f"local {OWN_PUBLIC} missing", "No public/private key pair found") from None
        except Refused as e:
            raise self._failed(e.detail, "No public/private key pair found") from None
        server_key, why = have_public_key(self.keyname)
        nonce = os.urandom(32)
        _send(
            proc.stdin,
            {
                "hello": own_public_pem.decode(),
                "nonce": base64.b64encode(nonce).decode(),
                "have_key": server_key is not None,
                "user": "root",
                "name": self._asserted_name(),
            },
        )
        reply = _receive(proc.stdout)
        if reply is None:
            raise self._gone(proc, expired)
        if not reply.get("ok"):  # the server refused the caller's key (CheckStoreKey)
            raise Refused(reply.get("message", "BAD: refused"), reply.get("detail", "remote refused"))
        if server_key is not None:
            if not _verify(server_key, reply.get("signature", ""), SERVER_CONTEXT + self.address.encode() + b"\0" + nonce):
                _send(proc.stdin, {"abort": True})
                raise self._failed(f"local {key_path(self.keyname)} mismatch", f"Challenge response from server {self.server}/{self.address} was incorrect!")
        elif not self.trust:
            _send(proc.stdin, {"abort": True})
            raise self._failed(f"local {key_path(self.keyname)} {why}", f"Not authorized to trust the server={self.server}'s public key (trustkey=false)")
        challenge = base64.b64decode(reply.get("challenge", ""))
        _send(proc.stdin, {"response": _sign(own, CLIENT_CONTEXT + challenge)})
        final = _receive(proc.stdout)
        if final is None:
            raise self._gone(proc, expired)
        if not final.get("ok"):
            raise Refused(final.get("message", "BAD: refused"), final.get("detail", "remote refused"))
        if server_key is None:  # accepted on trust: the server sent its key (propositions S4, S5)
            pem = final.get("public_key", "").encode()
            try:
                _load_public(pem, "the server's key", "remote")
            except Refused:
                raise self._failed("remote offered key unreadable", "Protocol error in RSA authentation") from None
            save_public_key(self.keyname, pem)
        if self.get is not None:
            self._fetch(proc, expired)

    def _fetch(self, proc: subprocess.Popen, expired: threading.Event) -> None:
        """The copy's requests once authenticated (client.c cf_rstat, CopyRegNet): the file's
        content and mode, or the server's refusal."""
        _send(proc.stdin, {"get": self.get})
        reply = _receive(proc.stdout)
        if reply is None:
            raise self._gone(proc, expired)
        if not reply.get("ok"):
            raise Refused(reply.get("message", "BAD: refused"), reply.get("detail", f"remote {self.get} denied"))
        try:
            data, mode = base64.b64decode(reply["data"]), int(reply["mode"]) & 0o7777
        except (KeyError, ValueError, TypeError):
            raise Refused(f"Network error getting {self.server}:{self.get}", f"remote {self.get} unreadable") from None
        self.fetched = (data, mode)


def _answering(lab: labhost.LabState, address: str, unreachable) -> str:
    """The real address to reach whoever answers at ``address`` in the lab: that address for
    a host's own (main or extra) address, the package owner's address for a package address."""
    package = lab.package()
    if package and address in [package["address"], *package.get("extra_addresses", ())]:
        # [ours] a package that is still starting does not answer yet; a detached one still does.
        owner = next((p.get("owner") for p in sgcluster.Cluster.read(lab).packages if p["address"] == package["address"] and p["status"] != "starting"), None)
        if not owner:
            raise unreachable(f"package {package['name']} is not running")
        return lab.host(owner)["address"]
    if lab.host(address) is None:
        raise unreachable("no host of the lab answers at this address")
    return address


def _own_addresses(me: dict) -> list[str]:
    return [me["address"], *me.get("extra_addresses", ())]


def _default_source(me: dict, tool: str) -> str:
    """The address routing picks [ours]: the host's own, or CSYNC_LAB_SOURCE_ADDRESS."""
    chosen = os.environ.get(SOURCE_ENV, "").strip()
    if chosen:
        if chosen not in _own_addresses(me):
            raise SystemExit(_usage(tool, f"{SOURCE_ENV}={chosen} is not an address of this host ({', '.join(_own_addresses(me))})", None))
        return chosen
    return me["address"]


# --- cfrun ------------------------------------------------------------------------------------

CFRUN_USAGE = """\
usage: cfrun [-f HOSTSFILE] [-h] [-d] [-v] [-S] [-T] [HOST...] [-- OPTIONS... [-- CLASSES...]]
  -f HOSTSFILE  the hosts file (default cfrun.hosts in the inputs directory)
  -h            this help
  -d, -v        debugging, verbose (no more output in the lab)
  -S            silent
  -T            trust every public key it lacks (and store it)
  HOST...       only these hosts of the hosts file
  -- OPTIONS    passed to cfagent on each host; a second -- then classes
hosts file lines: domain = D, maxchild = N, hostnamekeys = true, bindtointerface = ADDRESS,
include = FILE, outputdir = DIR, access = USERS, and one HOST[:PORT] [OPTIONS] per line"""


class CfrunOptions:
    def __init__(self) -> None:
        self.hosts_file = CFRUN_HOSTS
        self.trust_all = False
        self.restrict: list[str] = []
        self.remote_options: list[str] = []
        self.classes: list[str] = []


def parse_cfrun_argv(argv: list[str]) -> CfrunOptions | str:
    """cfrun.c CheckOptsAndInit: the options, or the text to print before exiting 0."""
    o = CfrunOptions()
    group = 0
    i = 0
    while i < len(argv):
        a = argv[i]
        if group == 0:
            if a.startswith("-h"):
                return CFRUN_USAGE
            if a.startswith("-f"):
                i += 1
                if i >= len(argv) or argv[i].startswith("-"):
                    return "Error: No filename listed after -f option.\n" + CFRUN_USAGE
                o.hosts_file = argv[i]
            elif a.startswith(("-d", "-v", "-S")):
                pass
            elif a.startswith("-T"):
                o.trust_all = True
            elif a.startswith("--"):
                group = 1
            elif a.startswith("-"):
                return "Error: Unknown option.\n" + CFRUN_USAGE
            else:
                o.restrict.append(a)
        elif group == 1:
            if a.startswith("--"):
                group = 2
            else:
                o.remote_options.append(a)
        else:
            o.classes.append(a)
        i += 1
    return o


class HostsFile:
    """What cfrun.c's ReadCfrunConf takes from a hosts file."""

    def __init__(self) -> None:
        self.hosts: list[tuple[str, str]] = []  # (host as written, with the domain; its options)
        self.domain = ""
        self.hostnamekeys = False
        self.maxchild = 1
        self.bindtointerface = ""
        self.messages: list[str] = []


SETTING = {
    name: re.compile(rf"^{name}\s*=\s*([^#\s]*)") for name in ("domain", "hostnamekeys", "maxchild", "outputdir", "outputlevel", "include", "bindtointerface")
}


def read_hosts_file(top: str, restrict: list[str]) -> HostsFile:
    cfg = HostsFile()
    # The inputs directory prefixes every file read while the top file's name has no '/'
    # (ReadCfrunConf tests the top file's name, includes included).
    if "/" in top:
        prefix = ""
    else:
        inputs = os.environ.get(CFINPUTS_ENV)
        prefix = (inputs if inputs.endswith("/") else inputs + "/") if inputs else f"{labhost.INPUTS}/"

    def read(name: str, depth: int) -> None:
        path = prefix + name
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            cfg.messages.append(f"Unable to open {path}")
            return
        for line in lines:
            if line.startswith("domain"):
                m = SETTING["domain"].match(line)
                if m:
                    cfg.domain = m.group(1)
                continue
            if line.startswith("hostna"):
                m = SETTING["hostnamekeys"].match(line)
                if m and m.group(1) in ("yes", "true"):
                    cfg.hostnamekeys = True
                continue
            if line.startswith("maxchild"):
                m = SETTING["maxchild"].match(line)
                digits = re.match(r"[+-]?\d+", m.group(1)) if m else None
                cfg.maxchild = int(digits.group()) if digits and int(digits.group()) > 0 else 1
                continue
            if line.startswith(("outputdir", "outputlevel", "access")):
                continue  # per-host output files, levels and users: not emulated (root may always run cfrun)
            if line.startswith("include"):
                m = SETTING["include"].match(line)
                if m and m.group(1) and depth < 20:
                    read(m.group(1), depth + 1)
                continue
            if line.startswith("bindtointerface"):
                m = SETTING["bindtointerface"].match(line)
                if m:
                    cfg.bindtointerface = m.group(1)
                continue
            fields = line.split("#", 1)[0].split(None, 1) if not line.lstrip().startswith("#") else []
            if not fields:
                continue
            host, options = fields[0], (fields[1].strip() if len(fields) > 1 else "")
            if restrict and host not in restrict:
                continue
            if "." not in host and cfg.domain:
                host = f"{host}.{cfg.domain}"
            if host not in [h for h, _ in cfg.hosts]:
                cfg.hosts.append((host, options))

    read(top, 0)
    return cfg


class Stdin:
    """cfrun's questions read stdin with fgets in each forked child, whose stdio buffer starts
    empty: the first question of a child takes whatever the pipe holds at that moment (one
    refill), so a list of answers written in advance answers the first child's question and
    the next child sees end of input."""

    lock = threading.Lock()

    def __init__(self) -> None:
        self.buffer = b""
        self.eof = False

    def fgets(self) -> str | None:
        """One fgets(reply, 8, stdin): up to 7 characters, through a newline; None at EOF."""
        if not self.buffer and not self.eof:
            with Stdin.lock:
                try:
                    self.buffer = os.read(0, STDIO_BUFFER)
                except OSError:
                    self.buffer = b""
            self.eof = not self.buffer
        if not self.buffer:
            return None
        end = self.buffer.find(b"\n")
        n = FGETS_SIZE - 1 if end < 0 else min(end + 1, FGETS_SIZE - 1)
        text, self.buffer = self.buffer[:n], self.buffer[n:]
        return text.decode(errors="replace")


class Poll:
    """One host of a cfrun: the output it prints when done (cfrun.c PollServer)."""

    print_lock = threading.Lock()

    def __init__(self, host: str, cfg: HostsFile, trust_all: bool, source: str, slot: int = 0):
        self.host, self.cfg, self.trust_all, self.source, self.slot = host, cfg, trust_all, source, slot
        self.out: list[str] = []
        self.flushed = False

    def write(self, text: str) -> None:
        if self.flushed:
            with Poll.print_lock:
                sys.stdout.write(text)
                sys.stdout.flush()
        else:
            self.out.append(text)

    def flush(self) -> None:
        with Poll.print_lock:
            sys.stdout.write("".join(self.out))
            sys.stdout.flush()
        self.out, self.flushed = [], True

    def ask(self, address: str) -> bool:
        """The question for a key cfrun lacks; True for yes. At end of input the reply stays
        what it was and cfrun asks again, for ever."""
        self.write(f"WARNING - You do not have a public key from host {self.host} = {address}\n          Do you want to accept one on trust? (yes/no)\n\n--> ")
        stdin, reply = Stdin(), ""
        while True:
            got = stdin.fgets()
            if got is not None:
                reply = got.rstrip()
            if got is not None and reply == "yes":
                return True
            if got is not None and reply == "no":
                return False
            if got is None and not self.flushed:
                self.flush()  # [ours] shown at once; the real child's output waits in its buffer
            self.write(f"Please reply yes or no...({reply})\n")
            if got is None:
                time.sleep(PROMPT_REPEAT_SECONDS)

    def run(self) -> None:
        # [src] cfrun.c main: each forked child first prints its banner (into its buffered
        # output: it appears with the host's lines); i is the child's slot
        self.write(f"cfrun({self.slot}):         .......... [ Hailing {self.host} ] ..........\n")
        parsed = self.host.split(":", 1)[0]  # ParseHostname: HOST[:PORT]
        try:
            address = socket.getaddrinfo(parsed, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except (OSError, IndexError):
            address = ""
        gotkey = have_public_key(parsed)[0] is not None or (address and have_public_key(address)[0] is not None)
        trust = False
        if not gotkey:
            if self.trust_all:
                self.write(f"Accepting public key from {parsed}\n")
                trust = True
            else:
                trust = self.ask(address)
        keyname = parsed if self.cfg.hostnamekeys else address
        try:
            if not address:
                raise Refused(f"No response hailing {parsed}", f"unreachable unable to look up {parsed}")
            Caller("cfrun", parsed, address, keyname, trust, self.source, None, self.cfg.domain).run()
        except Refused as e:
            self.write(f"cfrun {parsed}: {e.message} [{e.detail}]\n")
        except labhost.LabStateError as e:
            self.write(f"cfrun {parsed}: No response hailing {parsed} [unreachable {e}]\n")
        else:
            self.write(f"cfrun {parsed}: ok\n")
        if not self.flushed:
            self.flush()


def cfrun(argv: list[str]) -> int:
    parsed = parse_cfrun_argv(argv)
    if isinstance(parsed, str):
        print(parsed)
        return 0  # cfrunSyntax() exits 0
    cfg = read_hosts_file(parsed.hosts_file, parsed.restrict)
    for message in cfg.messages:
        print(message)
    sys.stdout.flush()
    if not cfg.hosts:
        return 0
    try:
        me = labhost.LabState().own_host()
    except labhost.LabStateError as e:
        return _usage("cfrun", str(e), None)
    source = cfg.bindtointerface if cfg.bindtointerface in _own_addresses(me) else _default_source(me, "cfrun")
    polls = [Poll(host, cfg, parsed.trust_all, source, i % cfg.maxchild) for i, (host, _) in enumerate(cfg.hosts)]
    if cfg.maxchild == 1:
        for p in polls:
            p.run()
    else:
        with ThreadPoolExecutor(max_workers=min(cfg.maxchild, len(polls))) as pool:
            list(pool.map(lambda p: p.run(), polls))
    return 0


# --- cfagent ----------------------------------------------------------------------------------

POLICY_HOST = re.compile(r"policyhost\s*=\s*\(\s*([0-9.]+)\s*\)")
# [src] cfagent.c CheckOpts: getopt_long's option letters (':' takes an argument) and OPTIONS
CFAGENT_LETTERS = "WbBzMgAbKqkhYHd:vlniIf:pPmcCtsSaeEVD:N:LwxXuUj:o:Z:Q:"
CFAGENT_LONG = (
    ("auto", "A"), ("sysadm", "a"), ("update-only", "B"), ("force-net-copy", "b"), ("no-check-mounts", "C"), ("no-check-files", "c"),
    ("define=", "D"), ("debug=", "d"), ("enforce-links", "E"), ("no-edits", "e"), ("file=", "f"), ("check-contradictions", "g"),
    ("help", "h"), ("no-hard-classes", "H"), ("inform", "I"), ("no-ifconfig", "i"), ("just=", "j"), ("no-lock", "K"), ("no-copy", "k"),
    ("delete-stale-links", "L"), ("traverse-links", "l"), ("no-modules", "M"), ("negate=", "N"), ("no-mount", "m"), ("undefine=", "N"),
    ("just-print", "n"), ("recon", "n"), ("dry-run", "n"), ("avoid=", "o"), ("no-processes", "P"), ("parse-only", "p"), ("query=", "Q"),
    ("no-splay", "q"), ("silent", "S"), ("no-commands", "s"), ("no-tidy", "t"), ("underscore-classes", "U"), ("use-env", "u"),
    ("version", "V"), ("verbose", "v"), ("csdb", "W"), ("no-warn", "w"), ("quiet", "w"), ("no-preconf", "x"), ("no-links", "X"),
    ("secure-input", "Y"), ("method=", "Z"), ("zone-info", "z"),
)  # fmt: skip
# cfengine 2's, but not the lab's: interactive, printing, database and method options [ours]
CFAGENT_NOT_EMULATED = "EazWjoZQY"
CF_NEW = ".cfnew"  # [src] cf.defs.h CF_NEW: a copy is written beside its destination, then renamed
COPY_ATTRIBUTES = ("dest", "server", "trustkey", "encrypt", "mode", "type")  # [ours] the grammar's subset
BOOLEAN = {"true": True, "on": True, "yes": True, "false": False, "off": False, "no": False}
COPY_TYPES = ("checksum", "sum", "ctime", "mtime", "binary")


def cfagent_syntax() -> str:
    """cfagent.c Syntax(): the banner and one line per long option."""
    lines = ["GNU cfengine: A system configuration engine (cfagent)", "2.2 (csync lab emulation)", "", "Options:", ""]
    lines += [f"--{name.rstrip('='):<20}    (-{letter})" for name, letter in CFAGENT_LONG]
    return "\n".join(lines) + "\n\nDebug levels: 1=parsing, 2=running, 3=summary, 4=expression eval\n"


class CopyEntry:
    """One line of a copy: section [ours: the grammar's subset, docs/LAB.md]."""

    def __init__(self, source: str, line: int):
        self.source, self.line = source, line
        self.dest = ""
        self.server = ""
        self.trustkey = False  # [src] the default: never trust a server's key on the fly
        self.mode: int | None = None


class InputError(Exception):
    """A line of an input file the lab's grammar does not take: (line, message)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def find_input_file(name: str) -> str:
    """parse.c FindInputFile with -f: a name starting with '.' or '/' as it is, else in
    $CFINPUTS (when absolute) or the work directory's inputs."""
    if name.startswith((".", "/")):
        return name
    inputs = os.environ.get(CFINPUTS_ENV, "")
    directory = inputs if inputs.startswith("/") else labhost.INPUTS
    return f"{directory.rstrip('/')}/{name}"


def read_input_file(text: str) -> tuple[list[str], list[CopyEntry]]:
    """(actionsequence, copies) of an input file in the lab's grammar: ``control:`` with one
    ``actionsequence = ( copy )`` line, ``copy:`` with entries ``SOURCE attr=value ...`` (an
    entry may go on over further lines), the class ``any::``, ``#`` comments. Anything else is
    an InputError [ours: a subset of cfengine 2's grammar, enough for csync's live check]."""
    sequence: list[str] = []
    copies: list[CopyEntry] = []
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if re.fullmatch(r"[A-Za-z]+:", line):
            section = line[:-1]
            if section not in ("control", "copy"):
                raise InputError(number, f"the section {section}: is not emulated by the lab (control: and copy: are)")
            continue
        if line == "any::":
            continue
        if line.endswith("::"):
            raise InputError(number, f"the class expression {line} is not emulated by the lab (any:: is)")
        if "$(" in line or "${" in line:
            raise InputError(number, "variables are not emulated by the lab")
        if section == "control":
            m = re.fullmatch(r"actionsequence\s*=\s*\(\s*([^()]*?)\s*\)", line)
            if not m:
                raise InputError(number, f"not emulated by the lab in control: {line!r} (actionsequence = ( copy ) is)")
            for action in m.group(1).split():
                if action != "copy":
                    raise InputError(number, f"the action {action} is not emulated by the lab (copy is)")
                sequence.append(action)
        elif section == "copy":
            for word in line.split():
                if word.startswith("/"):
                    copies.append(CopyEntry(os.path.normpath(word), number))
                    continue
                name, eq, value = word.partition("=")
                if not copies or not eq:
                    raise InputError(number, f"syntax error in copy: at {word!r}")
                entry = copies[-1]
                if name not in COPY_ATTRIBUTES:
                    raise InputError(number, f"the copy attribute {name} is not emulated by the lab ({', '.join(COPY_ATTRIBUTES)} are)")
                if name == "dest":
                    if not value.startswith("/"):
                        raise InputError(number, f"dest={value} is not an absolute file name")
                    entry.dest = os.path.normpath(value)
                elif name == "server":
                    entry.server = value
                elif name in ("trustkey", "encrypt"):
                    if value.lower() not in BOOLEAN:
                        raise InputError(number, f"{name}={value}: true or false")
                    if name == "trustkey":
                        entry.trustkey = BOOLEAN[value.lower()]
                    # encrypt: the lab's channel is ssh either way [ours]
                elif name == "mode":
                    if not re.fullmatch(r"[0-7]{1,4}", value):
                        raise InputError(number, f"mode={value}: the lab takes an octal mode")
                    entry.mode = int(value, 8)
                elif value not in COPY_TYPES:
                    raise InputError(number, "Illegal copy type")  # [src] install.c
        else:
            raise InputError(number, f"outside a section: {line!r}")
    for entry in copies:
        if not entry.dest:
            raise InputError(entry.line, f"copy of {entry.source} has no dest=")
        if not entry.server:
            raise InputError(entry.line, f"copy of {entry.source} without server= (a local copy) is not emulated by the lab")
    return sequence, copies


def copy_from_server(entry: CopyEntry, source_address: str, dry_run: bool) -> str:
    """One copy (image.c MakeImages, CopyReg over the network): authenticate as update.conf's
    copy does (the key of the server's address, trusted on the fly only with trustkey=true),
    fetch the file, and write it beside its destination and rename it. The result line."""
    server = entry.server
    try:
        address = socket.getaddrinfo(server, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except (OSError, IndexError):
        return f"cfagent {server}: Couldn't connect to {server} [unreachable unable to look up {server}]"
    caller = Caller("cfagent", address, address, address, entry.trustkey, source_address, CFAGENT_TIMEOUT, get=entry.source)
    try:
        caller.run()
    except Refused as e:
        return f"cfagent {server}: {e.message} [{e.detail}]"
    except labhost.LabStateError as e:
        return f"cfagent {server}: Couldn't connect to {server} [unreachable {e}]"
    assert caller.fetched is not None
    data, mode = caller.fetched
    if dry_run:
        return f"cfagent {server}: ok"  # -n: everything but the write
    try:
        with open(entry.dest, "rb") as f:
            if f.read() == data:
                return f"cfagent {server}: ok"  # up to date: nothing to copy
    except OSError:
        pass
    new = entry.dest + CF_NEW
    try:
        os.makedirs(os.path.dirname(entry.dest), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(new)
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(new, entry.mode if entry.mode is not None else mode)
        os.replace(new, entry.dest)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(new)
        return f"cfagent {server}: Local disk write failed copying {server}:{entry.source} to {entry.dest} [local {entry.dest} denied]"
    return f"cfagent {server}: ok"


def _getopt_error(e: getopt.GetoptError) -> str:
    """What glibc's getopt_long says about a bad option."""
    opt = e.opt or "?"
    if len(opt) > 1:
        if "unique prefix" in e.msg:
            return f"option '--{opt}' is ambiguous"
        return f"option '--{opt}' requires an argument" if "requires" in e.msg else f"unrecognized option '--{opt}'"
    return f"option requires an argument -- '{opt}'" if "requires" in e.msg else f"invalid option -- '{opt}'"


def cfagent(argv: list[str]) -> int:
    """cfagent.c main with CheckOpts: a bad option prints the syntax and exits 1; without -f
    the update (update.conf), with -f FILE only that file's actions; exit 1 on an input file the
    lab cannot read (cfengine: errors in parsing), otherwise 0 whatever the copies did."""
    longs = {name.rstrip("="): letter for name, letter in CFAGENT_LONG}
    try:
        opts, _operands = getopt.gnu_getopt(argv, CFAGENT_LETTERS, [name for name, _ in CFAGENT_LONG])
    except getopt.GetoptError as e:
        print(f"cfagent: {_getopt_error(e)}", file=sys.stderr)
        sys.stdout.write(cfagent_syntax())
        return 1
    input_file, given = None, set()
    for opt, value in opts:
        letter = longs[opt[2:]] if opt.startswith("--") else opt[1]
        if letter == "h":
            sys.stdout.write(cfagent_syntax())
            return 0
        if letter == "V":
            print("GNU cfengine 2.2 (csync lab emulation)")
            return 0
        if letter in CFAGENT_NOT_EMULATED:
            print(f"cfagent: -{letter} is cfengine 2's but the lab does not emulate it", file=sys.stderr)
            return 2
        if letter == "f":
            input_file = value
        given.add(letter)
    # -B update only, -n dry run, -k no copies, -p parse only, -v verbose; the others change
    # nothing the lab emulates (splay, locks, cf.preconf, hard classes, ...)
    update_only, dry_run, no_copy, parse_only, verbose = ("B" in given, "n" in given, "k" in given, "p" in given, "v" in given)
    try:
        me = labhost.LabState().own_host()
    except labhost.LabStateError as e:
        print(f"cfagent: {e}", file=sys.stderr)
        return 1
    if input_file is None:
        return _cfagent_update(me, parse_only)
    if update_only:
        return 0  # -f skips update.conf, and -B stops after it
    path = find_input_file(input_file)
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        if verbose:
            print(f"(No file {path})")
        return 0  # [src] parse.c ParseInputFile: a missing file is no error
    except OSError as e:
        print(f"cfengine:{me['name']}: Can't open file {path} ({e.strerror})")
        return 1
    try:
        sequence, copies = read_input_file(text)
    except InputError as e:
        print(f"cf:cfengine:{me['name']}:{path}:{e.line}: {e.message} ", file=sys.stderr)  # [src] cfparse.c yyerror
        return 1
    if parse_only:
        return 0
    if not sequence:
        print(f"cfengine:{me['name']}: Warning: actionsequence is empty")
        return 0
    if not no_copy:
        source = _default_source(me, "cfagent")
        for entry in copies:
            print(copy_from_server(entry, source, dry_run))
            sys.stdout.flush()
    return 0


def _cfagent_update(me: dict, parse_only: bool) -> int:
    """The update run without -f [ours: the lab's update.conf run authenticates against its
    policyhost, with update.conf's trustkey=false, and copies nothing]."""
    update = f"{labhost.INPUTS}/update.conf"
    try:
        with open(update) as f:
            found = POLICY_HOST.search(f.read())
    except OSError:
        found = None
    if not found:
        print(f"cfagent: no policy host: {update} is missing or names none", file=sys.stderr)
        return 0
    if parse_only:
        return 0
    server = found.group(1)
    try:
        Caller("cfagent", server, server, server, False, _default_source(me, "cfagent"), CFAGENT_TIMEOUT).run()
    except Refused as e:
        print(f"cfagent {server}: {e.message} [{e.detail}]")
        return 0
    except labhost.LabStateError as e:
        print(f"cfagent {server}: Couldn't connect to {server} [unreachable {e}]")
        return 0
    print(f"cfagent {server}: ok")
    return 0


# --- the server's side (cfservd, as an ssh forced command) ------------------------------------

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
HOSTNAME_KEYS = re.compile(r"^\s*HostnameKeys\s*=\s*\(\s*(\S+?)\s*\)", re.MULTILINE)


def hostname_keys() -> bool:
    """cfservd's control ``HostnameKeys = ( on )`` in its inputs/cfservd.conf (macro.c's
    OptionIs: on or true)."""
    try:
        with open(f"{labhost.INPUTS}/cfservd.conf", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    found = HOSTNAME_KEYS.search("\n".join(line.split("#", 1)[0] for line in text.splitlines()))
    return bool(found) and found.group(1) in ("on", "true")


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
    # CheckStoreKey: <user>-<caller's name> with HostnameKeys, else <user>-<caller's address>
    user = str(hello.get("user") or "root")
    keyname = str(hello.get("name") or peer).lower() if hostname_keys() else peer
    if not (SAFE_NAME.fullmatch(user) and SAFE_NAME.fullmatch(keyname)):
        _send(out, {"ok": False, "message": "BAD: unacceptable identity", "detail": f"remote {user}-{keyname}.pub unreadable"})
        return 1
    path = f"{labhost.PPKEYS}/{user}-{keyname}.pub"
    try:
        try:
            saved = _read_public(path, "remote")
        except Refused as e:
            # no key on file for this caller, and no TrustKeysFrom: never accepted on trust
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
    _send(out, {"ok": True, "signature": _sign(own, SERVER_CONTEXT + connected.encode() + b"\0" + nonce), "challenge": base64.b64encode(challenge).decode()})
    answer = _receive(inp)
    if answer is None or answer.get("abort"):
        return 1
    if not _verify(saved, answer.get("response", ""), CLIENT_CONTEXT + challenge):
        _send(out, {"ok": False, "message": "BAD: challenge response was incorrect", "detail": f"remote {path} mismatch"})
        return 1
    final = {"ok": True, "message": f"OK: key accepted for {peer}"}
    if not hello.get("have_key", True):  # the caller lacks our key: send it (cfservd sends its PUBKEY)
        try:
            with open(OWN_PUBLIC, "rb") as f:
                final["public_key"] = f.read().decode(errors="replace")
        except OSError:
            final["public_key"] = ""
    _send(out, final)
    # then the caller's requests (cfagent's copies; cfrun asks for nothing: its cfservd runs nothing [ours])
    while True:
        request = _receive(inp)
        if request is None:
            return 0
        _send(out, serve_file(str(request.get("get", "")), peer, str(hello.get("name") or "")))


ADMIT_LINE = re.compile(r"^\s*(/\S*)\s+(.+?)\s*$")


def admit_rules() -> list[tuple[str, list[str]]]:
    """The ``admit:`` section of this host's inputs/cfservd.conf: (path, who) per line, ``who``
    being addresses, networks (a.b.c.d/n) or patterns with ``*`` [ours: options such as
    ``root=`` or ``encrypt=`` are ignored]."""
    try:
        with open(f"{labhost.INPUTS}/cfservd.conf", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    rules, section = [], ""
    for raw in lines:
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if re.fullmatch(r"\s*[A-Za-z]+:", line):
            section = line.strip()[:-1]
            continue
        m = ADMIT_LINE.match(line) if section == "admit" else None
        if m:
            rules.append((m.group(1), [w for w in m.group(2).split() if "=" not in w]))
    return rules


def _admits(who: list[str], address: str, name: str) -> bool:
    for w in who:
        try:
            if "/" in w and ipaddress.ip_address(address) in ipaddress.ip_network(w, strict=False):
                return True
        except ValueError:
            continue
        if fnmatch.fnmatchcase(address, w) or (name and fnmatch.fnmatchcase(name.lower(), w.lower())):
            return True
    return False


def master_inputs() -> str:
    """This host's master inputs directory: the package filesystem's (where it is mounted) on
    a cluster, else the standalone master's."""
    package = labhost.LabState().package()
    return os.path.join(package["mount"], labhost.PACKAGE_MASTER_INPUTS) if package else labhost.STANDALONE_MASTER_INPUTS


def serve_file(path: str, peer: str, name: str) -> dict:
    """One file for an authenticated caller: its content and mode, or the refusal. The lab's
    cfservd serves only regular files of this host's master inputs directory, and only those
    that an admit rule of its cfservd.conf grants the caller (cfservd.c AccessControl: the
    rule's path a prefix of the file's, the caller's address or name among its hosts) [ours];
    everything else is refused as cfservd refuses access (CF_FAILEDSTR)."""
    refused = {"ok": False, "message": "BAD: Unspecified server refusal (see verbose server output)", "detail": f"remote {path} denied"}
    if not path.startswith("/") or os.path.normpath(path) != path:
        return refused
    try:
        inputs = os.path.realpath(master_inputs())
    except labhost.LabStateError:
        return refused
    real = os.path.realpath(path)
    if not real.startswith(inputs + "/"):
        return refused
    if not any(real.startswith(rule) and _admits(who, peer, name) for rule, who in admit_rules()):
        return refused
    try:
        with open(real, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return refused
            data, mode = f.read(), os.fstat(f.fileno()).st_mode
    except FileNotFoundError:
        return {"ok": False, "message": f"BAD: unable to stat file {path}", "detail": f"remote {path} missing"}
    except OSError:
        return refused
    return {"ok": True, "data": base64.b64encode(data).decode(), "mode": mode & 0o7777}


def cfkey(argv: list[str]) -> int:
    if argv:
        return _usage("cfkey", f"unexpected argument {argv[0]!r}", "cfkey")
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    os.makedirs(labhost.PPKEYS, mode=0o700, exist_ok=True)
    labhost.write_atomic(
        OWN_PRIVATE, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()), 0o600
    )
    labhost.write_atomic(OWN_PUBLIC, key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1), 0o644)
    print(f"cfkey: new key pair in {labhost.PPKEYS}")
    return 0


def _usage(tool: str, problem: str, usage: str | None) -> int:
    print(f"{tool}: {problem}" + (f"\nusage: {usage}" if usage else ""), file=sys.stderr)
    return 2


COMMANDS = {"cfagent": cfagent, "cfrun": cfrun, "cfservd": cfservd, "cfkey": cfkey}

if __name__ == "__main__":
    tool = os.path.basename(sys.argv[0])
    if tool not in COMMANDS:
        print(f"{tool}: not a cfengine command of the lab ({', '.join(COMMANDS)})", file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[tool](sys.argv[1:]))
