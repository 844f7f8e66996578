"""The driver: every command csync sends to a host is built here, and only here.

Values come from the validated model (host names, IPv4 addresses, absolute normalised
paths) and are still quoted with shlex.quote: validation is the first wall, quoting the
second. Nothing else in csync composes shell strings.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from reconciler.domain import dsau
from reconciler.domain.keys import HOST_NAME, KEY_FILE_NAME, cfengine_digest

if TYPE_CHECKING:
    from reconciler.desired.model import DesiredState

_PROBE_SCRIPT = resources.files("reconciler.driver").joinpath("probe.sh").read_text(encoding="utf-8")


# Scripts travel on standard input to a POSIX shell: the command line stays short and
# fixed, whatever root's login shell is, and the script is data rather than an argument.
# No "-s": a POSIX sh without operands reads its commands from standard input anyway, and
# some shells of the ksh family (posh) refuse -s.
SHELL = "/bin/sh"


@dataclass(frozen=True)
class RemoteCommand:
    """A POSIX sh script for one host (run as ``SHELL`` with the script on stdin), with the
    short form shown in plans."""

    script: str
    display: str


def package_mounted(state: DesiredState) -> str:
    """A shell test that is true where the package filesystem is mounted: its DSAU master
    directory exists under the mount point (never true on the bare mount point)."""
    return f"[ -d {shlex.quote(state.package.mount + '/' + dsau.PACKAGE_MASTER_DIR)} ]"


def quote_argv(argv: list[str] | tuple[str, ...]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def assign(name: str, value: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"not a shell variable name: {name!r}")
    return f"{name}={shlex.quote(value)}"


def probe(state: DesiredState, role: str, *, serve: bool = False) -> RemoteCommand:
    """The one-round-trip probe of a host in ``role`` (member | master | client); ``serve``:
    the probe server that probes on request (csync watch: Session.serve_script)."""
    cluster = state.is_cluster
    return probe_script(
        role,
        cfengine_dir=state.paths.cfengine_dir,
        mount=state.package.mount if cluster else "",
        master_inputs=dsau.PACKAGE_MASTER_INPUTS if cluster else state.paths.standalone_master_inputs,
        state_dir=dsau.PACKAGE_CSYNC_STATE if cluster else dsau.STANDALONE_CSYNC_STATE,
        package_files_dir=state.paths.package_files_dir,
        serviceguard_path=state.platform.serviceguard_path,
        cmviewcl_format=state.platform.cmviewcl_format,
        serve=serve,
    )


# probe.sh's parameters that are the same on every host (dsau.py's, and how the probe is
# bounded): the probe script is sent with them, and csync's probe program
# (driver/probeprogram.py) writes them in.
PROBE_CONSTANTS = {
    "MDIR": dsau.PACKAGE_MASTER_DIR,
    "MKEYS": dsau.PACKAGE_CLUSTER_KEY_DIR,
    "OWNKEY": dsau.OWN_PUBLIC_KEY,
    "PEERPFX": dsau.PEER_KEY_PREFIX,
    "PEERSFX": dsau.PEER_KEY_SUFFIX,
    # the probe ends its process group when its standard input closes: the transport holds
    # it open until the answer is in (Session.run_script(..., hold_stdin=True), run_request)
    "BOUNDED": "stdin",
}

# A search path as the desired state accepts it (desired/values.py): absolute directories of
# letters, digits and . _ + - joined by ':'. Checked again here: a plan file is an input too.
SEARCH_PATH = re.compile(r"^/[A-Za-z0-9_.+/-]*(:/[A-Za-z0-9_.+/-]*)*$")
CMVIEWCL_FORMATS = ("auto", "line", "table")


def search_path(value: object, what: str) -> str:
    """``value`` as a search path csync puts in a script (PATH=...), or UnsafeValue."""
    if (
        not isinstance(value, str)
        or len(value) > 1024
        or not SEARCH_PATH.fullmatch(value)
        or any(p in (".", "..") for d in value.split(":") for p in d.split("/"))
    ):
        raise UnsafeValue(f"refusing {what} {value!r}")
    return value


def platform_params(serviceguard_path: str, cmviewcl_format: str) -> dict[str, str]:
    """probe.sh's platform parameters (desired state `platform:`), checked."""
    if cmviewcl_format not in CMVIEWCL_FORMATS:
        raise UnsafeValue(f"refusing cmviewcl format {cmviewcl_format!r}")
    return {"SGPATH": search_path(serviceguard_path, "Serviceguard search path"), "SGFORMAT": cmviewcl_format}


def probe_script(
    role: str,
    *,
    cfengine_dir: str,
    mount: str,
    master_inputs: str,
    state_dir: str,
    package_files_dir: str,
    serviceguard_path: str,
    cmviewcl_format: str,
    serve: bool = False,
) -> RemoteCommand:
    """reconciler/driver/probe.sh with its parameters; for members, ``master_inputs`` and
    ``state_dir`` are relative to ``mount``. ``serve``: the probe server (SERVE=1)."""
    params = {
        "CF": cfengine_dir,
        "ROLE": role,
        "MOUNT": mount,
        **PROBE_CONSTANTS,
        "MINPUTS": master_inputs,
        "STATE": state_dir,
        "PKGFILES": package_files_dir,
        **platform_params(serviceguard_path, cmviewcl_format),
        "PROG": dsau.PROBE_PROGRAM,
        "SERVE": "1" if serve else "",
    }
    header = "\n".join(assign(k, v) for k, v in params.items())
    return RemoteCommand(script=f"{header}\n{_PROBE_SCRIPT}", display=f"csync probe ({role}{', served' if serve else ''})")


# --- Actions ------------------------------------------------------------------------------
# Each builder validates its typed inputs again (a plan file is an input too) and returns a
# script that exits non-zero when it did not do its job; apply verifies the result anyway.

_KEY_FILE = KEY_FILE_NAME
NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_PEM = re.compile(r"^-----BEGIN RSA PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END RSA PUBLIC KEY-----\n$")
IPV4 = re.compile(r"^(\d{1,3}\.){3}\d{1,3}$")
NAME_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")  # an unqualified host name
HOSTNAME = HOST_NAME  # a host name, qualified or not (cfrun.hosts may name hosts so)


class UnsafeValue(ValueError):
    """A value that csync refuses to put into a command (a damaged or forged plan)."""


def check(pattern: re.Pattern, value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise UnsafeValue(f"refusing {what} {value!r}")
    return value


def _ppkeys(state: DesiredState) -> str:
    return f"{state.paths.cfengine_dir}/{dsau.PPKEYS_SUBDIR}"


def _in_ppkeys(state: DesiredState) -> str:
    # The key store must be a real directory: never write through a symlinked ppkeys.
    d = shlex.quote(_ppkeys(state))
    return f'umask 077\nd={d}\n[ -d "$d" ] && [ ! -L "$d" ] || {{ echo "$d is not a directory" >&2; exit 3; }}\ncd "$d" || exit 3'


def _sg_path(serviceguard_path: str) -> str:
    """The first line of a Serviceguard command's script: its search path first."""
    return f"PATH={shlex.quote(search_path(serviceguard_path, 'Serviceguard search path'))}:$PATH"


def start_package(package: str, node: str, *, serviceguard_path: str) -> RemoteCommand:
    pkg, n = check(NAME, package, "package name"), check(NAME, node, "node name")
    run = quote_argv(["cmrunpkg", "-n", n, pkg])
    enable = quote_argv(["cmmodpkg", "-e", pkg])
    return RemoteCommand(f"{_sg_path(serviceguard_path)}\n{run} && {enable}", f"{run} && {enable}")


def enable_switching(package: str, *, serviceguard_path: str) -> RemoteCommand:
    enable = quote_argv(["cmmodpkg", "-e", check(NAME, package, "package name")])
    return RemoteCommand(f"{_sg_path(serviceguard_path)}\n{enable}", enable)


def halt_package(package: str, *, serviceguard_path: str) -> RemoteCommand:
    """Halt the package wherever it runs (cmhaltpkg also disables its global switching)."""
    halt = quote_argv(["cmhaltpkg", check(NAME, package, "package name")])
    return RemoteCommand(f"{_sg_path(serviceguard_path)}\n{halt}", halt)


def dispatch_member(state: DesiredState, member: str) -> RemoteCommand:
    """Run the dispatcher for ``member``, only where the package runs: the package can move
    (a failover, an operator) between the plan's last look and this script, and the
    dispatcher must never run on a node that no longer has the package filesystem."""
    argv = [state.paths.dispatcher, dsau.DISPATCHER_MEMBER_ADDED, check(NAME, member, "member name")]
    guard = (
        f"{package_mounted(state)} || "
        "{ echo 'the package does not run on this node any more (its filesystem is not mounted here); not dispatching' >&2; exit 3; }"
    )
    return RemoteCommand(f"{guard}\n{quote_argv(argv)}", quote_argv(argv))


# Root ssh checks the rotation's preflight runs at once, and each one's connect limit [ours].
PREFLIGHT_AT_ONCE = 32
PREFLIGHT_CONNECT_SECONDS = 10


def regenerate_keys(state: DesiredState, clients: list[str], members: list[str]) -> RemoteCommand:
    """The wizard's key regeneration (a rotation), after a preflight on this node: every system
    the wizard changes (``members`` and ``clients``, by address or host name) must answer
    root ssh from here, or nothing runs and every one that did not is named (exit 3)."""
    targets = [check(IPV4, a, "member address") for a in members]
    for c in clients:
        if not (isinstance(c, str) and (IPV4.fullmatch(c) or HOSTNAME.fullmatch(c))):
            raise UnsafeValue(f"refusing client {c!r}")
        targets.append(c)
    if not clients:
        raise UnsafeValue("a rotation needs at least one client")
    argv = [state.paths.wizard, "regenerate-keys", *clients]
    listed = " ".join(shlex.quote(t) for t in targets)
    script = (
        "umask 077\n"
        'f="${TMPDIR:-/tmp}/csync-preflight.$$"\n'
        'rm -f "$f" && (set -C; : > "$f") || { echo "cannot create $f" >&2; exit 1; }\n'
        "trap 'rm -f \"$f\"' 0\n"
        "trap 'exit 1' 1 2 13 15\n"  # 13 (PIPE): csync went; the temp file goes too
        "n=0\n"
        f"for t in {listed}; do\n"
        f'  ( ssh -o BatchMode=yes -o ConnectTimeout={PREFLIGHT_CONNECT_SECONDS} "$t" true </dev/null >/dev/null 2>&1 || echo "$t" >> "$f" ) &\n'
        f"  n=$((n + 1)); if [ $n -ge {PREFLIGHT_AT_ONCE} ]; then wait; n=0; fi\n"
        "done\n"
        "wait\n"
        'if [ -s "$f" ]; then\n'
        '  echo "preflight: every system must answer root ssh from this node before keys are rotated; no answer from:" $(sort "$f") "; nothing was changed" >&2\n'
        "  exit 3\n"
        "fi\n"
        f"{quote_argv(argv)}\n"
    )
    shown = argv if len(argv) <= 6 else argv[:5] + [f"... ({len(clients)} clients)"]
    return RemoteCommand(script, f"preflight root ssh to {len(targets)} systems; " + " ".join(shown))


def copy_key(state: DesiredState, source: str, target: str) -> RemoteCommand:
    """On the host, copy a key file it already holds to another name, atomically."""
    src, dst = check(_KEY_FILE, source, "key file"), check(_KEY_FILE, target, "key file")
    tmp = f".csync.{dst}.tmp"
    script = (
        f"{_in_ppkeys(state)}\n"
        f"[ -f {src} ] && [ ! -L {src} ] || {{ echo '{src} is not a regular file' >&2; exit 3; }}\n"
        f"rm -f {tmp} && cp {src} {tmp} && chmod {dsau.KEY_FILE_MODE:o} {tmp} && mv -f {tmp} {dst} || {{ rm -f {tmp}; exit 1; }}"
    )
    return RemoteCommand(script, f"cd {shlex.quote(_ppkeys(state))} && cp {src} {dst}")


def install_key(state: DesiredState, target: str, pem: str, fingerprint: str) -> RemoteCommand:
    """Write a public key file byte for byte, atomically (temp file, mode, rename)."""
    dst = check(_KEY_FILE, target, "key file")
    body = check(_PEM, pem, "public key PEM")
    tmp = f".csync.{dst}.tmp"
    script = (
        f"{_in_ppkeys(state)}\n"
        f"rm -f {tmp} && printf '%s' {shlex.quote(body)} > {tmp} && chmod {dsau.KEY_FILE_MODE:o} {tmp} && mv -f {tmp} {dst} || {{ rm -f {tmp}; exit 1; }}"
    )
    md5 = cfengine_digest(body)
    return RemoteCommand(script, f"install {_ppkeys(state)}/{dst} ({fingerprint}{', ' + md5 if md5 else ''})")


def remove_key(state: DesiredState, target: str) -> RemoteCommand:
    dst = check(_KEY_FILE, target, "key file")
    if dst == dsau.OWN_PUBLIC_KEY:
        raise UnsafeValue("refusing to remove a host's own key")
    return RemoteCommand(f"{_in_ppkeys(state)}\nrm -f -- {dst}", f"rm {shlex.quote(_ppkeys(state))}/{dst}")


# --- Live trust checks (csync trust --live) ----------------------------------------------
# The site's own checks: cfrun from a member to clients, cfagent on a client copying one
# master file into a private temporary directory; neither touches keys, policy or inputs
# (docs/TRUST.md). One script per host; the output grammar is in docs/LAB.md.

LIVE_TOOL_MISSING = 127  # exit code of a live-check script when the tool is not installed


def _find_tool(tool: str, cfengine_path: str) -> str:
    """A live check's first lines: cfengine's search path (desired state `platform.cfengine_path`)
    first, and exit LIVE_TOOL_MISSING, naming it, when ``tool`` is not found."""
    where = shlex.quote(search_path(cfengine_path, "cfengine search path"))
    missing = shlex.quote(f"{tool}: not found (searched {cfengine_path})")
    return f"PATH={where}:$PATH; export PATH\ncommand -v {tool} >/dev/null 2>&1 || {{ echo {missing} >&2; exit {LIVE_TOOL_MISSING}; }}\n"


# cfrun's children at once in the check's hosts file (cfrun.hosts' maxchild; cfrun's default
# is 1, one client after the other) [ours]
CFRUN_CHECK_MAXCHILD = 32
# cfrun has no time limit of its own (a client that takes the connection and never answers
# holds it for ever): the check stops it after this many seconds, keeping what it printed [ours]
CFRUN_CHECK_SECONDS = 90


def cfrun_check(
    targets: list[str] | list[tuple[str, str, str]],
    *,
    hostnamekeys: bool = False,
    bind: str | None = None,
    cfengine_dir: str,
    seconds: int = CFRUN_CHECK_SECONDS,
    cfengine_path: str = dsau.CFENGINE_PATH,
) -> RemoteCommand:
    """cfrun from this host to every listed client, in one call, with cfengine 2's command line
    (src/cfrun.c): ``cfrun -f FILE``, FILE a hosts file made for the check (``maxchild``, then
    the clients) and removed afterwards. Never ``-T``: it stores the key of every client it lacks.

    ``targets`` are clients' addresses, or (host as written, address, key file) triples: the
    host as the site's cfrun.hosts writes it, and the file cfrun authenticates it by (root-<host
    as written>.pub with ``hostnamekeys``, which then goes in the file too; else root-<address>.pub).
    ``bind`` is one of this host's addresses to leave from (cfrun.hosts' ``bindtointerface``).

    A client for which this host has neither root-<host as written>.pub nor root-<address>.pub
    is not put in the file: cfrun would ask on stdin whether to accept its key on trust, and
    each of its children takes all the input there is for its own question, so answers written
    in advance answer one question only and the next one loops for ever. The script reports
    such a client itself, in the live-check grammar (``[local <key file> missing]``). stdin
    still answers "no" once, for a key file that is there but does not parse. A watchdog stops
    cfrun (its process group) after ``seconds``; the clients done by then keep their lines."""
    rows = []
    for t in targets:
        written, address, keyfile = (t, t, dsau.peer_key_name(t)) if isinstance(t, str) else t
        check(IPV4, address, "client address")
        if not (isinstance(written, str) and (IPV4.fullmatch(written) or HOSTNAME.fullmatch(written))):
            raise UnsafeValue(f"refusing host {written!r}")
        check(_KEY_FILE, keyfile, "key file")
        rows.append(f"{written} {address} {keyfile}\n")
    if not rows:
        raise UnsafeValue("cfrun needs at least one client address")
    limit = int(seconds)
    if limit < 1:
        raise UnsafeValue(f"refusing cfrun check limit {seconds!r}")
    settings = f"maxchild = {CFRUN_CHECK_MAXCHILD}\n"
    if hostnamekeys:
        settings += "hostnamekeys = true\n"
    if bind is not None:
        settings += f"bindtointerface = {check(IPV4, bind, 'source address')}\n"
    ppkeys = shlex.quote(f"{cfengine_dir}/{dsau.PPKEYS_SUBDIR}")
    script = (
        f"{_find_tool('cfrun', cfengine_path)}"
        f"k={ppkeys}\n"
        "umask 077\n"
        'f="${TMPDIR:-/tmp}/csync-cfrun.$$"\n'
        # a failure before cfrun runs: exit 3 (cfrun itself exits 0), the program's message last
        'rm -f "$f" || exit 3\n'
        '(set -C; : > "$f") || { echo "cannot create $f" >&2; exit 3; }\n'
        "trap 'rm -f \"$f\"' 0\n"
        "trap 'exit 1' 1 2 13 15\n"  # 13 (PIPE): csync went; the temp file goes too
        f"printf '%s' {shlex.quote(settings)} > \"$f\" || exit 1\n"
        "while read w a key; do\n"
        '  if [ -f "$k/root-$w.pub" ] || [ -f "$k/root-$a.pub" ]; then echo "$w" >> "$f" || exit 1\n'
        '  else echo "cfrun $w: no key on file, not polled (cfrun would ask whether to accept one on trust) [local $k/$key missing]"\n'
        "  fi\n"
        f"done <<'CSYNC_TARGETS'\n{''.join(rows)}CSYNC_TARGETS\n"
        "cfrun -f \"$f\" <<'CSYNC_ANSWERS' &\nno\nCSYNC_ANSWERS\n"
        "p=$!\n"
        f"( trap '' 15; s=0; while [ $s -lt {limit} ]; do sleep 1; s=$((s + 1)); done; kill -TERM 0 ) </dev/null >/dev/null 2>&1 &\n"
        "w=$!\n"
        'wait "$p"; rc=$?\n'
        'kill -KILL "$w" 2>/dev/null\n'
        'exit "$rc"\n'
    )
    shown = [r.split()[0] for r in rows]
    line = quote_argv(["cfrun", "-f", "<hosts file>", *shown])
    if bind is not None:
        line = f"(from {bind}) " + line
    return RemoteCommand(script, line if len(line) <= 120 else line[:100] + f" ... ({len(rows)} clients)")


# The live cfagent check's limit per master address: cfagent's own timeouts bound connecting
# (CF_TIMEOUT) but not a server that takes the connection and never answers [ours]
CFAGENT_CHECK_SECONDS = 30
# A file the check may name in a cfengine input file: absolute, normalised, no component
# starting with '.', letters, digits and . _ + - (nothing cfengine's parser would read otherwise)
_SERVED_FILE = re.compile(r"^(/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)+$")


def served_file(state: DesiredState) -> str:
    """The file the live cfagent check copies from the master: update.conf of the master's
    inputs, which cfservd serves to every client (update.conf copies that directory) [doc: HP,
    "Managing Systems and Workgroups", DSAU: "the master copy of update.conf is located in
    /var/opt/dsau/cfengine_master/inputs/", on a cluster under the package's mount point]."""
    inputs = posixpath.join(state.package.mount, dsau.PACKAGE_MASTER_INPUTS) if state.is_cluster else state.paths.standalone_master_inputs
    return posixpath.join(inputs, dsau.UPDATE_CONF)


def cfagent_check(
    server_address: str | list[str], source: str, *, seconds: int = CFAGENT_CHECK_SECONDS, cfengine_path: str = dsau.CFENGINE_PATH
) -> RemoteCommand:
    """cfagent on this host against each of the master's addresses (the package's on a
    cluster), one after the other, with options cfengine 2's cfagent has (src/cfagent.c
    CheckOpts): ``cfagent -q -K -x -f FILE`` (no splay, no locks, no cf.preconf script; -f
    also skips update.conf). FILE is an input file made for the check in a private directory
    (umask 077, removed on exit): ``actionsequence = ( copy )`` and one copy of ``source`` from
    the address into that directory, ``trustkey=false`` (a missing key is never trusted).

    cfagent exits 0 whatever its copies did, so the verdict is whether the copy arrived; after
    cfagent's own output the script prints ``csync-cfagent ADDRESS copied|absent|expired EXIT
    LIMIT`` (expired: stopped by the watchdog after LIMIT seconds). Nothing else is written on
    the host: the input file and the copy stay in the private directory."""
    addresses = [server_address] if isinstance(server_address, str) else list(server_address)
    if not addresses:
        raise UnsafeValue("cfagent needs a master address")
    for a in addresses:
        check(IPV4, a, "master address")
    if not isinstance(source, str) or not _SERVED_FILE.fullmatch(source) or len(source) > 1024:
        raise UnsafeValue(f"refusing file to copy {source!r}")
    limit = int(seconds)
    if limit < 1:
        raise UnsafeValue(f"refusing cfagent check limit {seconds!r}")
    script = [
        _find_tool("cfagent", cfengine_path).rstrip("\n"),
        "umask 077",
        'd="${TMPDIR:-/tmp}/csync-cfagent.$$"',
        # a failure before cfagent runs: exit 3, the failing program's message last
        'case $d in *[!A-Za-z0-9/._+-]*) echo "$d: not a directory name a cfengine input file can hold" >&2; exit 3 ;; esac',
        'rm -rf "$d" || exit 3',
        'mkdir "$d" || exit 3',
        "trap 'rm -rf \"$d\"' 0",
        "trap 'exit 1' 1 2 13 15",  # 13 (PIPE): csync went; the temp dir goes too
        "set -C",
    ]
    for n, a in enumerate(addresses, 1):
        copy = f"'   {source} dest='\"$d\"'/copied.{n} server={a} trustkey=false encrypt=true'"
        script.append(f"printf '%s\\n' 'control:' '   actionsequence = ( copy )' '' 'copy:' {copy} > \"$d/check.{n}.cf\" || exit 3")
    for n, a in enumerate(addresses, 1):
        script += [
            f'cfagent -q -K -x -f "$d/check.{n}.cf" </dev/null 2>&1 &',
            "p=$!",
            # the watchdog: a failing sleep ends it (no bound then but csync's own), never a false "expired"
            f'( trap \'\' 15; s=0; while [ $s -lt {limit} ]; do sleep 1 || exit 0; s=$((s + 1)); done; : > "$d/expired.{n}"; kill -TERM "$p" )'
            " </dev/null >/dev/null 2>&1 &",
            "w=$!",
            'wait "$p"; rc=$?',
            'kill -KILL "$w" 2>/dev/null',
            f'if [ -f "$d/copied.{n}" ]; then v=copied; elif [ -f "$d/expired.{n}" ]; then v=expired; else v=absent; fi',
            f'echo "csync-cfagent {a} $v $rc {limit}"',
        ]
    script.append("exit 0")
    return RemoteCommand("\n".join(script) + "\n", f"cfagent -q -K -x -f <copy {source} from {' | '.join(addresses)}>")
