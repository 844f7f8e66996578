"""examples/monitoring/ (issue #18): the alert rules parse, cover what the issue asks for, and
use only metrics `csync watch` exports; the systemd unit's command line is one `csync watch`
accepts; the README's metrics table lists every metric."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ruamel.yaml import YAML

from reconciler.cli.watch import watch
from reconciler.plan.planner import make_plan
from reconciler.watch.metrics import WatchMetrics
from reconciler.watch.readiness import readiness
from tests.unit.sitefacts import PKG_IP, converged, site, with_keys

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "monitoring"
RULES = EXAMPLES / "csync-watch.rules.yml"
UNIT = EXAMPLES / "csync-watch.service"

# PromQL words that look like metric names: binary operators, modifiers
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}


def expr_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not a function or
    aggregation (followed by '('), a keyword, a label in a matcher or a grouping, or a duration."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(r"(?<![0-9.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[m.end() :].lstrip().startswith("(") or m.group(0) in _KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def rules() -> list[dict]:
    doc = YAML(typ="safe").load(RULES.read_text(encoding="utf-8"))
    return [r for group in doc["groups"] for r in group["rules"]]


def rule_metrics() -> set[str]:
    """Every metric the example rules use (the lab test checks a live watch exports them)."""
    return set().union(*(expr_metrics(r["expr"]) for r in rules()))


def exported() -> set[str]:
    """The sample names of a watch's registry after one cycle of a drifted site."""
    state = site()
    facts = converged(state)
    facts["client1"] = with_keys(facts["client1"], drop=(PKG_IP,))
    plan = make_plan(state, facts)
    assert plan.actions
    metrics = WatchMetrics()
    metrics.desired(state.digest(), None)
    metrics.cycle(plan, facts, readiness(state, facts), 0.1, 1.0)
    metrics.reconnects.labels("client1").inc()
    return {s.name for family in metrics.registry.collect() for s in family.samples}


def test_the_expression_reader_finds_metrics_and_nothing_else():
    expr = 'sum without (kind) (csync_plan_actions{kind=~"copy-key|x"}) > 0 or absent(csync_a) and increase(csync_b_total[1h]) > 1e3'
    assert expr_metrics(expr) == {"csync_plan_actions", "csync_a", "csync_b_total"}
    assert expr_metrics("time() - csync_last_cycle_timestamp_seconds > 600") == {"csync_last_cycle_timestamp_seconds"}


def test_the_rules_parse_and_alert_on_what_the_issue_names():
    by_name = {r["alert"]: r for r in rules()}
    for r in by_name.values():
        assert r["expr"].strip() and r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]
    assert by_name["CsyncNotFailoverReady"]["for"] == "5m" and expr_metrics(by_name["CsyncNotFailoverReady"]["expr"]) == {"csync_failover_ready"}
    assert by_name["CsyncDrift"]["for"] == "30m" and "csync_plan_actions" in by_name["CsyncDrift"]["expr"]
    assert "csync_host_up" in by_name["CsyncHostDown"]["expr"]
    assert "csync_last_cycle_timestamp_seconds" in by_name["CsyncWatchStalled"]["expr"]


def test_every_metric_the_rules_use_exists():
    used = rule_metrics()
    assert used, "the rules use no metric"
    assert used <= exported(), f"the rules use metrics the watch does not export: {sorted(used - exported())}"


def test_the_readme_lists_every_metric_the_watch_exports():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    families = {re.sub(r"_(bucket|count|sum|created|total|info)$", "", n) for n in exported() if n.startswith("csync_")}
    missing = [f for f in sorted(families) if f not in readme]
    assert not missing, f"README's metrics table lacks {missing}"


def test_the_unit_runs_a_command_line_csync_watch_accepts():
    text = UNIT.read_text(encoding="utf-8")
    [line] = [x for x in text.splitlines() if x.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0].endswith("/csync") and argv[1] == "watch"
    ctx = watch.make_context("watch", argv[2:])
    assert ctx.params["interval"] == 60 and ctx.params["metrics_address"] == "127.0.0.1:9108" and ctx.params["log_format"] == "json"
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text and "KillSignal=SIGTERM" in text
