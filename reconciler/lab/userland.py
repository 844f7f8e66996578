"""The lab's userlands: what `sh`, `awk` and the common tools are on every host.

- ``default``: the machine's own (Debian: dash as sh, mawk as awk, GNU find, ls, sed, grep,
  cksum, date).
- ``hpux`` [ours: an HP-UX-like userland built from Debian packages]: ``/bin/sh`` (and root's
  login shell) is posh, a strict POSIX shell of the ksh family (pdksh-derived, as HP-UX's
  ksh88-derived POSIX shell is of that family); ``awk`` is the one-true-awk (Debian's
  original-awk); ``find``, ``ls``, ``cksum``, ``sed``, ``grep`` and ``date`` are thin wrappers
  that refuse what HP-UX 11i's do not have (GNU long options, GNU-only options and primaries,
  options after operands, ``date +%s``) with HP-UX-style messages, and run the GNU tool
  otherwise. The real tools move to /usr/lib/csync-lab-gnu inside the host (its overlay).

Built by hostinit.py inside each host's private overlay, never on the machine. The packages
(posh, original-awk) are installed by scripts/setup-system.sh; `check_userland` says what is
missing.
"""

from __future__ import annotations

import os

USERLANDS = ("default", "hpux")
REAL_DIR = "/usr/lib/csync-lab-gnu"  # inside a host: where the wrapped GNU tools are
SHELL = "/usr/bin/posh"  # /bin/sh and root's login shell
AWK = "/usr/bin/original-awk"
NEEDED = {SHELL: "posh", AWK: "original-awk"}

# The wrappers: POSIX sh, builtins only (they run before any other tool). HP-UX 11i's option
# letters [doc: the HP-UX 11i v3 man pages of ls(1), grep(1), sed(1), cksum(1), find(1)]; a
# GNU-only one is refused as HP-UX's getopt does ("illegal option -- X"), exit 2.
_COMMON = r"""#!/bin/sh
# csync lab, userland hpux: {tool} as HP-UX 11i has it (GNU's runs only for what HP-UX knows)
real={real}/{tool}
refuse() {{ echo "{tool}: $1" >&2; echo "usage: {usage}" >&2; exit 2; }}
"""

# For tools whose options are letters: every argument before the first operand is an option
# cluster of allowed letters (those in ARG take a value: the rest of the cluster or the next
# argument); after an operand, an argument starting with '-' is an option GNU would take
# (it permutes), which HP-UX would not.
_LETTERS = r"""allowed='{allowed}'; witharg='{witharg}'
operands=
skip=
for a in "$@"; do
  if [ -n "$skip" ]; then skip=; continue; fi
  case $a in
    --) [ -z "$operands" ] && operands=1; continue ;;
    --*) refuse "illegal option -- -" ;;
    -) operands=1 ;;
    -*)
      [ -z "$operands" ] || refuse "an option after an operand: $a (HP-UX does not reorder arguments)"
      o=${{a#-}}
      while [ -n "$o" ]; do
        c=${{o%"${{o#?}}"}}; o=${{o#?}}
        case $allowed in *"$c"*) ;; *) refuse "illegal option -- $c" ;; esac
        case $witharg in *"$c"*) [ -z "$o" ] && skip=1; o= ;; esac
      done ;;
    *) operands=1 ;;
  esac
done
exec "$real" "$@"
"""

_FIND = r"""# paths, then an expression of POSIX primaries (HP-UX 11i: no -maxdepth, -mindepth, -printf,
# -print0, -iname, -regex, -delete, -empty, -not, ...)
expr=
skip=0
for a in "$@"; do
  if [ "$skip" = exec ]; then case $a in ';'|+) skip=0 ;; esac; continue; fi
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case $a in
    -H|-L) [ -z "$expr" ] && continue ;;
  esac
  case $a in
    --*) refuse "illegal option -- -" ;;
    '('|')'|'!'|-a|-o) expr=1 ;;
    -name|-path|-type|-perm|-user|-group|-size|-mtime|-atime|-ctime|-newer|-links|-inum) expr=1; skip=1 ;;
    -exec|-ok) expr=1; skip=exec ;;
    -print|-prune|-depth|-xdev|-mount|-nouser|-nogroup|-follow) expr=1 ;;
    -*) refuse "bad option $a" ;;
    *) [ -z "$expr" ] || refuse "bad argument $a" ;;
  esac
done
exec "$real" "$@"
"""

_DATE = r"""# HP-UX 11i's date has no %s (seconds since the epoch)
for a in "$@"; do
  case $a in
    --*) refuse "illegal option -- -" ;;
    +*%s*) echo "date: bad format character - s" >&2; exit 1 ;;
  esac
done
exec "$real" "$@"
"""

TOOLS = {
    "ls": (_LETTERS, "1ACFHLRabcdefgilmnopqrstux", "", "ls [-1ACFHLRabcdefgilmnopqrstux] [file ...]"),
    "grep": (_LETTERS, "EFbcefhilnqsvx", "ef", "grep [-E|-F] [-c|-l|-q] [-bhinsvx] -e pattern_list... [-f pattern_file...] [file...]"),
    "sed": (_LETTERS, "nef", "ef", "sed [-n] script [file...]  or  sed [-n] [-e script]... [-f script_file]... [file...]"),
    "cksum": (_LETTERS, "", "", "cksum [file ...]"),
    "find": (_FIND, "", "", "find path-list [predicate-list]"),
    "date": (_DATE, "", "", "date [-u] [+format]"),
}


def wrapper(tool: str) -> str:
    """The text of the hpux userland's wrapper for ``tool``."""
    body, allowed, witharg, usage = TOOLS[tool]
    head = _COMMON.format(tool=tool, real=REAL_DIR, usage=usage)
    return head + (body.format(allowed=allowed, witharg=witharg) if body is _LETTERS else body)


def spec(userland: str) -> dict:
    """What hostinit.py does to a host's root for ``userland``: links to make, tools to wrap."""
    if userland == "default":
        return {}
    if userland != "hpux":
        raise ValueError(f"unknown userland {userland!r}; choose one of {', '.join(USERLANDS)}")
    return {
        "links": {"/usr/bin/sh": "posh", "/usr/bin/awk": "original-awk"},
        "wrap": {f"/usr/bin/{tool}": wrapper(tool) for tool in TOOLS},
        "real_dir": REAL_DIR,
        "root_shell": "/bin/sh",
    }


def check_userland(userland: str) -> str | None:
    """What the machine lacks for ``userland`` (None: nothing)."""
    if userland == "default":
        return None
    missing = [pkg for path, pkg in NEEDED.items() if not os.access(path, os.X_OK)]
    if missing:
        return f"the hpux userland needs {', '.join(missing)}: apt-get install {' '.join(missing)} (scripts/setup-system.sh)"
    return None
