"""The site lock's protocol, run by a real /bin/sh on a local directory (no lab needed):
atomic creation, one winner among concurrent acquirers, lease expiry and takeover,
renewal, release and unlock by id."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reconciler.apply.lock import SiteLock, ci_identity, find_locks, unlock
from reconciler.driver.commands import RemoteCommand
from reconciler.driver.sitestate import lock_acquire
from reconciler.driver.transport import CommandResult
from reconciler.errors import LockError, LockHeld
from tests.unit.sitefacts import standalone


def sh(command: RemoteCommand) -> CommandResult:
    start = time.monotonic()
    p = subprocess.run(["/bin/sh", "-s"], input=command.script.encode(), capture_output=True, timeout=60)
    return CommandResult(p.returncode, p.stdout, p.stderr, time.monotonic() - start)


@pytest.fixture
def state():
    return standalone()


@pytest.fixture
def local(tmp_path: Path) -> str:
    return str(tmp_path / "csync")


def make_lock(state, local, lease=60, **kw) -> SiteLock:
    return SiteLock(state, state.master.host, sh, lease=lease, local_dir=local, **kw)


def lock_file(local: str) -> dict:
    return json.loads((Path(local) / "lock.json").read_text())


def test_acquire_creates_a_lock_record_with_identity_and_lease(state, local):
    lock = make_lock(state, local, plan_digest="sha256:abc")
    lock.acquire(0)
    data = lock_file(local)
    assert data["id"] == lock.id and data["site"] == state.site and data["plan_digest"] == "sha256:abc"
    assert {"user", "host", "pid", "ci", "acquired_epoch", "expires_epoch", "tool_version"} <= set(data)
    assert data["expires_epoch"] - data["acquired_epoch"] == 60
    assert data["acquired_at"].endswith("Z") and data["acquired_at"][:4].isdigit()
    assert lock.paths == [f"{local}/lock.json"]
    assert not (Path(local) / ".lock.mutex").exists()


def test_a_second_apply_fails_naming_the_holder(state, local):
    first = make_lock(state, local)
    first.acquire(0)
    with pytest.raises(LockHeld) as e:
        make_lock(state, local).acquire(0)
    assert first.id in str(e.value) and first.identity["user"] in str(e.value) and "since" in str(e.value)
    assert e.value.exit_code == 5


def test_waits_for_the_lock_until_released(state, local):
    first = make_lock(state, local)
    first.acquire(0)
    threading.Timer(1.0, first.release).start()
    second = make_lock(state, local)
    second.acquire(10)
    assert lock_file(local)["id"] == second.id


def test_exactly_one_of_many_concurrent_acquirers_wins(state, local):
    locks = [make_lock(state, local) for _ in range(12)]

    def take(lock):
        try:
            lock.acquire(0)
            return lock.id
        except LockHeld:
            return None

    with ThreadPoolExecutor(12) as ex:
        won = [r for r in ex.map(take, locks) if r]
    assert len(won) == 1 and lock_file(local)["id"] == won[0]


def test_an_expired_lease_is_taken_over(state, local):
    dead = make_lock(state, local, lease=3)
    dead.acquire(0)
    time.sleep(4.2)
    nxt = make_lock(state, local)
    nxt.acquire(0)
    assert lock_file(local)["id"] == nxt.id
    assert [r.id for r in nxt.taken_over] == [dead.id]


def test_renewal_extends_the_lease_and_records_the_plan(state, local):
    lock = make_lock(state, local, lease=5)
    lock.acquire(0)
    before = lock_file(local)
    time.sleep(1.1)
    lock.set_plan_digest("sha256:def")
    after = lock_file(local)
    assert after["plan_digest"] == "sha256:def" and after["acquired_epoch"] == before["acquired_epoch"]
    assert after["acquired_at"] == before["acquired_at"]
    assert after["expires_epoch"] > before["expires_epoch"]


def test_a_renewing_lock_is_never_taken_over(state, local):
    lock = make_lock(state, local, lease=3)
    lock.acquire(0)
    lock.start_renewing()
    try:
        with pytest.raises(LockHeld):
            make_lock(state, local).acquire(5)
        assert lock.check() is None
    finally:
        lock.release()
    assert not (Path(local) / "lock.json").exists()


def test_a_lock_removed_by_someone_else_is_reported_lost(state, local):
    lock = make_lock(state, local)
    lock.acquire(0)
    (Path(local) / "lock.json").unlink()
    lock.renew()
    assert lock.check() and "removed or taken over" in lock.check()


def test_release_removes_only_our_lock(state, local):
    first = make_lock(state, local)
    first.acquire(0)
    stranger = make_lock(state, local)
    assert stranger.release() == []
    assert lock_file(local)["id"] == first.id


def test_unlock_refuses_a_live_lease_without_force(state, local):
    lock = make_lock(state, local)
    lock.acquire(0)
    runners = {state.master.host.name: sh}
    with pytest.raises(LockHeld) as e:
        unlock(state, lock.id, runners, force=False, local_dir=local)
    assert "--force" in str(e.value)
    removed = unlock(state, lock.id, runners, force=True, local_dir=local)
    assert [r.id for r in removed] == [lock.id] and not (Path(local) / "lock.json").exists()


def test_unlock_without_force_removes_an_expired_lock(state, local):
    lock = make_lock(state, local, lease=3)
    lock.acquire(0)
    time.sleep(4.2)
    unlock(state, lock.id, {state.master.host.name: sh}, force=False, local_dir=local)
    assert find_locks(state, {state.master.host.name: sh}, local_dir=local)[0] == []


def test_unlock_of_an_unknown_id_names_the_locks_found(state, local):
    lock = make_lock(state, local)
    lock.acquire(0)
    with pytest.raises(LockError) as e:
        unlock(state, "12345678-1234-4234-8234-123456789abc", {state.master.host.name: sh}, force=True, local_dir=local)
    assert lock.id in str(e.value)


def test_a_mutex_left_by_a_killed_script_is_broken_after_it_goes_stale(state, local):
    m = Path(local) / ".lock.mutex"
    m.mkdir(parents=True)
    (m / "t").write_text(str(int(time.time()) - 100) + "\n")
    make_lock(state, local).acquire(0)
    assert not m.exists()


def test_ci_identity_names_the_job():
    assert ci_identity({"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "7", "GITHUB_REPOSITORY": "o/r", "GITHUB_JOB": "apply"}) == {
        "system": "github",
        "run_id": "7",
        "repository": "o/r",
        "job": "apply",
    }
    assert ci_identity({"CI_JOB_ID": "9", "CI_PROJECT_PATH": "g/p"}) == {"system": "gitlab", "job_id": "9", "project_path": "g/p"}
    assert ci_identity({"CI": "true"}) == {"system": "ci"}
    assert ci_identity({}) is None


def test_a_mutex_released_and_taken_again_between_two_looks_is_waited_for(state, local, tmp_path):
    """The race twelve concurrent acquirers hit (once in a suite run): our mkdir fails (held),
    the holder releases it, a third script takes it before our second mkdir, which fails with
    "File exists". That is a wait, not an error. Replayed with a mkdir that plays the other
    scripts: its first call fails as if the mutex existed, its second takes the mutex for a
    third holder (released 0.3 s later) and fails; then the real mkdir."""
    mutex = Path(local) / ".lock.mutex"
    fake = tmp_path / "bin"
    fake.mkdir()
    count = tmp_path / "mkdir-calls"
    real = subprocess.run(["sh", "-c", "command -v mkdir"], capture_output=True, text=True, check=True).stdout.strip()
    (fake / "mkdir").write_text(
        "#!/bin/sh\n"
        f'[ "$1" = {mutex} ] || exec {real} "$@"\n'
        f"echo x >> {count}\n"
        f"case $(wc -l < {count}) in\n"
        f'  *1) echo "mkdir: cannot create directory {mutex}: File exists" >&2; exit 1 ;;\n'
        f"  *2) {real} {mutex} && date +%s > {mutex}/t && (sleep 0.3; rm -rf {mutex}) >/dev/null 2>&1 &\n"
        f'      sleep 0.05; echo "mkdir: cannot create directory {mutex}: File exists" >&2; exit 1 ;;\n'
        "esac\n"
        f'exec {real} "$@"\n'
    )
    (fake / "mkdir").chmod(0o755)

    def sh_with_fake(command: RemoteCommand) -> CommandResult:
        script = command.script.replace("umask 022\n", f"umask 022\nPATH={fake}:$PATH; export PATH\n", 1)
        return sh(RemoteCommand(script, command.display))

    Path(local).mkdir(parents=True)
    lock = SiteLock(state, state.master.host, sh_with_fake, lease=60, local_dir=local)
    lock.acquire(5)
    assert lock_file(local)["id"] == lock.id
    assert count.read_text().count("x") >= 3  # the race was played: two failed looks, then ours


def test_a_lock_script_whose_reader_went_mid_section_releases_the_mutex(state, local, tmp_path):
    """csync killed while a lock script holds the node's mutex: sshd closes the script's output,
    and its next line dies of SIGPIPE. The mutex is released on the way out (the EXIT trap runs
    for PIPE too), not left for the next apply to wait out as stale (seen once in test_faults).
    Replayed locally: a date that takes a second inside the section, the output closed meanwhile."""
    mutex = Path(local) / ".lock.mutex"
    fake = tmp_path / "bin"
    fake.mkdir()
    count = tmp_path / "date-calls"
    real = subprocess.run(["sh", "-c", "command -v date"], capture_output=True, text=True, check=True).stdout.strip()
    (fake / "date").write_text(f'#!/bin/sh\necho x >> {count}\n[ "$(wc -l < {count})" -ne 2 ] || sleep 1\nexec {real} "$@"\n')
    (fake / "date").chmod(0o755)
    lock_id = str(uuid.uuid4())
    acquire = lock_acquire(state, lock_id, f'{{"id":"{lock_id}"', 60, [], local_dir=local)
    script = acquire.script.replace("umask 022\n", f"umask 022\nPATH={fake}:$PATH; export PATH\n", 1)
    proc = subprocess.Popen(["/bin/sh", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin and proc.stdout
    proc.stdin.write(script.encode())
    proc.stdin.close()
    deadline = time.monotonic() + 10
    while not mutex.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the script never took the mutex"
        time.sleep(0.01)
    proc.stdout.close()  # csync gone: the script's next line has no reader
    assert proc.wait(10) != 0
    assert not mutex.exists()
