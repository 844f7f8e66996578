"""Issue #18 on the lab: `csync watch` runs as an administrator runs it (a subprocess, JSON
log lines on its standard output, metrics scraped over HTTP on 127.0.0.1), against the
session lab (3 members, 4 clients), reseeded per test. Every test stops its watch by PID
and waits for it; each is bounded (the watch's interval is 1 s, every wait has a deadline).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.apply.journal import read
from reconciler.apply.lock import SiteLock, session_runner
from reconciler.desired.loader import load_desired_state
from reconciler.domain import dsau
from reconciler.driver.transport import Pool
from reconciler.lab import Lab
from reconciler.lab.runtime import key_dir
from tests.test_monitoring_examples import rule_metrics

pytestmark = pytest.mark.lab

DEADLINE = 30.0  # seconds any one expected change may take (a cycle is 1 s; a hung host costs 5)
PACKAGE_KEY = dsau.peer_key_name("127.0.10.10")


class Watcher:
    """`csync watch` as a subprocess: its log lines as they come, its metrics on request."""

    def __init__(self, lab: Lab, cwd: Path, *args: str, desired: Path | None = None):
        self.lab = lab
        self.desired = desired or lab.desired_state_path
        argv = [sys.executable, "-m", "reconciler.cli.main", "watch", "-f", str(self.desired), "--interval", "1"]
        argv += ["--metrics-address", "127.0.0.1:0", "--log-format", "json", *args]
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CI": "true", "PYTHONPATH": os.pathsep.join(sys.path)}
        )
        self.lines: list[dict] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        started = self.wait_event("watch-started")
        self.url = started["metrics"]
        self.address = self.url.removeprefix("http://").removesuffix("/metrics")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            self.lines.append(json.loads(line))  # every line is JSON, or this fails the test

    def events(self, name: str) -> list[dict]:
        return [e for e in list(self.lines) if e["event"] == name]

    def wait_event(self, name: str, *, after: int = 0, timeout: float = DEADLINE, **fields) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in list(self.lines)[after:]:
                if e["event"] == name and all(e.get(k) == v for k, v in fields.items()):
                    return e
            assert self.proc.poll() is None, f"the watch exited {self.proc.returncode}: {self.proc.stderr.read() if self.proc.stderr else ''}"
            time.sleep(0.05)
        raise AssertionError(f"no {name} {fields} within {timeout} s; log: {''.join(self.raw)[-3000:]}")

    def metrics(self) -> dict[str, float]:
        """Every sample: 'name' or 'name{label="value",...}' (labels sorted) -> value."""
        text = urllib.request.urlopen(self.url, timeout=5).read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def wait_metrics(self, test, *, timeout: float = DEADLINE, what: str = "") -> dict[str, float]:
        deadline = time.monotonic() + timeout
        m: dict[str, float] = {}
        while time.monotonic() < deadline:
            m = self.metrics()
            if test(m):
                return m
            time.sleep(0.2)
        raise AssertionError(f"metrics never showed {what} within {timeout} s: {sorted((k, v) for k, v in m.items() if k.startswith('csync_'))}")

    def cycles(self) -> float:
        return self.metrics().get("csync_cycles_total", 0.0)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[float, int]:
        """Signal it by PID and wait: (seconds to exit, exit code)."""
        start = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return time.monotonic() - start, code

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.stop()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def actions(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("csync_plan_actions{"))


def up(host: str, role: str = "client") -> str:
    return f'csync_host_up{{host="{host}",role="{role}"}}'


def heal_runs(result: str) -> str:
    return f'csync_heal_runs_total{{result="{result}"}}'


def sshd_children(lab: Lab) -> dict[str, list[int]]:
    """The per-connection sshd processes of each host (children of its listening sshd)."""
    out = {}
    for h in lab.hosts:
        pid = lab.state.pid_of(h.name)
        assert pid is not None
        try:
            out[h.name] = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except FileNotFoundError:
            out[h.name] = []
    return out


def test_a_key_deleted_on_a_client_shows_in_the_metrics_within_two_cycles(reseed, tmp_path):
    lab = reseed("fresh")
    with Watcher(lab, tmp_path) as w:
        m = w.wait_metrics(lambda m: m.get("csync_cycles_total", 0) >= 1, what="a first cycle")
        assert actions(m) == 0 and m["csync_failover_ready"] == 1 and m["csync_unknown_hosts"] == 0
        assert all(m[up(h.name, h.role)] == 1 for h in lab.hosts)
        # every metric the example alert rules use is exported
        assert rule_metrics() <= {k.split("{")[0] for k in m}
        (key_dir(lab, "client2") / PACKAGE_KEY).unlink()
        seen = w.cycles()
        m = w.wait_metrics(lambda m: m["csync_cycles_total"] >= seen + 2, what="two more cycles")
        assert actions(m) >= 1, "the deleted key is not in the metrics two cycles later"
        assert m["csync_failover_ready"] == 0  # client2's cfagent cannot authenticate the package address
        drift = w.wait_event("drift-appeared", host="client2")
        assert drift["address"] == f"client.client2.key[{PACKAGE_KEY}]" and drift["level"] == "warning"
        assert w.wait_event("failover-readiness-changed", to="no")["from"] == "yes"
        assert (key_dir(lab, "client2") / PACKAGE_KEY).exists() is False  # without --heal nothing is changed
        seconds, code = w.stop()
    assert code == 0 and seconds < 5


def test_heal_repairs_a_deleted_key_and_the_metric_returns_to_0(reseed, tmp_path):
    lab = reseed("fresh")
    with Watcher(lab, tmp_path, "--heal") as w:
        w.wait_metrics(lambda m: m.get("csync_cycles_total", 0) >= 1, what="a first cycle")
        (key_dir(lab, "client2") / PACKAGE_KEY).unlink()
        w.wait_event("drift-appeared", host="client2")
        m = w.wait_metrics(lambda m: m[heal_runs("succeeded")] >= 1 and actions(m) == 0, what="a heal and no drift")
        assert m["csync_failover_ready"] == 1
        assert (key_dir(lab, "client2") / PACKAGE_KEY).exists()
        finished = w.wait_event("heal-finished")
        assert finished["result"] == "succeeded" and finished["done"] >= 1
        assert w.wait_event("drift-resolved", host="client2")["address"] == f"client.client2.key[{PACKAGE_KEY}]"
        # journaled like any apply, in the watch's working directory
        journal = Path(tmp_path, finished["journal"]) if not os.path.isabs(finished["journal"]) else Path(finished["journal"])
        records = read(journal)
        assert records[0]["type"] == "run-start" and records[-1]["type"] == "run-end" and records[-1]["outcome"] == "succeeded"
        assert any(r["type"] == "lock" for r in records) and any(r["type"] == "action-end" and r["host"] == "client2" for r in records)
        assert not any(r["type"] == "action-end" and r["kind"] in ("start-package", "halt-package", "enable-switching", "dispatch-member") for r in records)


def test_heal_never_runs_while_another_apply_holds_the_site_lock(reseed, tmp_path):
    lab = reseed("fresh")
    state = load_desired_state([lab.desired_state_path])
    with Pool(state.access) as pool, Watcher(lab, tmp_path, "--heal") as w:
        holder = SiteLock(state, state.host("node1"), session_runner(pool, state.host("node1")), lease=60)
        holder.acquire(0)
        try:
            w.wait_metrics(lambda m: m.get("csync_cycles_total", 0) >= 1, what="a first cycle")
            (key_dir(lab, "client1") / PACKAGE_KEY).unlink()
            w.wait_metrics(lambda m: m[heal_runs("locked")] >= 1, what="a heal refused by the lock")
            finished = w.wait_event("heal-finished", result="locked")
            assert holder.id in finished["detail"]
            assert not (key_dir(lab, "client1") / PACKAGE_KEY).exists()
            assert w.metrics()[heal_runs("succeeded")] == 0
        finally:
            holder.release()
        w.wait_metrics(lambda m: m[heal_runs("succeeded")] >= 1 and actions(m) == 0, what="the heal once the lock is free")
        assert (key_dir(lab, "client1") / PACKAGE_KEY).exists()


def test_a_package_halt_turns_failover_ready_to_0_and_heal_leaves_it_halted(reseed, tmp_path):
    lab = reseed("fresh")
    with Watcher(lab, tmp_path, "--heal") as w:
        w.wait_metrics(lambda m: m.get("csync_failover_ready") == 1, what="failover-ready")
        lab.exec("node1", "cmhaltpkg csync", check=True)  # the administrator's maintenance
        (key_dir(lab, "client3") / PACKAGE_KEY).unlink()  # and a key action in the same plan
        m = w.wait_metrics(lambda m: m["csync_failover_ready"] == 0, what="not failover-ready")
        seen = m["csync_cycles_total"]
        w.wait_metrics(lambda m: m["csync_cycles_total"] >= seen + 3, what="three more cycles")
        skipped = w.wait_event("heal-skipped")
        assert "start-package" in skipped["reason"] and "never a cluster operation" in skipped["reason"]
        assert len(w.events("heal-skipped")) == 1  # said once, not every cycle
        m = w.metrics()
        assert m['csync_plan_actions{kind="start-package"}'] == 1 and m["csync_failover_ready"] == 0
        assert sum(m[heal_runs(r)] for r in ("succeeded", "failed", "refused", "locked", "error")) == 0
        assert w.events("heal-started") == []
        assert "package:csync|status=down" in lab.exec("node1", "cmviewcl -f line", check=True).stdout
        assert not (key_dir(lab, "client3") / PACKAGE_KEY).exists()


def test_an_isolated_host_turns_host_up_to_0_and_back_after_restore(reseed, tmp_path):
    lab = reseed("fresh")
    with Watcher(lab, tmp_path) as w:
        w.wait_metrics(lambda m: m.get(up("client1")) == 1, what="client1 up")
        lab.isolate("client1")
        try:
            m = w.wait_metrics(lambda m: m[up("client1")] == 0, what="client1 down")
            assert m[up("client2")] == 1 and m["csync_unknown_hosts"] == 1
            assert math.isnan(m["csync_failover_ready"])  # unknown, not "no": a host did not answer
            lost = w.wait_event("host-lost", host="client1")
            assert lost["reason_kind"] == "timeout"
        finally:
            lab.restore("client1")
        m = w.wait_metrics(lambda m: m[up("client1")] == 1, what="client1 back")
        assert m["csync_failover_ready"] == 1 and m["csync_unknown_hosts"] == 0
        w.wait_event("host-back", host="client1")


def test_a_host_restarted_by_node_down_and_node_up_is_reconnected(reseed, tmp_path):
    lab = reseed("fresh")
    with Watcher(lab, tmp_path) as w:
        w.wait_metrics(lambda m: m.get(up("client4")) == 1, what="client4 up")
        before = sshd_children(lab)["client4"]
        assert before, "the watch keeps a session open on client4"
        lab.node_down("client4")
        try:
            w.wait_metrics(lambda m: m[up("client4")] == 0, what="client4 down")
        finally:
            lab.node_up("client4")
        m = w.wait_metrics(lambda m: m[up("client4")] == 1, what="client4 back")
        assert m['csync_ssh_reconnects_total{host="client4"}'] >= 1
        w.wait_event("host-reconnected", host="client4")
        # one new warm session on the new sshd, reused by the cycles that follow
        seen = m["csync_cycles_total"]
        w.wait_metrics(lambda m: m["csync_cycles_total"] >= seen + 2, what="two more cycles")
        assert len(sshd_children(lab)["client4"]) == 1
        assert w.metrics()['csync_ssh_reconnects_total{host="client4"}'] == m['csync_ssh_reconnects_total{host="client4"}']


def test_an_invalid_edit_of_the_desired_state_is_logged_and_ignored(reseed, tmp_path):
    lab = reseed("fresh")
    site = tmp_path / "site.yaml"
    good = lab.desired_state_text()
    site.write_text(good)
    with Watcher(lab, tmp_path, desired=site) as w:
        m = w.wait_metrics(lambda m: m.get("csync_cycles_total", 0) >= 1, what="a first cycle")
        [digest] = [k for k in m if k.startswith("csync_desired_state_info{")]
        bad = good.replace("connect_timeout: 5", "connect_timeout: soon")
        assert bad != good
        site.write_text(bad)
        invalid = w.wait_event("desired-state-invalid")
        line = next(n for n, text in enumerate(bad.splitlines(), 1) if "connect_timeout: soon" in text)
        assert re.search(rf"{re.escape(str(site))}:{line}:\d+: ", invalid["error"]), invalid["error"]
        assert invalid["via"] == "file-change" and invalid["level"] == "error"
        seen = w.cycles()
        m = w.wait_metrics(lambda m: m["csync_cycles_total"] >= seen + 2, what="cycles going on")
        assert m['csync_desired_state_reloads_total{result="invalid"}'] == 1 and digest in m and actions(m) == 0
        # a valid edit is taken: client4 leaves the site, and its series goes
        site.write_text(good.replace("  - {name: client4, address: 127.0.10.24}\n", ""))
        reloaded = w.wait_event("desired-state-reloaded")
        assert reloaded["hosts"] == 6 and reloaded["via"] == "file-change"
        m = w.wait_metrics(lambda m: up("client4") not in m and digest not in m, what="client4 gone")
        # SIGHUP reads it again whatever the files say
        count = len(w.events("desired-state-reloaded"))
        w.proc.send_signal(signal.SIGHUP)
        assert w.wait_event("desired-state-reloaded", after=0, via="SIGHUP")
        assert len(w.events("desired-state-reloaded")) == count + 1


def _closed(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_ends_it_within_5_s_with_nothing_left_running(reseed, tmp_path):
    lab = reseed("fresh")
    with Watcher(lab, tmp_path) as w:
        w.wait_metrics(lambda m: m.get("csync_cycles_total", 0) >= 2, what="two cycles")
        sessions = sshd_children(lab)
        assert all(sessions.values()), f"a warm session per host: {sessions}"
        seconds, code = w.stop(signal.SIGTERM)
        assert code == 0 and seconds < 5, (seconds, code)
        stopped = w.events("watch-stopped")[0]
        assert stopped["reason"] == "stopped by SIGTERM" and stopped["unfinished"] is None
        assert "Traceback" not in w.proc.stderr.read()
        assert _closed(w.address)
        deadline = time.monotonic() + 3
        while any(sshd_children(lab).values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(sshd_children(lab).values()), f"sessions left open: {sshd_children(lab)}"


def test_a_stop_while_a_probe_waits_on_a_hung_host_still_ends_within_5_s(reseed, tmp_path):
    lab = reseed("fresh")
    with Watcher(lab, tmp_path) as w:
        w.wait_metrics(lambda m: m.get("csync_cycles_total", 0) >= 1, what="a first cycle")
        lab.isolate("client2")
        try:
            time.sleep(2.0)  # a cycle is now waiting (5 s) for client2's answer
            seconds, code = w.stop(signal.SIGINT)
        finally:
            lab.restore("client2")
        assert code == 0 and seconds < 5, (seconds, code)
        stopped = w.events("watch-stopped")[0]
        assert stopped["reason"] == "stopped by SIGINT" and stopped["unfinished"] is None  # the cut probe ended: no thread left behind
        assert "Traceback" not in w.proc.stderr.read()
        assert _closed(w.address)


def test_a_kept_session_does_not_grow_with_the_commands_it_runs(lab):
    """paramiko keeps the id of every channel a transport opened; the warm pool forgets those
    the server closed, so a watch's memory does not grow by one entry per host per cycle."""
    from reconciler.observe.probe import probe_site
    from reconciler.watch.connections import WarmPool

    state = load_desired_state([lab.desired_state_path])
    with WarmPool(state.access) as pool:
        for _ in range(6):
            site = probe_site(state, pool)
            assert not site.unreachable
        transport = pool.sessions["client1"].connection.client.get_transport()
        assert pool.sessions["client1"].commands_sent == 6
        assert len(transport.channels_seen) <= 1, transport.channels_seen


def test_a_command_whose_session_is_closed_under_it_ends_at_once(lab):
    """Closing a session (how the watch stops a probe waiting on a hung host) ends a command
    running on it with "connection lost", not at its timeout."""
    from reconciler.driver.transport import TransportError

    state = load_desired_state([lab.desired_state_path])
    with Pool(state.access) as pool:
        session = pool.connect(state.host("client1"))
        threading.Timer(0.5, session.close).start()
        start = time.monotonic()
        with pytest.raises(TransportError, match="connection lost") as e:
            session.run("sleep 30", timeout=60)
        assert e.value.kind == "unreachable" and time.monotonic() - start < 3
