"""Issue #19: no traceback reaches a user. An unexpected exception (a bug) inside probe, plan,
apply or trust becomes one `Error: internal error: ...` line and exit 70; CSYNC_DEBUG=1 shows
the traceback; an apply that had opened its journal records the failure there."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from reconciler.apply.journal import read
from reconciler.cli.main import main
from tests.reliability.support import desired, journals

pytestmark = pytest.mark.lab


def boom(*_args, **_kwargs):
    raise RuntimeError("injected fault\nsecond line")


@pytest.mark.parametrize(
    "target, command",
    [
        ("reconciler.observe.probe.parse_probe", ["plan"]),
        ("reconciler.pipeline.make_plan", ["plan"]),
        ("reconciler.observe.probe.parse_probe", ["facts"]),
        ("reconciler.trust.predict.trust_report", ["trust"]),
        ("reconciler.apply.executor.Executor.run", ["apply", "--auto-approve", "--allow-cluster-ops"]),
    ],
)
def test_an_unexpected_exception_is_one_error_line_and_exit_70(reseed, tmp_path, monkeypatch, target, command):
    lab = reseed("seed")
    path = desired(lab, tmp_path)
    module, _, attr = target.rpartition(".")
    if module.endswith(".Executor"):
        from reconciler.apply.executor import Executor

        monkeypatch.setattr(Executor, "run", boom)
    else:
        import importlib

        monkeypatch.setattr(importlib.import_module(module), attr, boom)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CSYNC_DEBUG", raising=False)
    result = CliRunner().invoke(main, [*command, "-f", str(path)], catch_exceptions=False)
    assert result.exit_code == 70, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [e for e in errors if "internal error: RuntimeError: injected fault second line" in e] and len(errors) == 1
    assert "Traceback" not in result.output + result.stderr
    if command[0] == "apply":
        records = read(journals(tmp_path)[0])
        [end] = [r for r in records if r["type"] == "run-end"]
        assert end["outcome"] == "error" and "injected fault" in end["error"]
        assert records[-1]["type"] == "unlock"  # the lock was released after it


def test_csync_debug_shows_the_traceback(reseed, tmp_path, monkeypatch):
    lab = reseed("fresh")
    path = desired(lab, tmp_path)
    import reconciler.pipeline as pipeline

    monkeypatch.setattr(pipeline, "make_plan", boom)
    monkeypatch.setenv("CSYNC_DEBUG", "1")
    result = CliRunner().invoke(main, ["plan", "-f", str(path)])
    assert isinstance(result.exception, RuntimeError)
