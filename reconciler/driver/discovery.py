"""`csync import`'s first look at a host: the discovery script and its parser."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.desired.model import Platform
from reconciler.desired.values import is_ipv4
from reconciler.driver.commands import RemoteCommand, assign, platform_params, search_path

_DISCOVER_SCRIPT = r"""
lp=$PATH
PATH=$SGPATH:$CFPATH:/usr/bin:/bin:/usr/sbin:$lp
LC_ALL=C
export PATH LC_ALL
exec 3>&1
# A program that fails is reported ("@failed TOOL STATUS" and its message), never an empty
# section: csync refuses to import from an answer with a failure in it.
failed() { echo "@failed $1 $2"; [ -z "$3" ] || printf '%s\n' "$3"; echo "@section-end"; }
echo "@hostname"
e=$(uname -n 2>&1 >&3) || failed uname $? "$e"
# Serviceguard's record of where it lives, /etc/cmcluster.conf (HP: SGSBIN the commands,
# SGCONF the configuration): read line by line, never sourced; an absolute path of plain
# characters only.
echo "@sgconf"
SGSBIN= SGCONF=
if [ -f /etc/cmcluster.conf ] && [ ! -L /etc/cmcluster.conf ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      SGSBIN=/*|SGCONF=/*)
        k=${line%%=*}; v=${line#*=}; v=${v%%#*}
        set -f; set -- $v; set +f; v=${1-}
        case $v in
          /*[!A-Za-z0-9/._+-]*|*//*|*/../*|*/..|*/./*|*/.) ;;
          /*) echo "$k $v"; if [ "$k" = SGSBIN ]; then SGSBIN=$v; else SGCONF=$v; fi ;;
        esac ;;
    esac
  done < /etc/cmcluster.conf
fi
# the configured search paths first, then Serviceguard's own SGSBIN, then the login PATH
PATH=$SGPATH:${SGSBIN:+$SGSBIN:}$CFPATH:/usr/bin:/bin:/usr/sbin:$lp
echo "@where"
for t in cmviewcl cfagent cfrun; do
  w=$(command -v $t 2>/dev/null) && case $w in /*/$t) echo "$t ${w%/*}" ;; esac
done
echo "@cmviewcl"
# SGFORMAT auto: the line format from A.11.18, and on a release that refuses -f the table
# format (-v); line or table: that format only
if command -v cmviewcl >/dev/null 2>&1; then
  rc=1; fmt=line
  if [ "$SGFORMAT" != table ]; then out=$(cmviewcl -v -f line 2>&1); rc=$?; fi
  if [ "$SGFORMAT" = table ] || { [ "$SGFORMAT" = auto ] && [ $rc != 0 ]; }; then
    tab=$(cmviewcl -v 2>&1); trc=$?
    if [ "$SGFORMAT" = table ] || [ $trc = 0 ]; then out=$tab; rc=$trc; fmt=table; fi
  fi
  [ -z "$out" ] || printf '%s\n' "$out"
  echo "@format $fmt"; echo "@rc $rc"
else
  echo "cmviewcl: command not found (searched $SGPATH${SGSBIN:+, $SGSBIN} and PATH)"; echo "@rc 127"
fi
echo "@package-files"
# the desired state's package directory; when it holds no package file and Serviceguard's
# SGCONF names another configuration directory (Serviceguard for Linux): $SGCONF/csync
d=$PKGDIR
if [ -n "$SGCONF" ] && [ "$SGCONF/csync" != "$PKGDIR" ]; then
  n=0; for f in "$PKGDIR"/*.conf "$PKGDIR"/*.ascii; do [ -f "$f" ] && [ ! -L "$f" ] && n=1; done
  [ $n = 1 ] || d=$SGCONF/csync
fi
echo "@pkgdir $d"
for f in "$d"/*.conf "$d"/*.ascii; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  e=$(awk '$1 ~ /^(package_name|node_name|ip_address|fs_directory)$/ && NF >= 2 { print $1, $2 }' "$f" 2>&1 >&3) || failed awk $? "$e"
done
echo "@hosts"
if [ -r /etc/hosts ]; then
  e=$(awk '$1 ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/ { for (i = 2; i <= NF && substr($i, 1, 1) != "#"; i++) print $1, $i }' /etc/hosts 2>&1 >&3) || failed awk $? "$e"
fi
echo "@standalone"
[ -d "$SINPUTS" ] && [ ! -L "$SINPUTS" ] && echo yes
echo "@end"
"""


def discover(*, package_files_dir: str, standalone_master_inputs: str, platform: Platform) -> RemoteCommand:
    """`csync import`'s first look at a host: its name, where Serviceguard says it lives
    (/etc/cmcluster.conf), where cmviewcl, cfagent and cfrun are found, cmviewcl, the csync
    package's ASCII file (address, mount point, nodes), /etc/hosts (Serviceguard wants every
    node in it) and whether it is a standalone master. Reads only; sections start with '@'."""
    params = {
        "PKGDIR": package_files_dir,
        "SINPUTS": standalone_master_inputs,
        **platform_params(platform.serviceguard_path, platform.cmviewcl_format),
        "CFPATH": search_path(platform.cfengine_path, "cfengine search path"),
    }
    header = "\n".join(assign(k, v) for k, v in params.items())
    return RemoteCommand(script=f"{header}\n{_DISCOVER_SCRIPT}", display="csync import (discover)")


@dataclass
class Discovery:
    """What `discover` printed, parsed."""

    hostname: str | None = None
    cmviewcl_rc: int | None = None
    cmviewcl: list[str] = field(default_factory=list)
    cmviewcl_format: str = "line"  # table: the release refused -f line (or platform.cmviewcl_format is table)
    sgconf: dict[str, str] = field(default_factory=dict)  # SGSBIN, SGCONF of /etc/cmcluster.conf
    where: dict[str, str] = field(default_factory=dict)  # cmviewcl, cfagent, cfrun -> the directory it was found in
    package_dir: str | None = None  # where the package files were read
    failures: list[str] = field(default_factory=list)  # "TOOL failed (exit N): message"
    package_files: list[tuple[str, str]] = field(default_factory=list)
    etc_hosts: dict[str, str] = field(default_factory=dict)  # name -> address (first line wins)
    standalone: bool = False
    complete: bool = False


def parse_discovery(text: str) -> Discovery:
    d = Discovery()
    section = None
    failure: list[str] | None = None
    for line in text.splitlines():
        if failure is not None:
            if line == "@section-end":
                d.failures.append(" ".join(failure)[:300])
                failure = None
            else:
                failure.append(line)
            continue
        if line.startswith("@"):
            tag, _, rest = line.partition(" ")
            if tag == "@rc" and section == "cmviewcl":
                d.cmviewcl_rc = int(rest) if rest.strip().isdigit() else None
            elif tag == "@format" and section == "cmviewcl":
                d.cmviewcl_format = rest.strip()
            elif tag == "@pkgdir" and section == "package-files":
                d.package_dir = rest.strip() or None
            elif tag == "@failed":
                tool, _, status = rest.partition(" ")
                failure = [f"{tool} failed (exit {status}) in section {section}:"]
            elif tag == "@end":
                d.complete = True
            else:
                section = tag[1:]
            continue
        if section == "hostname" and d.hostname is None and line.strip():
            d.hostname = line.strip()
        elif section == "cmviewcl":
            d.cmviewcl.append(line)
        elif section in ("sgconf", "where"):
            key, _, value = line.partition(" ")
            if value.startswith("/"):
                (d.sgconf if section == "sgconf" else d.where).setdefault(key, value)
        elif section == "package-files":
            key, _, value = line.partition(" ")
            if value.strip():
                d.package_files.append((key, value.strip()))
        elif section == "hosts" and line.split():
            address, *names = line.split()
            if is_ipv4(address):
                for name in names:
                    d.etc_hosts.setdefault(name, address)
                    d.etc_hosts.setdefault(name.split(".")[0], address)
        elif section == "standalone" and line.strip() == "yes":
            d.standalone = True
    return d
