"""`csync import`'s first look at a host: the discovery script and its parser."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.desired.values import is_ipv4
from reconciler.domain import dsau
from reconciler.driver.commands import RemoteCommand, assign

_DISCOVER_SCRIPT = r"""
PATH=$SGPATH:/usr/bin:/bin:/usr/sbin:$PATH
LC_ALL=C
export PATH LC_ALL
exec 3>&1
# A program that fails is reported ("@failed TOOL STATUS" and its message), never an empty
# section: csync refuses to import from an answer with a failure in it.
failed() { echo "@failed $1 $2"; [ -z "$3" ] || printf '%s\n' "$3"; echo "@section-end"; }
echo "@hostname"
e=$(uname -n 2>&1 >&3) || failed uname $? "$e"
echo "@cmviewcl"
# the line format from A.11.18; a release that refuses -f: the table format (-v)
if command -v cmviewcl >/dev/null 2>&1; then
  out=$(cmviewcl -v -f line 2>&1); rc=$?; fmt=line
  if [ $rc != 0 ]; then tab=$(cmviewcl -v 2>&1) && { out=$tab; rc=0; fmt=table; }; fi
  [ -z "$out" ] || printf '%s\n' "$out"
  echo "@format $fmt"; echo "@rc $rc"
else
  echo "cmviewcl: command not found"; echo "@rc 127"
fi
echo "@package-files"
for f in "$PKGDIR"/*.conf "$PKGDIR"/*.ascii; do
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


def discover(*, package_files_dir: str, standalone_master_inputs: str, serviceguard_path: str = dsau.SERVICEGUARD_PATH) -> RemoteCommand:
    """`csync import`'s first look at a host: its name, cmviewcl, the csync package's ASCII
    file (address, mount point, nodes), /etc/hosts (Serviceguard wants every node in it)
    and whether it is a standalone master. Reads only; sections start with '@'."""
    params = {"PKGDIR": package_files_dir, "SINPUTS": standalone_master_inputs, "SGPATH": serviceguard_path}
    header = "\n".join(assign(k, v) for k, v in params.items())
    return RemoteCommand(script=f"{header}\n{_DISCOVER_SCRIPT}", display="csync import (discover)")


@dataclass
class Discovery:
    """What `discover` printed, parsed."""

    hostname: str | None = None
    cmviewcl_rc: int | None = None
    cmviewcl: list[str] = field(default_factory=list)
    cmviewcl_format: str = "line"  # table: the release refused -f line
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
