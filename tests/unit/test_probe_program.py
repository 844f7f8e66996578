"""csync's probe program (the plan identity's forced command), run by a real /bin/sh with
SSH_ORIGINAL_COMMAND as sshd sets it; its request, its install-probe action, its
authorized_keys line. Crossing sshd is tests/lab/test_plan_identity.py's subject."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from reconciler.desired.model import DesiredState, Platform
from reconciler.domain import dsau
from reconciler.driver import commands, probeprogram
from reconciler.driver.transport import Session, TransportError
from reconciler.observe.facts import ProbeProgram, parse_probe, parse_program
from reconciler.plan.planner import make_plan
from tests.shell import run_sh
from tests.unit import sitefacts, test_probe_script

cfdir = test_probe_script.cfdir  # the fixture: a planted key store, as the probe script's tests use

HPUX = Platform()  # the defaults
DIGEST = probeprogram.program_digest(HPUX)


def run_program(tmp_path: Path, request: str | None, platform: Platform = HPUX) -> subprocess.CompletedProcess:
    program = tmp_path / "csync-probe"
    if not program.exists():
        program.write_text(probeprogram.program_text(platform))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    if request is not None:
        env["SSH_ORIGINAL_COMMAND"] = request
    return run_sh(["/bin/sh", str(program)], env=env, timeout=30, hold_stdin=True)


# --- the same facts, whichever way the probe runs ----------------------------------------------
TABLE_SAMPLE = Path(__file__).parent.parent / "lab" / "data" / "cmviewcl" / "fresh-table-v.txt"


def old_serviceguard(directory: Path) -> Path:
    """A cmviewcl of a release before A.11.18 in ``directory``: -f refused, the table format
    otherwise (the recorded sample); each call's arguments logged to calls.log."""
    directory.mkdir(parents=True)
    table = "".join(TABLE_SAMPLE.read_text().splitlines(keepends=True)[1:])
    (directory / "cmviewcl").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {directory}/calls.log\n'
        'case " $* " in *" -f "*) echo "cmviewcl: illegal option -- f" >&2; exit 2 ;; esac\n'
        f"cat <<'EOF'\n{table}EOF\n"
    )
    (directory / "cmviewcl").chmod(0o755)
    return directory


@pytest.mark.parametrize("role, platform", [("client", None), ("member", None), ("master", None), ("member", "auto"), ("member", "table")])
def test_the_program_answers_exactly_what_the_probe_script_answers(tmp_path, cfdir, role, platform):
    home = tmp_path / "home" / ".ssh"
    home.mkdir(parents=True)
    (home / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3FLT9NtP4yjtk5i9877+ZVEGKRpa7ZqQB++pR2Sakg root@x\n")
    (home / "authorized_keys").write_text('restrict,command="x" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3FLT9NtP4yjtk5i9877+ZVEGKRpa7ZqQB++pR2Sakg\n')
    (tmp_path / "cf" / "ppkeys" / "root-10.0.0.2.pub").write_text((cfdir / "root-10.0.0.1.pub").read_text())
    mount = tmp_path / "pkg"
    (mount / dsau.PACKAGE_MASTER_INPUTS).mkdir(parents=True)
    (mount / dsau.PACKAGE_MASTER_INPUTS / "cf.main").write_text("x\n")
    (tmp_path / "master" / "inputs").mkdir(parents=True)
    (tmp_path / "master" / "inputs" / "cf.main").write_text("y\n")
    pkgfiles = tmp_path / "sgconf" / "csync"
    pkgfiles.mkdir(parents=True)
    (pkgfiles / "csync.conf").write_text("package_name csync\n")
    sg = HPUX if platform is None else Platform(serviceguard_path=str(old_serviceguard(tmp_path / "sgbin")), cmviewcl_format=platform)
    cf = str(tmp_path / "cf")
    request = probeprogram.request(
        role, cfengine_dir=cf, mount=str(mount), master_inputs=str(tmp_path / "master" / "inputs"), package_files_dir=str(pkgfiles), platform=sg
    )
    script = commands.probe_script(
        role,
        cfengine_dir=cf,
        mount=str(mount) if role == "member" else "",
        master_inputs=dsau.PACKAGE_MASTER_INPUTS if role == "member" else str(tmp_path / "master" / "inputs"),
        state_dir=dsau.PACKAGE_CSYNC_STATE if role == "member" else dsau.STANDALONE_CSYNC_STATE,
        package_files_dir=str(pkgfiles),
        serviceguard_path=sg.serviceguard_path,
        cmviewcl_format=sg.cmviewcl_format,
    ).script
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    stdin = run_sh(["/bin/sh", "-s"], script, env=env, timeout=30)
    forced = run_program(tmp_path, request.line, sg)
    assert forced.returncode == stdin.returncode == 0, forced.stderr
    assert forced.stdout == stdin.stdout
    facts = parse_probe("h", "10.0.0.9", role, forced.stdout, 0)
    assert facts.reachable and len(facts.keys) == 3 and facts.ssh_public_keys and facts.ssh_authorized
    assert facts.probe_program == ProbeProgram(kind="missing")  # not installed at dsau.PROBE_PROGRAM on this machine
    if role == "member":
        assert facts.package_files == 1  # read in paths.package_files_dir, wherever that is
    if platform is not None:
        # the site's Serviceguard directory was searched; on "table" -f line is never tried
        assert facts.cluster_format == "table" and facts.cluster is not None and facts.cluster.packages["csync"].running
        calls = (tmp_path / "sgbin" / "calls.log").read_text().splitlines()
        assert calls == (["-v", "-v"] if platform == "table" else ["-v -f line", "-v", "-v -f line", "-v"])
        assert json.loads(forced.stdout)["cmviewcl"]["line_rc"] == (None if platform == "table" else 2)


def test_the_platform_is_part_of_the_program_so_a_program_of_another_platform_is_another_program(tmp_path):
    linux = Platform(serviceguard_path="/usr/local/cmcluster/bin")
    assert probeprogram.program_digest(linux) != DIGEST and "SGPATH=/usr/local/cmcluster/bin" in probeprogram.program_text(linux)
    assert "SGFORMAT=table" in probeprogram.program_text(Platform(cmviewcl_format="table"))
    # a request for the HP-UX program, to a program installed for Linux: its version line only
    done = run_program(tmp_path, f"csync-probe {DIGEST} role=client cf=/x", platform=linux)
    assert done.returncode == probeprogram.EXIT_OTHER_PROGRAM
    found = parse_program(json.loads(done.stdout)["program"])
    assert found == ProbeProgram(kind="file", version=probeprogram.PROGRAM_VERSION, digest=probeprogram.program_digest(linux))
    # ... and a plan for a site of that platform replaces the HP-UX program
    state = with_plan_identity(sitefacts.site()).model_copy(update={"platform": linux})
    facts = {n: f.model_copy(update={"probe_program": CURRENT}) for n, f in sitefacts.converged(state).items()}
    plan = make_plan(state, facts)
    assert {a.kind for a in plan.actions} == {"install-probe"} and len(plan.actions) == len(state.all_hosts)
    assert all(a.params["digest"] == probeprogram.program_digest(linux) for a in plan.actions)


# --- anything else is refused, and nothing runs ------------------------------------------------
@pytest.mark.parametrize(
    "request_line, why",
    [
        (None, "no request"),
        ("", "no request"),
        ("id", "not a csync probe request"),
        ("/bin/sh -s", "not a csync probe request"),
        ("csync-probe", "not a csync probe request"),
        (f"csync-probe {DIGEST} role=client cf=/tmp/../etc", "not a normalised path"),
        (f"csync-probe {DIGEST} role=client cf=tmp", "not an absolute path"),
        (f"csync-probe {DIGEST} role=client cf=/", "not a normalised path"),
        (f"csync-probe {DIGEST} role=client cf=/x;id", "unexpected characters"),
        (f"csync-probe {DIGEST} role=client cf=$(id)", "unexpected characters"),
        (f"csync-probe {DIGEST} role=client cf=`id`", "unexpected characters"),
        (f"csync-probe {DIGEST} role=client cf=/x\nid", "unexpected characters"),
        (f"csync-probe {DIGEST} role=client cf=/x *", "unexpected characters"),
        (f"csync-probe {DIGEST} role=client cf=/x cf=/y", "cf given twice"),
        (f"csync-probe {DIGEST} role=client cf=/x mount=/y", "role client takes cf only"),
        (f"csync-probe {DIGEST} role=member cf=/x", "role member takes cf, mount and pkgfiles"),
        (f"csync-probe {DIGEST} role=member cf=/x mount=/y", "role member takes cf, mount and pkgfiles"),
        (f"csync-probe {DIGEST} role=client cf=/x pkgfiles=/y", "role client takes cf only"),
        (f"csync-probe {DIGEST} role=member cf=/x mount=/y pkgfiles=/etc/../z", "not a normalised path"),
        (f"csync-probe {DIGEST} role=master cf=/x minputs=/etc", "not a directory named inputs"),
        (f"csync-probe {DIGEST} role=root cf=/x", "role: not member"),
        (f"csync-probe {DIGEST} cf=/x", "no role"),
        (f"csync-probe {DIGEST} role=client cf=/x path=/y", "unknown parameter path"),
        (f"csync-probe {DIGEST} role=client cf", "not key=value"),
        ("csync-probe md5:x role=client cf=/x", "no program digest"),
        (f"csync-probe {DIGEST} role=client cf=/{'a' * 300}", "too long"),
        (f"csync-probe {DIGEST} role=client cf=/x " + "x=y " * 300, "request too long"),
    ],
)
def test_a_request_that_is_not_exactly_a_probe_request_is_refused(tmp_path, request_line, why):
    done = run_program(tmp_path, request_line)
    assert done.returncode == probeprogram.EXIT_REFUSED
    assert done.stdout == b""
    assert why in done.stderr.decode(), done.stderr


def test_a_request_for_another_program_gets_only_this_programs_version(tmp_path):
    done = run_program(tmp_path, "csync-probe sha256:" + "0" * 64 + " role=client cf=/x")
    assert done.returncode == probeprogram.EXIT_OTHER_PROGRAM
    found = parse_program(json.loads(done.stdout)["program"])
    assert found == ProbeProgram(kind="file", version=probeprogram.PROGRAM_VERSION, digest=DIGEST)


def test_the_version_line_identifies_the_program_and_the_probe_reports_it(tmp_path):
    text = probeprogram.program_text(HPUX)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh" and probeprogram.parse_version_line(lines[1]) == (probeprogram.PROGRAM_VERSION, DIGEST)
    assert DIGEST == "sha256:" + __import__("hashlib").sha256(text.split("\n", 2)[2].encode()).hexdigest()
    assert probeprogram.parse_version_line("CSYNC_PROBE_PROGRAM=v1:sha256:abc") is None
    assert parse_program({"kind": "file", "header": ["CSYNC_PROBE_PROGRAM=v7:sha256:" + "a" * 64]}) == ProbeProgram(
        kind="file", version=7, digest="sha256:" + "a" * 64
    )
    assert parse_program({"kind": "file", "header": None}) == ProbeProgram(kind="file")
    assert parse_program(None) is None


# --- the request csync builds ------------------------------------------------------------------
def test_the_request_carries_only_validated_desired_state_values():
    state = sitefacts.site()
    r = probeprogram.probe_request(state, "member")
    assert r.line == f"csync-probe {DIGEST} role=member cf=/var/opt/dsau/cfengine mount=/csync pkgfiles=/etc/cmcluster/csync"
    assert probeprogram.probe_request(state, "client").line == f"csync-probe {DIGEST} role=client cf=/var/opt/dsau/cfengine"
    master = probeprogram.probe_request(sitefacts.standalone(), "master").line
    assert master.endswith(f"minputs={dsau.STANDALONE_MASTER_INPUTS}")
    with pytest.raises(commands.UnsafeValue, match="directory named inputs"):
        probeprogram.request("master", cfengine_dir="/x", mount="", master_inputs="/srv/policy", package_files_dir="", platform=HPUX)
    for bad in ("/x/../y", "/x/./y", "relative", "/x y", "/" + "a" * 300):
        with pytest.raises(commands.UnsafeValue):
            probeprogram.request("client", cfengine_dir=bad, mount="", master_inputs="", package_files_dir="", platform=HPUX)
        with pytest.raises(commands.UnsafeValue):
            probeprogram.request("member", cfengine_dir="/x", mount="/y", master_inputs="", package_files_dir=bad, platform=HPUX)


def test_a_plan_identity_session_sends_no_script():
    session = Session(host=sitefacts.site().clients[0], connection=None, identity="plan")  # type: ignore[arg-type]
    with pytest.raises(TransportError, match="runs csync's probe only"):
        session.run_script(commands.remove_key(sitefacts.site(), "root-10.1.0.21.pub"), timeout=5)


# --- installing it, and its authorized_keys line -------------------------------------------------
def test_the_install_script_writes_the_program_atomically_and_refuses_symlinks():
    script = probeprogram.install(HPUX).script
    assert probeprogram.program_text(HPUX) in script
    assert script.index('mv -f "$tmp" "$f"') > script.index("chmod 755")
    assert "is a symbolic link" in script and "-user 0 ! -perm -020 ! -perm -002" in script
    assert subprocess.run(["/bin/sh", "-n"], input=script.encode()).returncode == 0


def test_the_authorized_keys_line_forces_the_program_and_restricts_everything_else():
    key = probeprogram.parse_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3FLT9NtP4yjtk5i9877+ZVEGKRpa7ZqQB++pR2Sakg ci@runner")
    assert probeprogram.authorized_keys_line(key) == (
        f'restrict,command="{dsau.PROBE_PROGRAM}" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3FLT9NtP4yjtk5i9877+ZVEGKRpa7ZqQB++pR2Sakg ci@runner'
    )
    hpux = probeprogram.authorized_keys_line(key, from_patterns=("10.0.0.5", "10.1.0.0/24"), syntax="hpux")
    assert hpux.startswith(
        f'no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,from="10.0.0.5,10.1.0.0/24",command="{dsau.PROBE_PROGRAM}" ssh-ed25519 '
    )
    for bad in ('10.0.0.5"', "a,b", "x y"):
        with pytest.raises(commands.UnsafeValue):
            probeprogram.authorized_keys_line(key, from_patterns=(bad,))
    for bad in ("ssh-ed25519 !!!", "ssh-dss AAAA", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIE3FLT9NtP4yjtk5i9877+ZVEGKRpa7ZqQB++pR2Sakg", ""):
        with pytest.raises(commands.UnsafeValue):
            probeprogram.parse_public_key(bad)


def test_the_authorize_script_replaces_the_keys_line_and_keeps_the_others(tmp_path):
    key = probeprogram.parse_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3FLT9NtP4yjtk5i9877+ZVEGKRpa7ZqQB++pR2Sakg")
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "authorized_keys").write_text(f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOTHER root@admin\nno-pty ssh-ed25519 {key.blob} old\n")
    line = probeprogram.authorized_keys_line(key)
    script = probeprogram.authorize(line, key).script
    for _ in range(2):
        done = subprocess.run(["/bin/sh", "-s"], input=script.encode(), env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=30)
        assert done.returncode == 0
    assert (ssh / "authorized_keys").read_text() == f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOTHER root@admin\n{line}\n"
    assert (ssh / "authorized_keys").stat().st_mode & 0o777 == 0o600


# --- the plan: install-probe where the plan identity needs it -------------------------------------
def with_plan_identity(state: DesiredState) -> DesiredState:
    return state.model_copy(update={"access": state.access.model_copy(update={"plan_identity_file": "~/.ssh/plan"})})


CURRENT = ProbeProgram(kind="file", version=probeprogram.PROGRAM_VERSION, digest=DIGEST)


def test_install_probe_is_planned_where_the_program_is_missing_or_older_never_where_it_is_newer():
    state = with_plan_identity(sitefacts.site())
    facts = {n: f.model_copy(update={"probe_program": CURRENT}) for n, f in sitefacts.converged(state).items()}
    assert make_plan(state, facts).clean
    facts["client1"] = facts["client1"].model_copy(update={"probe_program": ProbeProgram(kind="missing")})
    facts["client2"] = facts["client2"].model_copy(update={"probe_program": ProbeProgram(kind="file", version=0, digest="sha256:" + "0" * 64)})
    facts["client3"] = facts["client3"].model_copy(update={"probe_program": ProbeProgram(kind="file", version=99, digest="sha256:" + "9" * 64)})
    facts["node2"] = facts["node2"].model_copy(update={"probe_program": ProbeProgram(kind="dir")})
    plan = make_plan(state, facts)
    assert [(a.kind, a.host, a.wave) for a in plan.actions] == [("install-probe", "client1", 1), ("install-probe", "client2", 1)]
    assert "is missing" in plan.actions[0].reason and "version 0" in plan.actions[1].reason
    assert plan.actions[1].precondition == {"program": {"kind": "file", "version": 0, "digest": "sha256:" + "0" * 64}}
    assert plan.actions[0].command.startswith(f"install {dsau.PROBE_PROGRAM} (csync probe program v{probeprogram.PROGRAM_VERSION}")
    assert [f.host for f in plan.notices if "newer" in f.message] == ["client3"]
    assert [f.host for f in plan.blocked if "a directory" in f.message] == ["node2"]
    assert "2 probe program(s) to install" in plan.summary()
    # without a plan identity, csync leaves the program alone
    assert not make_plan(sitefacts.site(), facts).actions


def test_a_host_the_plan_identity_could_not_probe_gets_its_program_installed():
    state = with_plan_identity(sitefacts.site())
    facts = {n: f.model_copy(update={"probe_program": CURRENT}) for n, f in sitefacts.converged(state).items()}
    facts["client1"] = facts["client1"].model_copy(
        update={
            "reachable": False,
            "reason": "its probe program is version 0",
            "reason_kind": "probe-program",
            "probe_program": ProbeProgram(kind="file", version=0, digest="sha256:" + "0" * 64),
        }
    )
    plan = make_plan(state, facts)
    assert [(a.kind, a.host) for a in plan.actions] == [("install-probe", "client1")]
    assert any(f.host == "client1" and "version 0" in f.message for f in plan.unknown)


def test_the_plan_identity_is_a_desired_state_field_resolved_per_host(tmp_path):
    state = DesiredState.model_validate(
        {
            **sitefacts.site().model_dump(mode="json", exclude={"access"}),
            "access": {"plan_identity_file": "~/.ssh/plan", "hosts": {"client1": {"plan_identity_file": "/keys/c1"}}},
        }
    )
    assert state.access.plan_identity
    assert state.access.for_host("client1").plan_identity_file == "/keys/c1"
    assert state.access.for_host("client2").expanded().plan_identity_file == os.path.expanduser("~/.ssh/plan")
    assert not sitefacts.site().access.plan_identity
