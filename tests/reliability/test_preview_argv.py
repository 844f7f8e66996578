"""Serviceguard's -t previews (reconciler/driver/preview.py) carry exactly the argv they mean,
and only values the model accepts (hypothesis, as tests/reliability/test_commands_argv.py
does for the action commands)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain import dsau
from reconciler.domain.preview import PreviewRequest
from reconciler.driver import commands
from reconciler.driver import preview as driver
from reconciler.driver.commands import UnsafeValue
from tests.reliability.test_commands_argv import PROPERTY, models, words

NONCE = "0123456789abcdef0123456789abcdef"


@PROPERTY
@given(models(), st.data())
def test_every_preview_of_a_valid_model_is_the_intended_argv_in_the_script(state, data):
    pkg = state.master.package.name
    node = data.draw(st.sampled_from([m.name for m in state.members]))
    requests = [PreviewRequest("a", "start", pkg, node, node), PreviewRequest("b", "halt", pkg, node, node), PreviewRequest("c", "enable", pkg, node, node)]
    script = driver.preview_script(requests, NONCE, timeout=30, serviceguard_path=state.platform.serviceguard_path).script.splitlines()
    assert words(script[0].removesuffix("; export PATH")) == [f"PATH={state.platform.serviceguard_path}:$PATH"]
    argvs = [["cmrunpkg", "-t", "-n", node, pkg], ["cmhaltpkg", "-t", pkg], ["cmmodpkg", "-e", "-t", pkg]]
    for argv in argvs:
        assert words(commands.quote_argv(argv)) == argv and commands.quote_argv(argv) in script


@pytest.mark.parametrize("value", ["$(reboot)", "`id`", "a;b", "a\nb", "' OR '1", "*", "~root", "a b", "-n", "\\"])
def test_values_the_model_refuses_never_reach_a_preview(value):
    for request in (
        PreviewRequest("a", "start", value, "node1", "node1"),
        PreviewRequest("a", "start", "csync", value, "node1"),
        PreviewRequest("a", "halt", value, "node1", "node1"),
        PreviewRequest("a", "enable", value, "node1", "node1"),
    ):
        with pytest.raises(UnsafeValue):
            driver.preview_script([request], NONCE, timeout=30, serviceguard_path=dsau.SERVICEGUARD_PATH)
    with pytest.raises(UnsafeValue):
        driver.preview_script([PreviewRequest("a", "halt", "csync", "node1", "node1")], NONCE, timeout=30, serviceguard_path=value)


def test_an_operation_csync_does_not_preview_is_refused():
    with pytest.raises(UnsafeValue):
        driver.preview_script([PreviewRequest("a", "detach", "csync", "node1", "node1")], NONCE, timeout=30, serviceguard_path=dsau.SERVICEGUARD_PATH)  # type: ignore[arg-type]
