"""csync's probe program: the forced command of the plan identity (docs/SECURITY.md).

The probe (driver/probe.sh) normally travels on stdin to ``/bin/sh -s``, which needs a login
that can run anything. The plan identity is a second key, authorized for root with
``command="<PROBE_PROGRAM>"``: sshd runs that program whatever the client asks, and the
client's request is only data, in ``SSH_ORIGINAL_COMMAND``. The program is probe.sh itself,
preceded by a header that checks the request word by word and sets the probe's parameters;
the DSAU constants (dsau.py) and the site's platform (desired state `platform:`: the
Serviceguard search path, the cmviewcl format) are written into it. So a plan made with the
plan identity reads the same facts as one made with root's, in one round trip, and the key
can do nothing else.

The platform is written in, not sent: it decides which programs root runs (the search path
comes first in PATH), and only root (csync apply, csync bootstrap) installs the program, so
the plan key cannot point the probe at another directory. The paths the probe only reads
come in the request. A site's platform is part of the program's text, hence of its digest:
a program installed for another platform is "another program", reported and replaced by
the next apply like an older one.

Request (one line of words; every value checked here and again by the program)::

    csync-probe DIGEST role=member cf=DIR mount=DIR pkgfiles=DIR
    csync-probe DIGEST role=master cf=DIR minputs=DIR/inputs
    csync-probe DIGEST role=client cf=DIR

any of them followed by ``mode=serve`` for the probe server (csync watch: probe.sh, SERVE).
DIGEST is the digest of the program csync expects (for the site's platform). A program with another digest answers
only its own version line, as JSON, exit 3 (``EXIT_OTHER_PROGRAM``): csync reports it and
plans its upgrade. That answer, and the first two words, are the protocol every version
keeps. Anything else is refused, exit 64 (``EXIT_REFUSED``), and nothing runs.

The program's identity is its version line, line 2: ``CSYNC_PROBE_PROGRAM=v<VERSION>:<DIGEST>``,
DIGEST the sha256 of everything after that line. The probe reports the installed program's
version line (``program`` in its JSON) whichever way it runs. `PROGRAM_VERSION` orders
programs: bump it with every change to probe.sh or to this module's program text, so that
a newer program is never replaced by an older csync (a program whose digest differs and
whose version is not newer is replaced).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import shlex
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal

from reconciler.domain import dsau
from reconciler.driver.commands import PROBE_CONSTANTS, RemoteCommand, UnsafeValue, platform_params

if TYPE_CHECKING:
    from reconciler.desired.model import DesiredState, Platform

# 2: the site's platform written in; 3: the probe ends when its standard input closes (probe.sh,
# BOUNDED); 4: mode=serve, the probe server of csync watch (probe.sh, SERVE)
PROGRAM_VERSION = 4
REQUEST_WORD = "csync-probe"
EXIT_OTHER_PROGRAM = 3
EXIT_REFUSED = 64
# The version line: a shell assignment (the program compares its own digest with the
# request's) and what the probe reports.
VERSION_LINE = re.compile(r"^CSYNC_PROBE_PROGRAM=v(?P<version>[0-9]{1,9}):(?P<digest>sha256:[0-9a-f]{64})$")
# A path the program accepts: absolute, normalised, of letters, digits and . _ + - (the
# desired state's paths are a subset); no "." or ".." component.
_PATH = re.compile(r"^(/[A-Za-z0-9._+-]+)+$")
_MAX_PATH = 255
_MAX_REQUEST = 1024


# --- the program ---------------------------------------------------------------------------
_CHECKS = r"""# csync's probe program: the forced command of csync's plan identity (authorized_keys:
# command="{program}"). It runs csync's probe (the rest of this file) and nothing else,
# with the parameters of the request in SSH_ORIGINAL_COMMAND, each checked:
#   csync-probe DIGEST role=member cf=DIR mount=DIR pkgfiles=DIR
#   csync-probe DIGEST role=master cf=DIR minputs=DIR/inputs
#   csync-probe DIGEST role=client cf=DIR
# and any of them followed by mode=serve: probe on request (csync watch; probe.sh, SERVE).
# DIR: an absolute, normalised path of letters, digits and . _ + - (no . or .. component).
# A request for another DIGEST gets this program's version line (exit {other}): csync plans
# its upgrade. Any other request is refused (exit {refused}) and nothing runs.
# Installed by csync (csync bootstrap, or the install-probe action of csync apply); csync
# replaces a program that differs from its own: do not edit it.
refuse() {{ echo "csync-probe: refused: $1" >&2; exit {refused}; }}
set -f
IFS=' '
req=${{SSH_ORIGINAL_COMMAND-}}
case $req in
  '') refuse "no request (this key runs csync's probe only)" ;;
  *[!A-Za-z0-9\ /._+=:-]*) refuse "unexpected characters in the request" ;;
esac
[ ${{#req}} -le {max_request} ] || refuse "request too long"
# shellcheck disable=SC2086 # split the request into words, on spaces alone, without globbing (set -f)
set -- $req
set +f
unset IFS
[ $# -ge 3 ] && [ "$1" = {word} ] || refuse "not a csync probe request"
case $2 in
  sha256:*) ;;
  *) refuse "no program digest" ;;
esac
if [ "$2" != "${{CSYNC_PROBE_PROGRAM#*:}}" ]; then
  echo "{{\"format\":1,\"refused\":\"program\",\"program\":{{\"kind\":\"file\",\"header\":[\"CSYNC_PROBE_PROGRAM=$CSYNC_PROBE_PROGRAM\"]}}}}"
  exit {other}
fi
shift 2
path() {{
  case $2 in /*) ;; *) refuse "$1: not an absolute path" ;; esac
  case $2 in *//*|*/|*/./*|*/.|*/../*|*/..) refuse "$1: not a normalised path" ;; esac
  case $2 in *[!A-Za-z0-9/._+-]*) refuse "$1: unexpected characters" ;; esac
  [ ${{#2}} -le {max_path} ] || refuse "$1: too long"
}}
ROLE='' CF='' MOUNT='' MINPUTS='' PKGFILES='' SERVE='' seen=' '
for w
do
  k=${{w%%=*}}
  v=${{w#*=}}
  [ "$k" != "$w" ] || refuse "not key=value: $w"
  case $seen in *" $k "*) refuse "$k given twice" ;; esac
  seen="$seen$k "
  case $k in
    role) case $v in member|master|client) ROLE=$v ;; *) refuse "role: not member, master or client" ;; esac ;;
    cf) path cf "$v"; CF=$v ;;
    mount) path mount "$v"; MOUNT=$v ;;
    pkgfiles) path pkgfiles "$v"; PKGFILES=$v ;;
    minputs) path minputs "$v"; case $v in */inputs) ;; *) refuse "minputs: not a directory named inputs" ;; esac; MINPUTS=$v ;;
    mode) case $v in serve) SERVE=1 ;; *) refuse "mode: not serve" ;; esac ;;
    *) refuse "unknown parameter $k" ;;
  esac
done
case $ROLE in
  member) [ -n "$CF" ] && [ -n "$MOUNT" ] && [ -n "$PKGFILES" ] && [ -z "$MINPUTS" ] || refuse "role member takes cf, mount and pkgfiles"
    MINPUTS={member_inputs}; STATE={member_state} ;;
  master) [ -n "$CF" ] && [ -n "$MINPUTS" ] && [ -z "$MOUNT$PKGFILES" ] || refuse "role master takes cf and minputs"
    STATE={standalone_state} ;;
  client) [ -n "$CF" ] && [ -z "$MOUNT$MINPUTS$PKGFILES" ] || refuse "role client takes cf only"
    STATE= ;;
  *) refuse "no role" ;;
esac
{constants}
unset req seen w k v
"""


def _probe_sh() -> str:
    return resources.files("reconciler.driver").joinpath("probe.sh").read_text(encoding="utf-8")


@functools.cache
def program_body(platform: Platform) -> str:
    """Everything after the version line: the request's checks, the constants (DSAU's and the
    site's platform), probe.sh."""
    constants = {**PROBE_CONSTANTS, **platform_params(platform.serviceguard_path, platform.cmviewcl_format), "PROG": dsau.PROBE_PROGRAM}
    checks = _CHECKS.format(
        program=dsau.PROBE_PROGRAM,
        other=EXIT_OTHER_PROGRAM,
        refused=EXIT_REFUSED,
        max_request=_MAX_REQUEST,
        max_path=_MAX_PATH,
        word=REQUEST_WORD,
        member_inputs=shlex.quote(dsau.PACKAGE_MASTER_INPUTS),
        member_state=shlex.quote(dsau.PACKAGE_CSYNC_STATE),
        standalone_state=shlex.quote(dsau.STANDALONE_CSYNC_STATE),
        constants="\n".join(f"{k}={shlex.quote(v)}" for k, v in constants.items()),
    )
    return checks + _probe_sh()


@functools.cache
def program_digest(platform: Platform) -> str:
    """The digest of the program for a site of ``platform``."""
    return "sha256:" + hashlib.sha256(program_body(platform).encode("utf-8")).hexdigest()


def version_line(platform: Platform) -> str:
    return f"CSYNC_PROBE_PROGRAM=v{PROGRAM_VERSION}:{program_digest(platform)}"


def program_text(platform: Platform) -> str:
    """The program as installed for a site of ``platform``: a shebang, the version line, the body."""
    return f"#!/bin/sh\n{version_line(platform)}\n{program_body(platform)}"


def parse_version_line(line: str) -> tuple[int, str] | None:
    """(version, digest) of a program's version line; None for anything else."""
    m = VERSION_LINE.match(line)
    return (int(m["version"]), m["digest"]) if m else None


# --- the request ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeRequest:
    """What the plan identity sends: the request line (the exec command sshd hands to the
    forced command as SSH_ORIGINAL_COMMAND), and its short form."""

    line: str
    display: str


def check_path(what: str, value: str) -> str:
    parts = value.split("/")[1:]
    if len(value) > _MAX_PATH or not _PATH.fullmatch(value) or any(p in (".", "..") for p in parts):
        raise UnsafeValue(
            f"{what} {value!r} cannot be sent to the probe program: it takes absolute, normalised paths "
            f"of letters, digits and . _ + - (at most {_MAX_PATH} characters)"
        )
    return value


def request(role: str, *, cfengine_dir: str, mount: str, master_inputs: str, package_files_dir: str, platform: Platform, serve: bool = False) -> ProbeRequest:
    """The request for the probe of a host in ``role``, with the same parameters as
    commands.probe_script (for members, the master inputs are the package's: fixed), to the
    program of ``platform``; ``serve``: the probe server (Session.serve_request)."""
    words = [REQUEST_WORD, program_digest(platform), f"role={role}", f"cf={check_path('paths.cfengine_dir', cfengine_dir)}"]
    if role == "member":
        words.append(f"mount={check_path('master.package.mount', mount)}")
        words.append(f"pkgfiles={check_path('paths.package_files_dir', package_files_dir)}")
    elif role == "master":
        check_path("paths.standalone_master_inputs", master_inputs)
        if not master_inputs.endswith("/inputs"):
            raise UnsafeValue(f"paths.standalone_master_inputs {master_inputs!r} cannot be sent to the probe program: it takes a directory named inputs only")
        words.append(f"minputs={master_inputs}")
    elif role != "client":
        raise UnsafeValue(f"refusing probe role {role!r}")
    if serve:
        words.append("mode=serve")
    line = " ".join(words)
    if len(line) > _MAX_REQUEST:
        raise UnsafeValue(f"the probe request is longer than {_MAX_REQUEST} characters")
    return ProbeRequest(line=line, display=f"csync probe ({role}{', served' if serve else ''}) through {dsau.PROBE_PROGRAM}")


def probe_request(state: DesiredState, role: str, *, serve: bool = False) -> ProbeRequest:
    """The request for the probe of a host in ``role``: the parameters commands.probe gives
    probe.sh, the DSAU constants being the program's own."""
    return request(
        role,
        cfengine_dir=state.paths.cfengine_dir,
        mount=state.package.mount if state.is_cluster else "",
        master_inputs=state.paths.standalone_master_inputs,
        package_files_dir=state.paths.package_files_dir,
        platform=state.platform,
        serve=serve,
    )


# --- installing it -------------------------------------------------------------------------
_END = "CSYNC_PROBE_PROGRAM_END"


@functools.cache
def install(platform: Platform) -> RemoteCommand:
    """Install (or replace) the probe program of a site of ``platform``, atomically: a
    root-owned directory that no one else can write, a temporary file, mode 755, rename.
    Refuses a symbolic link on the way."""
    text = program_text(platform)
    if any(line == _END for line in text.splitlines()):
        raise UnsafeValue("the probe program holds its own end marker")
    parent, d, prog = dsau.STANDALONE_CSYNC_STATE, dsau.PROBE_PROGRAM_DIR, dsau.PROBE_PROGRAM
    q = shlex.quote
    script = (
        "umask 022\nPATH=/usr/bin:/bin:/usr/sbin; export PATH\n"
        f"for p in {q(parent)} {q(d)}; do\n"
        '  [ ! -L "$p" ] || { echo "$p is a symbolic link; not installing through it" >&2; exit 3; }\n'
        '  mkdir -p "$p" && [ -d "$p" ] || { echo "cannot create $p" >&2; exit 3; }\n'
        '  chmod go-w "$p" || exit 3\n'
        '  [ -n "$(find "$p" -prune -user 0 ! -perm -020 ! -perm -002)" ] || { echo "$p is not root'
        "'"
        's alone (owner or mode); not installing there" >&2; exit 3; }\n'
        "done\n"
        f"f={q(prog)}; tmp={q(d)}/.csync-probe.$$\n"
        '[ ! -d "$f" ] || { echo "$f is a directory" >&2; exit 3; }\n'
        'rm -f "$tmp"\n'
        f'cat > "$tmp" <<\'{_END}\' || {{ rm -f "$tmp"; exit 1; }}\n{text}{_END}\n'
        'chmod 755 "$tmp" && mv -f "$tmp" "$f" || { rm -f "$tmp"; exit 1; }\n'
    )
    return RemoteCommand(script, f"install {prog} (csync probe program v{PROGRAM_VERSION}, {program_digest(platform)[:19]})")


# --- the plan key's authorized_keys line -----------------------------------------------------
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
_COMMENT = re.compile(r"^[A-Za-z0-9@._+-]{1,64}$")
_FROM = re.compile(r"^!?[A-Za-z0-9.*?:/-]{1,255}$")
Syntax = Literal["openssh", "hpux"]
# What the plan key may do besides running the forced command: nothing. `restrict` (OpenSSH
# 7.2 and later) also covers ~/.ssh/rc and any restriction added later. HP-UX Secure Shell
# (OpenSSH-based releases that predate `restrict`) gets the options every OpenSSH knows; an
# sshd that does not know an option refuses the whole line, so a wrong choice fails closed.
RESTRICTIONS: dict[Syntax, tuple[str, ...]] = {
    "openssh": ("restrict",),
    "hpux": ("no-port-forwarding", "no-X11-forwarding", "no-agent-forwarding", "no-pty"),
}


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: str
    comment: str

    @property
    def fingerprint(self) -> str:
        digest = base64.b64encode(hashlib.sha256(base64.b64decode(self.blob)).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"


def parse_public_key(text: str) -> PublicKey:
    """An OpenSSH public key (``type base64 [comment]``, no options), checked."""
    parts = text.strip().split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        raise UnsafeValue(f"not an OpenSSH public key of a type csync knows ({', '.join(_KEY_TYPES)})")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise UnsafeValue("the public key's base64 does not decode") from None
    if len(blob) < 4 or blob[4 : 4 + int.from_bytes(blob[:4], "big")] != parts[0].encode():
        raise UnsafeValue("the public key's type does not match its data")
    comment = parts[2] if len(parts) > 2 and _COMMENT.fullmatch(parts[2]) else "csync-plan"
    return PublicKey(parts[0], parts[1], comment)


def authorized_keys_line(key: PublicKey, *, from_patterns: tuple[str, ...] = (), syntax: Syntax = "openssh") -> str:
    """root's authorized_keys line for the plan key: restricted, forced to the probe program,
    optionally only from the addresses or names of ``from_patterns`` (OpenSSH patterns)."""
    options = list(RESTRICTIONS[syntax])
    if from_patterns:
        for p in from_patterns:
            if not _FROM.fullmatch(p):
                raise UnsafeValue(f"refusing from= pattern {p!r} (an address, CIDR or host name pattern; no commas or quotes)")
        options.append(f'from="{",".join(from_patterns)}"')
    options.append(f'command="{dsau.PROBE_PROGRAM}"')
    return f"{','.join(options)} {key.type} {key.blob} {key.comment}"


def authorize(line: str, key: PublicKey) -> RemoteCommand:
    """Put ``line`` in root's authorized_keys in place of any line holding the same key,
    atomically (temporary file, mode 600, rename); refuses a symbolically linked file."""
    if "\n" in line or "'" in line or key.blob not in line:
        raise UnsafeValue("refusing an authorized_keys line")
    q = shlex.quote
    script = (
        "umask 077\nPATH=/usr/bin:/bin:/usr/sbin; export PATH\n"
        'mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh" || exit 3\n'
        'f="$HOME/.ssh/authorized_keys"; tmp="$f.csync.tmp"\n'
        '[ ! -L "$f" ] || { echo "$f is a symbolic link" >&2; exit 3; }\n'
        'rm -f "$tmp"\n'
        f'if [ -f "$f" ]; then grep -vF -e {q(key.blob)} "$f" > "$tmp"; [ $? -le 1 ] || {{ rm -f "$tmp"; exit 1; }}; else : > "$tmp"; fi\n'
        f'printf \'%s\\n\' {q(line)} >> "$tmp" && chmod 600 "$tmp" && mv -f "$tmp" "$f" || {{ rm -f "$tmp"; exit 1; }}\n'
    )
    return RemoteCommand(script, f"authorize the plan key {key.fingerprint} for root, forced to {dsau.PROBE_PROGRAM}")
