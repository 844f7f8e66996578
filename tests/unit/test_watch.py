"""`csync watch`'s parts without hosts (issue #18): the cycle diff, readiness now, which plans
--heal takes, backoff, the log lines, the metrics and their HTTP server, the desired-state
source, and the loop going on through a cycle's unexpected error. The lab tests
(tests/lab/test_watch_lab.py) run the whole command against real hosts."""

from __future__ import annotations

import io
import json
import math
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.desired.loader import load_desired_state
from reconciler.desired.model import DesiredState
from reconciler.domain import dsau
from reconciler.errors import CsyncError
from reconciler.observe.facts import unreachable
from reconciler.plan.kinds import KINDS
from reconciler.plan.planner import make_plan
from reconciler.watch import loop as watch_loop
from reconciler.watch.backoff import Backoff
from reconciler.watch.heal import HEAL_KINDS, refusal
from reconciler.watch.log import EventLog
from reconciler.watch.loop import Watch, WatchOptions
from reconciler.watch.metrics import MetricsServer, WatchMetrics, parse_address
from reconciler.watch.readiness import readiness
from reconciler.watch.snapshot import DRIFT_APPEARED, DRIFT_RESOLVED, HOST_BACK, HOST_LOST, READINESS_CHANGED, Snapshot, changes
from reconciler.watch.source import DesiredSource
from tests.unit.sitefacts import PKG_IP, cluster_view, converged, site, with_keys


def snapshot(state, facts):
    return Snapshot.of(make_plan(state, facts), facts, readiness(state, facts))


def events(found) -> list[tuple[str, str | None]]:
    return [(c.event, c.fields.get("host")) for c in found]


# --- the cycle diff ----------------------------------------------------------------------------
def test_the_first_cycle_reports_what_is_not_as_desired_once():
    state = site()
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,))
    facts["client2"] = unreachable("client2", facts["client2"].address, "client", "connection refused", "unreachable")
    first = changes(None, snapshot(state, facts))
    assert events(first) == [(HOST_LOST, "client2"), (DRIFT_APPEARED, "client1"), (READINESS_CHANGED, None)]
    assert first[1].fields["address"] == f"client.client1.key[{dsau.peer_key_name(PKG_IP)}]" and first[1].level == "warning"
    # client1 cannot authenticate the package address: a known "no", whatever client2 would say
    assert first[2].fields == {"from": None, "to": "no", "reasons": list(readiness(state, facts).reasons)}


def test_a_cycle_like_the_one_before_reports_nothing_and_repairs_are_reported_resolved():
    state = site()
    drifted = converged(state)
    drifted["client1"] = with_keys(drifted["client1"], drop=(PKG_IP,))
    drifted["client2"] = unreachable("client2", drifted["client2"].address, "client", "timed out", "timeout")
    before = snapshot(state, drifted)
    assert changes(before, snapshot(state, drifted)) == []
    after = changes(before, snapshot(state, converged(state)))
    assert events(after) == [(HOST_BACK, "client2"), (DRIFT_RESOLVED, "client1"), (READINESS_CHANGED, None)]
    assert after[2].fields["from"] == "no" and after[2].fields["to"] == "yes" and after[2].level == "info"


# --- readiness now -----------------------------------------------------------------------------
def test_readiness_is_yes_no_or_unknown():
    state = site()
    assert readiness(state, converged(state)).ready is True and readiness(state, converged(state)).value == 1.0
    down = converged(state)
    down["client3"] = unreachable("client3", down["client3"].address, "client", "timed out", "timeout")
    unknown = readiness(state, down)
    assert unknown.ready is None and math.isnan(unknown.value) and any("did not answer" in r for r in unknown.reasons)
    # a halted package is a known "no", even while a client is down
    halted = converged(state, owner=None, cluster=cluster_view(state, owner=None))
    halted["client3"] = down["client3"]
    assert readiness(state, halted).ready is False and readiness(state, halted).value == 0.0
    missing = converged(state)
    missing["client1"] = with_keys(missing["client1"], drop=(PKG_IP,))
    assert readiness(state, missing).ready is False


# --- what --heal takes ---------------------------------------------------------------------------
def test_heal_takes_key_actions_only_and_never_a_cluster_operation():
    assert HEAL_KINDS == {"copy-key", "install-key", "mirror-key", "remove-key"}
    assert not any(KINDS[k].cluster_op for k in HEAL_KINDS)
    state = site()
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,))
    assert refusal(make_plan(state, facts)) is None
    halted = converged(state, owner=None, cluster=cluster_view(state, owner=None))
    halted["client1"] = with_keys(halted["client1"], drop=(PKG_IP,))
    plan = make_plan(state, halted)
    assert {a.kind for a in plan.actions} >= {"start-package", "copy-key"}
    why = refusal(plan)
    assert why is not None and "start-package" in why and "never a cluster operation" in why


# --- backoff ---------------------------------------------------------------------------------------
def test_backoff_doubles_up_to_its_cap_and_a_success_resets_it():
    now = [100.0]
    b = Backoff(base=1.0, cap=8.0, clock=lambda: now[0], jitter=lambda: 0.0)
    assert b.due() and b.remaining() == 0
    assert [b.failed() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert not b.due() and b.remaining() == 8.0
    now[0] += 8.0
    assert b.due()
    b.succeeded()
    assert b.failures == 0 and b.failed() == 1.0
    jittered = Backoff(base=10.0, cap=60.0, clock=lambda: 0.0, jitter=lambda: 0.999)
    assert 10.0 <= jittered.failed() < 11.0


# --- log lines -------------------------------------------------------------------------------------
def test_log_lines_are_logfmt_or_json_one_line_each_and_never_hold_a_key():
    out = io.StringIO()
    text = EventLog(out, "text")
    text.emit("desired-state-invalid", "error", error="site.yaml:3:5: bad\nsite.yaml:9:1: worse", kept=None, hosts=[], ok=True)
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----"
    EventLog(out, "json").emit("heal-action", "warning", detail=f"stderr: {pem}", host="client1")
    first, second = out.getvalue().splitlines()
    assert first.split(" ", 3)[1:3] == ["error", "desired-state-invalid"]
    assert 'error="site.yaml:3:5: bad\\nsite.yaml:9:1: worse" kept=- hosts=- ok=true' in first
    record = json.loads(second)
    assert record["event"] == "heal-action" and record["level"] == "warning" and record["host"] == "client1"
    assert "MIIB" not in second and "[pem removed]" in record["detail"]


# --- metrics ---------------------------------------------------------------------------------------
def samples(metrics: WatchMetrics) -> dict[str, float]:
    return {
        s.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}" if s.labels else ""): s.value
        for family in metrics.registry.collect()
        for s in family.samples
    }


def test_metrics_of_a_cycle_and_of_hosts_a_reload_removed():
    state = site()
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,))
    facts["client2"] = unreachable("client2", facts["client2"].address, "client", "refused", "unreachable")
    m = WatchMetrics()
    before = samples(m)
    assert math.isnan(before["csync_failover_ready"]) and not any(k.startswith("csync_plan_actions") for k in before)  # nothing known yet
    plan = make_plan(state, facts)
    m.cycle(plan, facts, readiness(state, facts), 0.5, 1234.0)
    s = samples(m)
    assert s["csync_plan_actions{kind=copy-key}"] == 1 and s["csync_plan_actions{kind=start-package}"] == 0
    assert s["csync_unknown_hosts"] == 1 and s["csync_host_up{host=client2,role=client}"] == 0 and s["csync_host_up{host=node1,role=member}"] == 1
    assert s["csync_failover_ready"] == 0 and s["csync_last_cycle_timestamp_seconds"] == 1234.0 and s["csync_cycles_total"] == 1
    assert s["csync_probe_duration_seconds_count"] == 0  # constructed facts carry no probe time
    m.reconnects.labels("client3").inc()
    m.forget_hosts(["client3"])
    m.cycle(plan, {n: f for n, f in facts.items() if n != "client3"}, readiness(state, facts), 0.5, 1235.0)
    s = samples(m)
    assert not any("client3" in k for k in s) and s["csync_cycle_duration_seconds_count"] == 2


def test_parse_address():
    assert parse_address("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_address("[::1]:0") == ("::1", 0)
    for bad in ("9108", "127.0.0.1", ":9108", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_the_server_serves_metrics_and_health_on_loopback_and_stops():
    m = WatchMetrics()
    health = [(True, "ok: 3 cycle(s)")]
    server = MetricsServer(m, "127.0.0.1:0", lambda: health[0]).start()
    try:
        base = f"http://{server.address}"
        status, text = get(base + "/metrics")
        assert status == 200 and {f.name for f in text_string_to_metric_families(text)} >= {"csync_failover_ready", "process_resident_memory_bytes"}
        assert get(base + "/healthz") == (200, "ok: 3 cycle(s)\n")
        health[0] = (False, "stalled: no cycle finished for 200 s")
        assert get(base + "/healthz")[0] == 503
        assert get(base + "/")[0] == 404
        with pytest.raises(CsyncError, match="cannot serve metrics on"):
            MetricsServer(m, server.address, lambda: health[0])
    finally:
        server.stop()
    with pytest.raises(OSError):
        socket.create_connection(tuple(server.server.server_address[:2]), timeout=1).close()


# --- the desired state's source --------------------------------------------------------------------
def test_the_source_sees_edits_and_new_files_and_an_invalid_edit_raises(tmp_path):
    folder = tmp_path / "desired-state"
    folder.mkdir()
    yaml = Path(__file__).resolve().parents[2] / "desired-state" / "lab.yaml"
    (folder / "site.yaml").write_text(yaml.read_text())
    source = DesiredSource([folder], lambda paths: load_desired_state(list(paths)))
    assert source.changed() is False  # nothing read yet
    loaded = source.load()
    assert loaded.state.site == "lab" and not source.changed()
    (folder / "notes.txt").write_text("not desired state")
    assert source.changed()  # the folder's listing changed: read again (the loader ignores the file)
    assert source.load().digest == loaded.digest and not source.changed()
    (folder / "site.yaml").write_text(yaml.read_text().replace("connect_timeout: 5", "connect_timeout: soon"))
    assert source.changed()
    with pytest.raises(CsyncError) as e:
        source.load()
    assert f"{folder / 'site.yaml'}:" in str(e.value) and "connect_timeout" in str(e.value)
    assert not source.changed()  # the invalid edit is not read again until the files change


# --- the loop --------------------------------------------------------------------------------------
def loopback_site(tmp_path: Path) -> DesiredState:
    """Hosts on loopback whose identity file does not exist: every probe fails before a packet is sent."""
    return DesiredState.model_validate(
        {
            "version": 1,
            "site": "loop",
            "master": {"mode": "standalone", "host": {"name": "master", "address": "127.0.9.1"}},
            "clients": [{"name": "client1", "address": "127.0.9.21"}],
            "access": {"identity_file": str(tmp_path / "missing-key"), "known_hosts": str(tmp_path / "known_hosts")},
        }
    )


def test_a_cycle_that_fails_unexpectedly_is_logged_and_counted_and_the_watch_goes_on(tmp_path, monkeypatch):
    state = loopback_site(tmp_path)
    source = DesiredSource([tmp_path], lambda paths: state)
    out = io.StringIO()
    metrics = WatchMetrics()
    watch = Watch(source, source.load(), WatchOptions(interval=0.01, poll=0.01), log=EventLog(out, "json"), metrics=metrics, identity_of=lambda s: "root")
    real = watch_loop.readiness
    calls = []

    def failing_once(state, facts):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug\nin two lines")
        return real(state, facts)

    monkeypatch.setattr(watch_loop, "readiness", failing_once)
    try:
        watch.run(max_cycles=2)
    finally:
        watch.close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    [error] = [r for r in records if r["event"] == "cycle-error"]
    assert error["error"] == "RuntimeError: a bug in two lines" and error["level"] == "error" and "traceback" not in error
    assert samples(metrics)["csync_cycle_errors_total"] == 1 and watch.cycles == 2
    lost = [r["host"] for r in records if r["event"] == "host-lost"]
    assert lost == ["master", "client1"] and all("missing-key" in r["reason"] for r in records if r["event"] == "host-lost")
    assert watch.health()[0] is True


# --- the command line's failures: one Error line and an exit code, never a traceback -----------------
def watch_command(*args: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "watch", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def test_the_command_refuses_to_start_with_one_error_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        r = watch_command("-f", "desired-state/lab.yaml", "--metrics-address", f"127.0.0.1:{taken.getsockname()[1]}")
    finally:
        taken.close()
    assert r.returncode == 1 and r.stderr.startswith("Error: cannot serve metrics on 127.0.0.1:") and r.stdout == ""
    bad = tmp_path / "site.yaml"
    bad.write_text((Path(__file__).resolve().parents[2] / "desired-state" / "lab.yaml").read_text().replace("parallelism: 64", "parallelism: many"))
    r = watch_command("-f", str(bad), "--metrics-address", "127.0.0.1:0")
    assert r.returncode == 3 and f"{bad}:" in r.stderr and "parallelism" in r.stderr
    r = watch_command("--metrics-address", "localhost", "-f", "desired-state/lab.yaml")
    assert r.returncode == 64 and "expected HOST:PORT" in r.stderr
    r = watch_command("--interval", "0.1", "-f", "desired-state/lab.yaml")
    assert r.returncode == 64 and "Traceback" not in r.stderr
