"""The driver: every command csync sends to a host is built here, and only here.

Values come from the validated model (host names, IPv4 addresses, absolute normalised
paths) and are still quoted with shlex.quote: validation is the first wall, quoting the
second. Nothing else in csync composes shell strings.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from reconciler.domain import dsau
from reconciler.domain.keys import KEY_FILE_NAME

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


def probe(state: DesiredState, role: str) -> RemoteCommand:
    """The one-round-trip probe of a host in ``role`` (member | master | client)."""
    cluster = state.is_cluster
    return probe_script(
        role,
        cfengine_dir=state.paths.cfengine_dir,
        mount=state.package.mount if cluster else "",
        master_inputs=dsau.PACKAGE_MASTER_INPUTS if cluster else state.paths.standalone_master_inputs,
        state_dir=dsau.PACKAGE_CSYNC_STATE if cluster else dsau.STANDALONE_CSYNC_STATE,
    )


def probe_script(role: str, *, cfengine_dir: str, mount: str, master_inputs: str, state_dir: str,
                 serviceguard_path: str = dsau.SERVICEGUARD_PATH) -> RemoteCommand:
    """reconciler/driver/probe.sh with its parameters; for members, ``master_inputs`` and
    ``state_dir`` are relative to ``mount``."""
    params = {
        "CF": cfengine_dir,
        "ROLE": role,
        "MOUNT": mount,
        "MDIR": dsau.PACKAGE_MASTER_DIR,
        "PKGFILES": dsau.PACKAGE_FILES_DIR,
        "MKEYS": dsau.PACKAGE_CLUSTER_KEY_DIR,
        "OWNKEY": dsau.OWN_PUBLIC_KEY,
        "PEERPFX": dsau.PEER_KEY_PREFIX,
        "PEERSFX": dsau.PEER_KEY_SUFFIX,
        "MINPUTS": master_inputs,
        "STATE": state_dir,
        "SGPATH": serviceguard_path,
        "PROG": dsau.PROBE_PROGRAM,
    }
    header = "\n".join(assign(k, v) for k, v in params.items())
    return RemoteCommand(script=f"{header}\n{_PROBE_SCRIPT}", display=f"csync probe ({role})")


# --- Actions ------------------------------------------------------------------------------
# Each builder validates its typed inputs again (a plan file is an input too) and returns a
# script that exits non-zero when it did not do its job; apply verifies the result anyway.

_KEY_FILE = KEY_FILE_NAME
NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_PEM = re.compile(r"^-----BEGIN RSA PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END RSA PUBLIC KEY-----\n$")
_SSH_LINE = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-[a-z0-9]+) [A-Za-z0-9+/=]+( [\x21-\x7e ]{0,200})?$")
IPV4 = re.compile(r"^(\d{1,3}\.){3}\d{1,3}$")


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
    return f"umask 077\nd={d}\n[ -d \"$d\" ] && [ ! -L \"$d\" ] || {{ echo \"$d is not a directory\" >&2; exit 3; }}\ncd \"$d\" || exit 3"


def start_package(package: str, node: str) -> RemoteCommand:
    pkg, n = check(NAME, package, "package name"), check(NAME, node, "node name")
    run = quote_argv(["cmrunpkg", "-n", n, pkg])
    enable = quote_argv(["cmmodpkg", "-e", pkg])
    return RemoteCommand(f"PATH={dsau.SERVICEGUARD_PATH}:$PATH\n{run} && {enable}", f"{run} && {enable}")


def enable_switching(package: str) -> RemoteCommand:
    enable = quote_argv(["cmmodpkg", "-e", check(NAME, package, "package name")])
    return RemoteCommand(f"PATH={dsau.SERVICEGUARD_PATH}:$PATH\n{enable}", enable)


def halt_package(package: str) -> RemoteCommand:
    """Halt the package wherever it runs (cmhaltpkg also disables its global switching)."""
    halt = quote_argv(["cmhaltpkg", check(NAME, package, "package name")])
    return RemoteCommand(f"PATH={dsau.SERVICEGUARD_PATH}:$PATH\n{halt}", halt)


def dispatch_member(state: DesiredState, member: str) -> RemoteCommand:
    """Run the dispatcher for ``member``, only where the package runs: the package can move
    (a failover, an operator) between the plan's last look and this script, and the
    dispatcher must never run on a node that no longer has the package filesystem."""
    argv = [state.paths.dispatcher, dsau.DISPATCHER_MEMBER_ADDED, check(NAME, member, "member name")]
    guard = (f"{package_mounted(state)} || "
             "{ echo 'the package does not run on this node any more (its filesystem is not mounted here); not dispatching' >&2; exit 3; }")
    return RemoteCommand(f"{guard}\n{quote_argv(argv)}", quote_argv(argv))


def regenerate_keys(state: DesiredState, client_addresses: list[str]) -> RemoteCommand:
    argv = [state.paths.wizard, "regenerate-keys", *(check(IPV4, a, "client address") for a in client_addresses)]
    shown = argv if len(argv) <= 6 else argv[:5] + [f"... ({len(client_addresses)} clients)"]
    return RemoteCommand(quote_argv(argv), " ".join(shown))


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
    return RemoteCommand(script, f"install {_ppkeys(state)}/{dst} ({fingerprint})")


def remove_key(state: DesiredState, target: str) -> RemoteCommand:
    dst = check(_KEY_FILE, target, "key file")
    if dst == dsau.OWN_PUBLIC_KEY:
        raise UnsafeValue("refusing to remove a host's own key")
    return RemoteCommand(f"{_in_ppkeys(state)}\nrm -f -- {dst}", f"rm {shlex.quote(_ppkeys(state))}/{dst}")


def authorize_ssh(key_lines: list[str]) -> RemoteCommand:
    """Append public keys to root's authorized_keys (the csshsetup equivalent), atomically."""
    lines = [check(_SSH_LINE, line, "ssh public key line") for line in key_lines]
    # grep: 1 is "not there yet"; anything else a failure, never "add it again"
    add = "".join(f"grep -qxF {shlex.quote(line)} \"$tmp\"; r=$?; if [ $r = 1 ]; then printf '%s\\n' {shlex.quote(line)} >> \"$tmp\" || exit 1; "
                  "elif [ $r != 0 ]; then echo \"grep failed on $tmp (exit $r)\" >&2; rm -f \"$tmp\"; exit 1; fi\n" for line in lines)
    script = (
        "umask 077\nmkdir -p \"$HOME/.ssh\" && chmod 700 \"$HOME/.ssh\" || exit 3\n"
        "f=\"$HOME/.ssh/authorized_keys\"; tmp=\"$f.csync.tmp\"\n"
        "[ ! -L \"$f\" ] || { echo \"$f is a symbolic link\" >&2; exit 3; }\n"
        "rm -f \"$tmp\"; if [ -f \"$f\" ]; then cp \"$f\" \"$tmp\" || exit 1; else : > \"$tmp\"; fi\n"
        f"{add}chmod 600 \"$tmp\" && mv -f \"$tmp\" \"$f\" || {{ rm -f \"$tmp\"; exit 1; }}"
    )
    return RemoteCommand(script, f"authorize {len(lines)} master ssh key(s) for root")


# --- Live trust checks (csync trust --live) ----------------------------------------------
# The site's own checks, read-only: cfrun from a member to clients, cfagent on a client
# against the master's address. One script per host; the output grammar is in docs/LAB.md.

LIVE_TOOL_MISSING = 127  # exit code of a live-check script when the tool is not installed


def _live(tool: str, argv: list[str]) -> RemoteCommand:
    line = quote_argv(argv)
    script = (
        f"PATH={dsau.CFENGINE_PATH}:$PATH; export PATH\n"
        f"command -v {tool} >/dev/null 2>&1 || {{ echo '{tool}: not found (searched {dsau.CFENGINE_PATH})' >&2; exit {LIVE_TOOL_MISSING}; }}\n"
        f"{line} </dev/null\n"
    )
    return RemoteCommand(script, line if len(line) <= 120 else line[:100] + f" ... ({len(argv)} arguments)")


# cfrun's children at once in the check's hosts file (cfrun.hosts' maxchild; cfrun's default
# is 1, one client after the other) [ours]
CFRUN_CHECK_MAXCHILD = 32
# cfrun has no time limit of its own (a client that takes the connection and never answers
# holds it for ever): the check stops it after this many seconds, keeping what it printed [ours]
CFRUN_CHECK_SECONDS = 90


def cfrun_check(client_addresses: list[str], *, cfengine_dir: str = dsau.CFENGINE_DIR,
                seconds: int = CFRUN_CHECK_SECONDS) -> RemoteCommand:
    """cfrun from this host to every listed client, in one call, with cfengine 2's command line
    (src/cfrun.c): ``cfrun -f FILE``, FILE a hosts file made for the check (``maxchild``, then
    the clients by address) and removed afterwards. Never ``-T``: it stores the key of every
    client it lacks.

    A client whose ``root-<address>.pub`` this host lacks is not put in the file: cfrun would
    ask on stdin whether to accept its key on trust, and each of its children takes all the
    input there is for its own question, so answers written in advance answer one question
    only and the next one loops for ever. The script reports such a client itself, in the
    live-check grammar (``[local <path> missing]``). stdin still answers "no" once, for a key
    file that is there but does not parse. A watchdog stops cfrun (its process group) after
    ``seconds``; the clients done by then keep their lines, the others have none."""
    addresses = [check(IPV4, a, "client address") for a in client_addresses]
    if not addresses:
        raise UnsafeValue("cfrun needs at least one client address")
    t = int(seconds)
    if t < 1:
        raise UnsafeValue(f"refusing cfrun check limit {seconds!r}")
    ppkeys = shlex.quote(f"{cfengine_dir}/{dsau.PPKEYS_SUBDIR}")
    script = (
        f"PATH={dsau.CFENGINE_PATH}:$PATH; export PATH\n"
        f"command -v cfrun >/dev/null 2>&1 || {{ echo 'cfrun: not found (searched {dsau.CFENGINE_PATH})' >&2; exit {LIVE_TOOL_MISSING}; }}\n"
        f"k={ppkeys}\n"
        "umask 077\n"
        'f="${TMPDIR:-/tmp}/csync-cfrun.$$"\n'
        # a failure before cfrun runs: exit 3 (cfrun itself exits 0), the program's message last
        'rm -f "$f" || exit 3\n'
        '(set -C; : > "$f") || { echo "cannot create $f" >&2; exit 3; }\n'
        "trap 'rm -f \"$f\"' 0\n"
        "trap 'exit 1' 1 2 15\n"
        f"echo 'maxchild = {CFRUN_CHECK_MAXCHILD}' > \"$f\" || exit 3\n"
        f"for a in {' '.join(addresses)}; do\n"
        '  if [ -f "$k/root-$a.pub" ]; then echo "$a" >> "$f" || exit 3\n'
        '  else echo "cfrun $a: no key on file, not polled (cfrun would ask whether to accept one on trust) [local $k/root-$a.pub missing]"\n'
        "  fi\n"
        "done\n"
        'cfrun -f "$f" <<\'CSYNC_ANSWERS\' &\nno\nCSYNC_ANSWERS\n'
        "p=$!\n"
        f"( trap '' 15; s=0; while [ $s -lt {t} ]; do sleep 1; s=$((s + 1)); done; kill -TERM 0 ) </dev/null >/dev/null 2>&1 &\n"
        "w=$!\n"
        'wait "$p"; rc=$?\n'
        'kill -KILL "$w" 2>/dev/null\n'
        'exit "$rc"\n'
    )
    line = quote_argv(["cfrun", "-f", "<hosts file>", *addresses])
    return RemoteCommand(script, line if len(line) <= 120 else line[:100] + f" ... ({len(addresses)} clients)")




def cfagent_check(server_address: str) -> RemoteCommand:
    """cfagent on this host against the master's address (the package address on a cluster)."""
    return _live("cfagent", ["cfagent", "--policy-server", check(IPV4, server_address, "master address")])
