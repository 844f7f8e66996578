"""The live cfagent check without hosts (issue 17): the script csync sends uses only options
cfengine 2's cfagent has, writes its input file in a private directory and removes it, and
takes its verdict from whether the copy arrived; its output parser and the comparison of a
failure that names no file.

The script runs under the machine's /bin/sh with a stand-in ``cfagent`` first on PATH (shell
builtins only) that records its command line and input file and does what the test asks."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from reconciler.driver import commands
from reconciler.lab.emulators.cfengine import CFAGENT_LETTERS, read_input_file
from reconciler.trust.live import LiveResult, compare, interpret, parse_cfagent_output
from reconciler.trust.predict import trust_report
from tests.unit.sitefacts import PKG_IP, converged, site, standalone, with_keys
from tests.unit.test_trust_live import live_from

SOURCE = "/csync/dsau/cfengine_master/inputs/update.conf"
LAN2 = "10.2.0.10"
PP = "/var/opt/dsau/cfengine/ppkeys"

# What the stand-in does, by $MODE: copy the source to dest (builtins only), print the lab's
# line for a refused key, print cfengine-style chatter only, hang, or refuse its input (exit 1).
STAND_IN = r"""#!/bin/sh
echo "$*" >> "$LOG"
f=; prev=
for a in "$@"; do [ "$prev" = "-f" ] && f=$a; prev=$a; done
cat_file() { while IFS= read -r l; do printf '%s\n' "$l"; done < "$1"; }
cat_file "$f" >> "$LOG"
src=; dest=; server=
while read -r first rest; do
  case $first in /*) src=$first; for w in $rest; do case $w in dest=*) dest=${w#dest=} ;; server=*) server=${w#server=} ;; esac; done ;; esac
done < "$f"
case $MODE in
  copy) cat_file "$src" > "$dest"; echo "cfagent $server: ok" ;;
  refused) echo "cfagent $server: BAD: key could not be accepted on trust [remote $PP/root-10.1.0.21.pub missing]" ;;
  chatter) echo "cfengine:client1: Authentication dialogue with $server failed" ;;
  hang) exec sleep 30 ;;
  bad) echo "cf:cfengine:client1:$f:2: syntax error" >&2; exit 1 ;;
esac
exit 0
"""


def run(
    tmp_path: Path, mode: str, addresses: list[str], seconds: int = commands.CFAGENT_CHECK_SECONDS, shell: str = "/bin/sh"
) -> tuple[subprocess.CompletedProcess, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "cfagent").write_text(STAND_IN)
    (bin_dir / "cfagent").chmod(0o755)
    src = tmp_path / "master" / "update.conf"
    src.parent.mkdir(exist_ok=True)
    src.write_text("# update.conf\ncontrol:\n   actionsequence = ( copy )\n")
    log = tmp_path / "log"
    log.unlink(missing_ok=True)
    script = commands.cfagent_check(addresses, str(src), seconds=seconds).script
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path), "MODE": mode, "LOG": str(log), "PP": PP}
    assert os.access(shell, os.X_OK), f"{shell} is missing: run scripts/setup-system.sh"
    done = subprocess.run([shell], input=script, capture_output=True, text=True, env=env, timeout=60)
    return done, log.read_text() if log.exists() else ""


def test_cfagent_is_run_with_cfengine_2s_options_only_and_never_the_invented_one():
    script = commands.cfagent_check([PKG_IP, LAN2], SOURCE).script
    runs = [line for line in script.splitlines() if line.startswith("cfagent ")]
    assert runs == [f'cfagent -q -K -x -f "$d/check.{n}.cf" </dev/null 2>&1 &' for n in (1, 2)]
    letters = {m.group(1) for line in runs for m in re.finditer(r" -(\w)", line)}
    assert letters == {"q", "K", "x", "f"} and letters <= set(CFAGENT_LETTERS.replace(":", ""))
    assert "--policy-server" not in script and "trustkey=true" not in script and "-T" not in " ".join(runs)
    assert f"'   {SOURCE} dest='\"$d\"'/copied.1 server={PKG_IP} trustkey=false encrypt=true'" in script
    assert commands.cfagent_check(PKG_IP, SOURCE).display == f"cfagent -q -K -x -f <copy {SOURCE} from {PKG_IP}>"


@pytest.mark.parametrize(
    ("addresses", "source", "seconds"),
    [
        (["10.0.0.1; rm -rf /"], SOURCE, 30),
        ([], SOURCE, 30),
        ([PKG_IP], "update.conf", 30),  # not absolute
        ([PKG_IP], "/csync/../etc/shadow", 30),
        ([PKG_IP], "/csync/in puts/update.conf", 30),
        ([PKG_IP], "/csync/x'y", 30),
        ([PKG_IP], "/csync/$(reboot)", 30),
        ([PKG_IP], SOURCE, 0),
    ],
)
def test_unsafe_values_are_refused(addresses, source, seconds):
    with pytest.raises(commands.UnsafeValue):
        commands.cfagent_check(addresses, source, seconds=seconds)


def test_the_served_file_is_update_conf_of_the_masters_inputs():
    assert commands.served_file(site(members=2, clients=1)) == SOURCE
    assert commands.served_file(standalone()) == "/var/opt/dsau/cfengine_master/inputs/update.conf"


@pytest.mark.parametrize("shell", ["/bin/sh", "/usr/bin/posh"])  # dash, and the hpux userland's POSIX shell
def test_the_copy_arriving_is_ok_and_the_input_file_is_one_the_labs_cfagent_reads(tmp_path, shell):
    done, log = run(tmp_path, "copy", [PKG_IP, LAN2], shell=shell)
    assert done.returncode == 0, done.stderr
    assert re.findall(r"^csync-cfagent (\S+) (\w+) (\d+) (\d+)$", done.stdout, re.M) == [(PKG_IP, "copied", "0", "30"), (LAN2, "copied", "0", "30")]
    run_ = interpret("client1", "cfagent", [PKG_IP, LAN2], done.returncode, done.stdout.encode(), done.stderr.encode())
    assert run_.problems == () and {a: r.ok for a, r in run_.results.items()} == {PKG_IP: True, LAN2: True}
    # the input file: what cfengine 2 (and the lab's grammar) reads; the destination in the private directory
    lines = log.splitlines()
    assert lines[0].startswith("-q -K -x -f ") and lines[0].endswith("/check.1.cf")
    checkdir = os.path.dirname(lines[0].split()[-1])
    sequence, copies = read_input_file("\n".join(lines[1:6]) + "\n")
    assert sequence == ["copy"] and [(c.source, c.dest, c.server, c.trustkey) for c in copies] == [
        (str(tmp_path / "master" / "update.conf"), f"{checkdir}/copied.1", PKG_IP, False)
    ]
    assert os.path.dirname(checkdir) == str(tmp_path) and not os.path.exists(checkdir)  # removed on exit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "log", "master"]  # nothing else written


def test_a_refused_copy_is_a_failure_with_the_labs_cause(tmp_path):
    done, _ = run(tmp_path, "refused", [PKG_IP])
    run_ = interpret("client1", "cfagent", [PKG_IP], done.returncode, done.stdout.encode(), done.stderr.encode())
    result = run_.results[PKG_IP]
    assert run_.problems == () and not result.ok and (result.where, result.path, result.detail) == ("remote", f"{PP}/root-10.1.0.21.pub", "missing")


def test_cfengines_own_messages_are_the_detail_of_a_failure_that_names_no_file(tmp_path):
    done, _ = run(tmp_path, "chatter", [PKG_IP])
    run_ = interpret("client1", "cfagent", [PKG_IP], done.returncode, done.stdout.encode(), done.stderr.encode())
    assert run_.problems == ()
    assert run_.results[PKG_IP] == LiveResult(
        ok=False,
        line=f"cfagent {PKG_IP}: the copy did not arrive (cfengine:client1: Authentication dialogue with {PKG_IP} failed)",
        message="the copy did not arrive",
    )


def test_a_cfagent_that_refuses_its_input_is_a_problem_not_a_result(tmp_path):
    done, _ = run(tmp_path, "bad", [PKG_IP])
    run_ = interpret("client1", "cfagent", [PKG_IP], done.returncode, done.stdout.encode(), done.stderr.encode())
    assert run_.results == {} and len(run_.problems) == 1
    assert run_.problems[0].startswith(f"cfagent against {PKG_IP} exited 1: cf:cfengine:client1:") and run_.problems[0].endswith(":2: syntax error")


def test_a_hanging_cfagent_is_stopped_by_the_watchdog(tmp_path):
    done, _ = run(tmp_path, "hang", [PKG_IP], seconds=2)
    assert f"csync-cfagent {PKG_IP} expired 143 2" in done.stdout.splitlines()
    result = interpret("client1", "cfagent", [PKG_IP], done.returncode, done.stdout.encode(), b"").results[PKG_IP]
    assert (result.ok, result.where, result.detail) == (False, "unreachable", "no answer within 2 s (stopped by csync)")
    assert not list(tmp_path.glob("csync-cfagent.*"))


def test_verdicts_csync_cannot_place_are_problems():
    text = (
        f"cfagent {LAN2}: ok\n"  # another address's line in this address's output
        f"csync-cfagent {PKG_IP} copied 0 30\n"
        "csync-cfagent 10.9.9.9 copied 0 30\n"
        f"cfagent {PKG_IP}: BAD: keys did not match [remote {PP}/root-1.pub mismatch]\n"
        f"csync-cfagent {PKG_IP} copied 0 30\n"
        "trailing words\n"
    )
    results, problems = parse_cfagent_output(text, [PKG_IP, LAN2])
    assert results == {}
    assert problems == [
        f"a cfagent line for {LAN2} in the check against {PKG_IP}: 'cfagent {LAN2}: ok'",
        "a verdict for 10.9.9.9, which was not asked for: 'csync-cfagent 10.9.9.9 copied 0 30'",
        f"two verdicts for {PKG_IP}; trusting none",
        "cfagent output after the last verdict: 'trailing words'",
        f"no cfagent verdict for {LAN2}",
    ]
    said_failed = parse_cfagent_output(
        f"cfagent {PKG_IP}: BAD: keys did not match [remote {PP}/root-1.pub mismatch]\ncsync-cfagent {PKG_IP} copied 0 30\n", [PKG_IP]
    )
    assert said_failed[0] == {} and said_failed[1][0].startswith(f"cfagent against {PKG_IP}: the copy arrived, but")
    lied = parse_cfagent_output(f"cfagent {PKG_IP}: ok\ncsync-cfagent {PKG_IP} absent 0 30\n", [PKG_IP])[0][PKG_IP]
    assert not lied.ok and lied.where == "" and lied.message == "cfagent said ok, but the copy did not arrive"


def test_a_failure_that_names_no_file_agrees_with_a_predicted_failure_only():
    state = site(members=2, clients=2)
    facts = converged(state)
    facts["client2"] = with_keys(facts["client2"], drop=(PKG_IP,))
    report = trust_report(state, facts)
    assert report.cfagent["client2"].ok is False and report.cfagent["client1"].ok
    unnamed = LiveResult(ok=False, line=f"cfagent {PKG_IP}: the copy did not arrive", message="the copy did not arrive")
    assert compare(report, live_from(report, {(None, "client2"): unnamed})) == []
    [d] = compare(report, live_from(report, {(None, "client1"): unnamed}))
    assert d.where == "cfagent on client1" and d.why.startswith("predicted ok, but the live check failed")
    # a file the master refused to serve is explained by no key: a fact csync does not see
    denied = LiveResult(ok=False, line="x", message="BAD", where="remote", path=SOURCE, detail="denied")
    [d] = compare(report, live_from(report, {(None, "client2"): denied}))
    assert "both fail, but the live failure has no predicted cause" in d.why
