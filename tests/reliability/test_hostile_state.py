"""Hostile desired state: rejected by validation with a clear error, never reaching a host.

The desired state's hosts are given addresses on which this test listens (127.0.77.x, one
port): a valid state makes `csync plan` connect to them (the control: the detector works),
and every hostile variant must exit 3 with a `file:line:col: field: message` diagnostic
while no connection arrives. Each rule's exact wording is tested in tests/test_loader.py;
this is the end-to-end guarantee for plan, apply and facts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ADDRESSES = ["127.0.77.1", "127.0.77.2", "127.0.77.10", "127.0.77.21"]

BASE = """\
version: 1
site: lab
master:
  mode: serviceguard
  cluster: c1
  package: {name: csync, address: 127.0.77.10, mount: /csync, node: node1}
  members:
    - {name: node1, address: 127.0.77.1}
    - {name: node2, address: 127.0.77.2}
clients:
  - {name: web1, address: 127.0.77.21}
access:
  port: PORT
  identity_file: id_ed25519
  known_hosts: known_hosts
  connect_timeout: 2
"""

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)

# (what, transform of BASE, the field or place the diagnostic must name)
HOSTILE = [
    ("shell in a name", lambda t: t.replace("name: web1", 'name: "web1;reboot"'), "clients[0].name"),
    ("command substitution", lambda t: t.replace("name: web1", 'name: "$(reboot)"'), "clients[0].name"),
    ("backquotes", lambda t: t.replace("name: node2", 'name: "`id`"'), "master.members[1].name"),
    ("newline in a name", lambda t: t.replace("name: web1", 'name: "web1\\nnode1"'), "clients[0].name"),
    ("path traversal in a name", lambda t: t.replace("name: web1", 'name: "../../etc"'), "clients[0].name"),
    ("unicode look-alike", lambda t: t.replace("name: web1", 'name: "w\u0435b1"'), "clients[0].name"),
    ("fullwidth digit address", lambda t: t.replace("address: 127.0.77.21", "address: 127.0.77.２1"), "clients[0].address"),
    ("shell in an address", lambda t: t.replace("address: 127.0.77.21", 'address: "127.0.77.21;id"'), "clients[0].address"),
    ("very long name", lambda t: t.replace("name: web1", "name: " + "w" * 5000), "clients[0].name"),
    ("very long address", lambda t: t.replace("address: 127.0.77.21", "address: " + "1" * 5000), "clients[0].address"),
    ("traversal in the mount", lambda t: t.replace("mount: /csync", "mount: /csync/../etc"), "master.package.mount"),
    ("shell in the mount", lambda t: t.replace("mount: /csync", "mount: '/csync;reboot'"), "master.package.mount"),
    ("shell in a DSAU path", lambda t: t + "paths: {dispatcher: '/opt/dsau/bin/x $(reboot)'}\n", "paths.dispatcher"),
    ("traversal in a DSAU path", lambda t: t + "paths: {cfengine_dir: /var/opt/dsau/../../etc}\n", "paths.cfengine_dir"),
    ("shell in the ssh user", lambda t: t.replace("  port: PORT", "  user: 'root;id'\n  port: PORT"), "access.user"),
    ("shell in the package name", lambda t: t.replace("name: csync,", "name: 'csync;id',"), "master.package.name"),
    ("package name ending in a dot", lambda t: t.replace("name: csync,", "name: csync.,"), "master.package.name"),
    ("duplicate key", lambda t: t.replace("site: lab\n", "site: lab\nsite: other\n"), "site"),
    ("alias bomb", lambda t: t + BOMB, "alias"),
    ("YAML tag", lambda t: t.replace("site: lab", "site: !!python/object/apply:os.system [reboot]"), "tag"),
    ("huge file", lambda t: t + "# " + "x" * (2 * 1024 * 1024) + "\n", "1 MiB"),
    ("NUL byte", lambda t: t.replace("site: lab", "site: l\x00ab"), "site"),
    ("not UTF-8", lambda t: t.replace("site: lab", "site: l\udcffab"), "UTF-8"),
]


class Listeners:
    """A listening socket on every host address, one port; counts the connections."""

    def __init__(self):
        for _ in range(20):
            probe = socket.socket()
            probe.bind((ADDRESSES[0], 0))
            port = probe.getsockname()[1]
            probe.close()
            try:
                self.socks = []
                for a in ADDRESSES:
                    s = socket.socket()
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((a, port))
                    s.listen(64)
                    s.setblocking(False)
                    self.socks.append(s)
                self.port = port
                return
            except OSError:
                self.close()
        raise RuntimeError("no port free on every test address")

    def accepted(self) -> int:
        n = 0
        for s in self.socks:
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
        return n

    def close(self) -> None:
        for s in getattr(self, "socks", []):
            s.close()


@pytest.fixture
def site(tmp_path):
    listeners = Listeners()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id_ed25519")], check=True)
    (tmp_path / "known_hosts").write_text("")
    try:
        yield tmp_path, listeners
    finally:
        listeners.close()


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The csync command line, in this process (click's runner: exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from reconciler.cli.main import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def write(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


def test_the_control_a_valid_state_does_reach_the_listeners(site):
    where, listeners = site
    write(where / "site.yaml", BASE.replace("PORT", str(listeners.port)))
    r = run(where, "plan", "-f", "site.yaml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    time.sleep(0.2)
    assert listeners.accepted() >= 1


@pytest.mark.parametrize("what, transform, names", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_desired_state_is_refused_before_any_connection(site, what, transform, names):
    where, listeners = site
    write(where / "site.yaml", transform(BASE).replace("PORT", str(listeners.port)))
    for command in (["plan"], ["apply", "--auto-approve"], ["facts"]):
        r = run(where, *command, "-f", "site.yaml")
        assert r.returncode == 3, (command, r.returncode, r.stdout, r.stderr[-2000:])
        assert "Traceback" not in r.stderr and r.stdout == ""
        assert "site.yaml:" in r.stderr and names in r.stderr, r.stderr[-2000:]
        assert len(r.stderr) < 20_000  # a 5000-character value is shown shortened, not echoed
    assert listeners.accepted() == 0
    assert not (where / ".csync").exists()  # not even a journal: nothing ran
