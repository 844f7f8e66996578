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
echo "@hostname"
uname -n
echo "@cmviewcl"
if command -v cmviewcl >/dev/null 2>&1; then
  cmviewcl -v -f line 2>&1; echo "@rc $?"
else
  echo "cmviewcl: command not found"; echo "@rc 127"
fi
echo "@package-files"
for f in "$PKGDIR"/*.conf "$PKGDIR"/*.ascii; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  awk '$1 ~ /^(package_name|node_name|ip_address|fs_directory)$/ && NF >= 2 { print $1, $2 }' "$f" 2>/dev/null
done
echo "@hosts"
awk '$1 ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/ { for (i = 2; i <= NF && substr($i, 1, 1) != "#"; i++) print $1, $i }' /etc/hosts 2>/dev/null
echo "@standalone"
[ -d "$SINPUTS" ] && [ ! -L "$SINPUTS" ] && echo yes
echo "@end"
"""


def discover(*, package_files_dir: str, standalone_master_inputs: str,
             serviceguard_path: str = dsau.SERVICEGUARD_PATH) -> RemoteCommand:
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
    package_files: list[tuple[str, str]] = field(default_factory=list)
    etc_hosts: dict[str, str] = field(default_factory=dict)  # name -> address (first line wins)
    standalone: bool = False
    complete: bool = False


def parse_discovery(text: str) -> Discovery:
    d = Discovery()
    section = None
    for line in text.splitlines():
        if line.startswith("@"):
            tag, _, rest = line.partition(" ")
            if tag == "@rc" and section == "cmviewcl":
                d.cmviewcl_rc = int(rest) if rest.strip().isdigit() else None
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
