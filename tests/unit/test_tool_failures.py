"""A failure is never an empty answer (issue 17): every script csync sends is run here, on
planted files, by a real /bin/sh, once as it is and once with each program it may call made
to fail in turn (a stand-in first in PATH that prints a message and exits 2).

For every script and every program, the parsed outcome is either exactly the outcome of the
run without a failure (the script did not need that program on this path), or a failure that
csync reports, carrying the program's message: an unknown host, a lock error, an action or a
live check that did not run, an import that stops. Never another answer that looks fine.
The test also proves it is not vacuous: the programs each script really calls are recorded,
and the probe, the lock, the inventory and the actions are seen to call the tools they rely on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.domain.preview import PreviewRequest
from reconciler.driver import batch, commands, discovery, preview, sitestate
from reconciler.driver.transport import CommandResult
from reconciler.errors import LockError
from reconciler.observe.facts import parse_probe
from reconciler.trust.live import interpret
from tests.keys import keypair, public
from tests.shell import run_sh
from tests.unit import sitefacts

# Every external program a script of csync's may call (shell builtins cannot be replaced).
TOOLS = (
    "ls",
    "find",
    "cksum",
    "awk",
    "sed",
    "grep",
    "cut",
    "sort",
    "wc",
    "uname",
    "date",
    "mkdir",
    "cp",
    "mv",
    "chmod",
    "rm",
    "cat",
    "sleep",
    "tr",
    "head",
    "cmviewcl",
    "cmrunpkg",
    "cmmodpkg",
    "cmhaltpkg",
    "cmversion",
    "cfrun",
    "cfagent",
)
MESSAGE = "simulated failure"
LOCK_ID = "0b4f2c1e-8a3d-4c5e-9f6a-1b2c3d4e5f60"

LINE_SAMPLE = Path(__file__).parent.parent / "lab" / "data" / "cmviewcl" / "fresh-line-v.txt"


@dataclass
class Tree:
    root: Path
    state: DesiredState
    normal: Path  # stand-ins that work (Serviceguard, cfengine, DSAU tools)
    log: Path


def _write_exec(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    root = tmp_path
    cf = root / "cf"
    (cf / "ppkeys").mkdir(parents=True)
    (cf / "inputs").mkdir()
    (cf / "inputs" / "cf.motd").write_text("motd\n")
    priv, pub = keypair("own")
    (cf / "ppkeys" / "localhost.priv").write_text(priv)
    (cf / "ppkeys" / "localhost.pub").write_text(pub)
    (cf / "ppkeys" / "root-10.1.0.1.pub").write_text(public("cluster"))
    (cf / "ppkeys" / "root-10.1.0.21.pub").write_text(public("client1"))
    mount = root / "csync"
    (mount / "dsau" / "cfengine_master" / "inputs").mkdir(parents=True)
    (mount / "dsau" / "cfengine_master" / "ppkeys").mkdir()
    (mount / "dsau" / "cfengine_master" / "inputs" / "cf.motd").write_text("motd\n")
    (mount / "dsau" / "cfengine_master" / "inputs" / "update.conf").write_text("control:\n   actionsequence = ( copy )\n")
    # a subdirectory: the member's probe lists the master inputs with find (a flat directory
    # is listed by the shell's glob: the client's)
    (mount / "dsau" / "cfengine_master" / "inputs" / "modules").mkdir()
    (mount / "dsau" / "cfengine_master" / "inputs" / "modules" / "module.cf").write_text("# a module\n")
    (mount / "dsau" / "cfengine_master" / "ppkeys" / "localhost.pub").write_text(public("cluster"))
    (mount / "dsau" / "csync").mkdir()
    (mount / "dsau" / "csync" / "inventory").write_text("10.1.0.21\n")
    (root / "pkgfiles").mkdir()
    (root / "pkgfiles" / "csync.conf").write_text("package_name csync\nip_address 10.1.0.10\nfs_directory /csync\n")
    (root / "home" / ".ssh").mkdir(parents=True)
    (root / "home" / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1 admin\n")
    (root / "home" / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB2 root@node1\n")
    (root / "local").mkdir()
    normal = root / "normal"
    normal.mkdir()
    sample = "".join(f"printf '%s\\n' '{line}'\n" for line in LINE_SAMPLE.read_text().splitlines()[1:])
    _write_exec(normal / "cmviewcl", f"#!/bin/sh\n{sample}exit 0\n")
    for tool in ("cmrunpkg", "cmmodpkg", "cmhaltpkg", "dispatcher", "wizard"):
        _write_exec(normal / tool, "#!/bin/sh\necho done\nexit 0\n")
    _write_exec(normal / "cmversion", "#!/bin/sh\necho A.11.20.00\n")
    # the rotation's preflight asks root ssh of every system: a stand-in that answers, so
    # nothing here ever opens a connection (the addresses are the test's, not the lab's)
    _write_exec(normal / "ssh", "#!/bin/sh\nexit 0\n")
    # cfrun: every host of its hosts file (-f FILE) is ok; cfagent: the copy of its input file
    # (-q -K -x -f FILE: SOURCE dest=DEST) made. Builtins only.
    _write_exec(normal / "cfrun", '#!/bin/sh\nwhile read -r h; do case $h in maxchild*) ;; *) echo "cfrun $h: ok" ;; esac; done < "$2"\n')
    _write_exec(
        normal / "cfagent",
        "#!/bin/sh\n"
        'while read -r src dest rest; do case $src in /*) while IFS= read -r l; do printf "%s\\n" "$l"; done < "$src" > "${dest#dest=}" ;; esac; done < "$5"\n'
        'echo "cfagent 10.1.0.10: ok"\n',
    )
    state = sitefacts.site(members=1, clients=2)
    state = DesiredState.model_validate(
        {
            **state.model_dump(mode="json"),
            "master": {**state.model_dump(mode="json")["master"], "package": {"name": "csync", "address": sitefacts.PKG_IP, "mount": str(mount)}},
            "paths": {
                "cfengine_dir": str(cf),
                "standalone_master_inputs": str(root / "master-inputs"),
                "package_files_dir": str(root / "pkgfiles"),
                "dispatcher": str(normal / "dispatcher"),
                "wizard": str(normal / "wizard"),
            },
        }
    )
    return Tree(root, state, normal, root / "calls.log")


def _run(t: Tree, script: str, failing: str | None) -> CommandResult:
    fake = t.root / "failing"
    if fake.exists():
        for f in fake.iterdir():
            f.unlink()
    else:
        fake.mkdir()
    if failing:
        _write_exec(fake / failing, f'#!/bin/sh\necho "$0" >> {t.log}\necho "{failing}: {MESSAGE}" >&2\nexit 2\n')
    path = f"{fake}:{t.normal}:/usr/bin:/bin"
    env = {"PATH": path, "HOME": str(t.root / "home"), "TMPDIR": str(t.root)}
    # the probe and discovery put their Serviceguard search path first: the stand-ins too
    script = script.replace(f"SGPATH={dsau.SERVICEGUARD_PATH}", f"SGPATH={fake}:{t.normal}")
    done = run_sh(["/bin/sh", "-s"], script, env=env, timeout=60, cwd=t.root)
    return CommandResult(done.returncode, done.stdout, done.stderr, 0.0)


# Each script: (build the script, the outcome of its result). An outcome is ("fail", text)
# when csync reports a failure, else ("ok", what csync reads from it).
Outcome = tuple[str, object]


def probe_outcome(role: str) -> Callable[[CommandResult], Outcome]:
    def outcome(r: CommandResult) -> Outcome:
        facts = parse_probe("h", "10.1.0.1", role, r.stdout, r.exit_code, r.stderr)  # type: ignore[arg-type]
        if not facts.reachable:
            return "fail", facts.reason
        if facts.cluster_error:
            return "fail", facts.cluster_error
        return "ok", facts.model_dump()

    return outcome


def exit_outcome(r: CommandResult) -> Outcome:
    return ("ok", r.stdout) if r.exit_code == 0 else ("fail", r.stderr.decode())


def lock_outcome(r: CommandResult) -> Outcome:
    try:
        reply = sitestate.parse_reply("node1", r, "lock")
    except LockError as e:
        return "fail", str(e)
    return "ok", (sorted((k, tuple(v)) for k, v in reply.tags.items()), [(x.path, x.checksum, x.id) for x in reply.records])


def inventory_outcome(r: CommandResult) -> Outcome:
    n = sitestate.parse_inventory_reply(r)
    return ("ok", n) if r.exit_code == 0 and n is not None else ("fail", r.stderr.decode())


def discovery_outcome(r: CommandResult) -> Outcome:
    d = discovery.parse_discovery(r.stdout.decode())
    if not d.complete or d.failures or d.cmviewcl_rc != 0:
        return "fail", "; ".join(d.failures) + r.stderr.decode() + "\n".join(d.cmviewcl)
    # where cfagent and cfrun are is looked up (command -v, a builtin), never run: a stand-in
    # put first in PATH moves them, which is no answer of the tool's
    d.where = {t: w for t, w in d.where.items() if t not in ("cfagent", "cfrun")}
    return "ok", d


def live_outcome(tool: str, targets: list[str]) -> Callable[[CommandResult], Outcome]:
    def outcome(r: CommandResult) -> Outcome:
        run = interpret("h", tool, targets, r.exit_code, r.stdout, r.stderr)
        if run.error or run.problems:
            return "fail", f"{run.error} {run.problems}"
        return "ok", {a: x.ok for a, x in run.results.items()}

    return outcome


def preview_outcome(nonce: str, count: int) -> Callable[[CommandResult], Outcome]:
    def outcome(r: CommandResult) -> Outcome:
        runs = preview.parse_preview(r, nonce, count)
        if any(x.error or x.release_exit != 0 or not x.ran or x.exit_code != 0 for x in runs):
            return "fail", " ".join(f"{x.error} {x.release} {' '.join(x.stderr)}" for x in runs)
        return "ok", [(x.release, x.stdout) for x in runs]

    return outcome


def scripts(t: Tree) -> dict[str, tuple[str, Callable[[CommandResult], Outcome]]]:
    s = t.state
    local = str(t.root / "local")
    pem = public("new")
    out: dict[str, tuple[str, Callable[[CommandResult], Outcome]]] = {}
    for role in ("client", "member"):
        out[f"probe {role}"] = (
            commands.probe(s, role).script.replace(f"PKGFILES={dsau.PACKAGE_FILES_DIR}", f"PKGFILES={t.root / 'pkgfiles'}"),
            probe_outcome(role),
        )
    out["probe master"] = (
        commands.probe_script(
            "master",
            cfengine_dir=s.paths.cfengine_dir,
            mount="",
            master_inputs=str(t.root / "csync" / "dsau" / "cfengine_master" / "inputs"),
            state_dir=str(t.root / "csync" / "dsau" / "csync"),
            package_files_dir=s.paths.package_files_dir,
            serviceguard_path=s.platform.serviceguard_path,
            cmviewcl_format=s.platform.cmviewcl_format,
        ).script,
        probe_outcome("master"),
    )
    actions = {
        "copy_key": commands.copy_key(s, "root-10.1.0.1.pub", "root-10.1.0.2.pub"),
        "install_key": commands.install_key(s, "root-10.1.0.3.pub", pem, "SHA256:x"),
        "remove_key": commands.remove_key(s, "root-10.1.0.21.pub"),
        "start_package": commands.start_package("csync", "node1", serviceguard_path=s.platform.serviceguard_path),
        "halt_package": commands.halt_package("csync", serviceguard_path=s.platform.serviceguard_path),
        "enable_switching": commands.enable_switching("csync", serviceguard_path=s.platform.serviceguard_path),
        "dispatch_member": commands.dispatch_member(s, "node1"),
        "regenerate_keys": commands.regenerate_keys(s, ["10.1.0.21"], ["10.1.0.2"]),
    }
    for name, c in actions.items():
        out[f"action {name}"] = (c.script, exit_outcome)
    nonce = "0123456789abcdef0123"
    both = batch.batch([actions["copy_key"].script, actions["remove_key"].script], nonce, timeout=30)

    def batch_outcome(r: CommandResult) -> Outcome:
        parts = batch.parse_batch(r, nonce, 2)
        if any(rc != 0 for rc, _o, _e in parts) or batch.batch_timeout(r, nonce):
            return "fail", " ".join(e for _rc, _o, e in parts) + r.stderr.decode()
        return "ok", [o for _rc, o, _e in parts]

    out["batch"] = (both.script, batch_outcome)
    previews = [
        PreviewRequest("start-package:package.csync", "start", "csync", "node1", "node1"),
        PreviewRequest("halt-package:package.csync", "halt", "csync", "node1", "node1"),
    ]
    out["preview"] = (
        preview.preview_script(previews, nonce, timeout=30, serviceguard_path=s.platform.serviceguard_path).script,
        preview_outcome(nonce, len(previews)),
    )
    record = f'{{"id":"{LOCK_ID}","user":"t"'
    out["lock acquire"] = (sitestate.lock_acquire(s, LOCK_ID, record, 60, [], local_dir=local).script, lock_outcome)
    out["lock renew"] = (sitestate.lock_renew(s, LOCK_ID, record, 60, local_dir=local).script, lock_outcome)
    out["lock show"] = (sitestate.lock_show(s, local_dir=local).script, lock_outcome)
    out["lock release"] = (sitestate.lock_release(s, LOCK_ID, local_dir=local).script, lock_outcome)
    out["lock remove"] = (sitestate.lock_remove(s, ["1:2"], local_dir=local).script, lock_outcome)
    out["inventory"] = (sitestate.inventory_update(s, [("node1", "root-10.1.0.21.pub"), ("node1", "root-10.1.0.22.pub")]).script, inventory_outcome)
    out["discovery"] = (
        discovery.discover(package_files_dir=str(t.root / "pkgfiles"), standalone_master_inputs=str(t.root / "master-inputs"), platform=s.platform).script,
        discovery_outcome,
    )
    clients = ["10.1.0.21", "10.1.0.22"]
    out["cfrun check"] = (commands.cfrun_check(clients, cfengine_dir=s.paths.cfengine_dir).script, live_outcome("cfrun", clients))
    out["cfagent check"] = (commands.cfagent_check(sitefacts.PKG_IP, commands.served_file(s)).script, live_outcome("cfagent", [sitefacts.PKG_IP]))
    return out


def _lock_present(t: Tree) -> None:
    """A lock file of ours where renew/show/release find one (acquire made it; reset per run)."""
    d = t.root / "csync" / "dsau" / "csync"
    (d / "lock.json").write_text(f'{{"id":"{LOCK_ID}","user":"t","expires_epoch":1}}\n')


def _reset(t: Tree, name: str) -> None:
    cf = Path(t.state.paths.cfengine_dir) / "ppkeys"
    (cf / "root-10.1.0.21.pub").write_text(public("client1"))
    for extra in ("root-10.1.0.2.pub", "root-10.1.0.3.pub"):
        (cf / extra).unlink(missing_ok=True)
    (t.root / "home" / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1 admin\n")
    (t.root / "csync" / "dsau" / "csync" / "inventory").write_text("10.1.0.21\n")
    lock = t.root / "csync" / "dsau" / "csync" / "lock.json"
    lock.unlink(missing_ok=True)
    for mutex in (t.root / "local" / ".lock.mutex",):  # a run whose rm failed leaves it (then it is stale after 30 s)
        if mutex.exists():
            for f in mutex.iterdir():
                f.unlink()
            mutex.rmdir()
    if name.startswith("lock") and name != "lock acquire":
        _lock_present(t)


def test_every_script_reports_a_failing_program_and_never_answers_otherwise(tree):
    calls: dict[str, set[str]] = {}
    wrong: list[str] = []
    for name, (script, outcome) in scripts(tree).items():
        _reset(tree, name)
        baseline = outcome(_run(tree, script, None))
        assert baseline[0] == "ok", f"{name} fails without any failure: {baseline[1]}"
        if name == "cfagent check":
            assert baseline[1] == {sitefacts.PKG_IP: True}  # the copy arrived
        calls[name] = set()
        for tool in TOOLS:
            _reset(tree, name)
            tree.log.unlink(missing_ok=True)
            got = outcome(_run(tree, script, tool))
            called = tree.log.exists()
            if called:
                calls[name].add(tool)
            if got == baseline:
                continue
            if got[0] != "fail":
                wrong.append(f"{name}: {tool} failing gives another answer that looks fine: {str(got[1])[:300]}")
            elif not called:
                wrong.append(f"{name}: {tool} was never called, yet the script failed: {str(got[1])[:300]}")
            elif tool not in str(got[1]) and MESSAGE not in str(got[1]):
                wrong.append(f"{name}: {tool} failing is reported without its name or message: {str(got[1])[:300]}")
    assert not wrong, "\n".join(wrong)
    # not vacuous: the tools each script relies on were really called (and so made to fail)
    assert {"uname", "ls", "cksum", "awk"} <= calls["probe client"]
    assert {"cmviewcl", "find", "cksum"} <= calls["probe member"]
    assert {"cksum", "grep", "awk"} <= calls["lock acquire"] | calls["lock show"] | calls["lock renew"]
    assert {"awk", "sort", "cut", "grep", "sed"} <= calls["inventory"]
    assert {"cp", "chmod", "mv"} <= calls["action copy_key"]
    assert {"uname", "awk"} <= calls["discovery"]
    assert {"cfrun"} <= calls["cfrun check"] and {"cfagent", "mkdir", "rm"} <= calls["cfagent check"]
    assert {"cmversion", "cmrunpkg", "cmhaltpkg"} <= calls["preview"]


@pytest.mark.parametrize("failures, reported", [(1, False), (2, False), (3, True)])
def test_an_input_that_goes_while_the_probe_reads_it_is_read_again_not_reported(tree, failures, reported):
    # cfagent or the dispatcher replacing an input between find and cksum: cksum fails for that
    # file. The probe takes the listing again (twice, a second apart); only a third failure
    # makes the host unknown
    script, outcome = scripts(tree)["probe client"]
    expected = outcome(_run(tree, script, None))
    assert expected[0] == "ok"
    counter = tree.root / "cksum-runs"
    fake = tree.root / "flaky"
    fake.mkdir()
    _write_exec(
        fake / "cksum",
        f'#!/bin/sh\necho x >> {counter}\nif [ "$(wc -l < {counter})" -le {failures} ]; then echo "cksum: $1: No such file or directory" >&2; exit 1; fi\n'
        'exec /usr/bin/cksum "$@"\n',
    )
    env = {"PATH": f"{fake}:{tree.normal}:/usr/bin:/bin", "HOME": str(tree.root / "home"), "TMPDIR": str(tree.root)}
    script = script.replace(f"SGPATH={dsau.SERVICEGUARD_PATH}", f"SGPATH={fake}:{tree.normal}")  # as _run does: first in PATH
    done = run_sh(["/bin/sh", "-s"], script, env=env, timeout=60, cwd=tree.root)
    got = outcome(CommandResult(done.returncode, done.stdout, done.stderr, 0.0))
    if reported:
        assert got[0] == "fail" and "cksum" in str(got[1]) and "No such file or directory" in str(got[1])
    else:
        assert got == expected
    assert len(counter.read_text().splitlines()) == min(failures + 1, 3)
