"""The command line on a terminal (a pseudo-terminal) against the lab: rich draws the probe's
progress (on standard error) and the facts table; with CI set, or without a terminal, plain
lines only."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import click
import pytest

pytestmark = pytest.mark.lab

BAR = "━"
COLUMNS = 150


def run(args: list[str], *, ci: bool, stdout_tty: bool = True, stderr_tty: bool = True) -> tuple[int, str, str]:
    """Run csync with standard output and/or error on a pseudo-terminal; returns
    (exit code, what the terminal showed, what went to the pipe)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR")} | {"COLUMNS": str(COLUMNS), "TERM": "xterm-256color"}
    if ci:
        env["CI"] = "true"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli.main", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave if stderr_tty else subprocess.PIPE,
    )
    os.close(slave)
    seen = bytearray()
    pipe = proc.stdout if not stdout_tty else proc.stderr if not stderr_tty else None
    piped = bytearray()
    while True:
        ready, _, _ = select.select([master] + ([pipe] if pipe else []), [], [], 60)
        assert ready, "csync did not finish in time"
        if master in ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end is closed
                chunk = b""
            if not chunk:
                break
            seen += chunk
        if pipe in ready:
            piped += pipe.read1(65536)
    if pipe:
        piped += pipe.read()
    os.close(master)
    return proc.wait(timeout=60), seen.decode("utf-8", "replace"), piped.decode("utf-8", "replace")


def test_plan_on_a_terminal_draws_the_probe_on_standard_error_only(reseed):
    lab = reseed("seed")
    code, terminal, stdout = run(["plan", "-f", str(lab.desired_state_path)], ci=False, stdout_tty=False)
    assert code == 0
    assert "probed" in terminal and BAR in terminal and f"{len(lab.hosts)}/{len(lab.hosts)}" in terminal
    assert "\x1b[" not in stdout and BAR not in stdout and "Plan:" in stdout


def test_plan_in_ci_on_a_terminal_writes_one_plain_progress_line(reseed):
    lab = reseed("seed")
    code, terminal, stdout = run(["plan", "-f", str(lab.desired_state_path)], ci=True, stdout_tty=False)
    assert code == 0 and "Plan:" in stdout
    assert BAR not in terminal and "\x1b[" not in terminal and "\r" not in terminal.replace("\r\n", "\n")
    assert terminal.strip().startswith(f"probed {len(lab.hosts)}/{len(lab.hosts)} in ")


def test_plan_as_json_on_a_terminal_shows_no_progress(lab):
    code, terminal, stdout = run(["plan", "-f", str(lab.desired_state_path), "--format", "json"], ci=False, stdout_tty=False)
    assert code == 0 and stdout.startswith("{") and terminal == ""


def test_facts_on_a_terminal_is_a_rich_table_and_plain_in_ci(lab):
    lab.node_down("client2")
    code, terminal, _ = run(["facts", "-f", str(lab.desired_state_path)], ci=False)
    assert code == 1
    assert "─" * 20 in terminal and "UNREACHABLE" in terminal and BAR in terminal  # header rule; the probe's bar
    assert f"{len(lab.hosts)} hosts probed in" in terminal and "1 unreachable" in terminal
    code, terminal, _ = run(["facts", "-f", str(lab.desired_state_path)], ci=True)
    assert code == 1
    assert "─" not in terminal and BAR not in terminal  # colours yes (a terminal), drawings no
    lines = click.unstyle(terminal).replace("\r\n", "\n").splitlines()
    assert lines[0].startswith(f"probed {len(lab.hosts)}/{len(lab.hosts)} in ")
    assert lines[1].split()[:3] == ["HOST", "ADDRESS", "ROLE"] and lines[1].startswith("HOST     ADDRESS")
    assert f"{len(lab.hosts)} hosts probed in" in lines[-1]
