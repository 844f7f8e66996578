"""Loading and validating the desired state: exact message shapes, all errors at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.loader import DesiredStateInvalid, load_desired_state
from reconciler.schema import schema_json

ROOT = Path(__file__).resolve().parents[2]
BASE = """version: 1
site: lab
master:
  mode: serviceguard
  cluster: c1
  package: {name: csync, address: 10.0.0.10, mount: /csync, node: node1}
  members:
    - {name: node1, address: 10.0.0.1}
    - {name: node2, address: 10.0.0.2}
clients:
  - {name: web1, address: 10.0.0.21}
"""


def errors(tmp_path: Path, text: str, name: str = "site.yaml") -> list[str]:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(DesiredStateInvalid) as e:
        load_desired_state([f])
    return [str(d).replace(str(tmp_path) + "/", "") for d in e.value.diagnostics]


def test_the_examples_are_valid():
    assert load_desired_state([ROOT / "desired-state/example"]).site == "plant-north"
    assert len(load_desired_state([ROOT / "desired-state"]).clients) == 10


def test_bad_ipv4_names_file_line_column_and_path(tmp_path):
    assert errors(tmp_path, BASE + "  - {name: web2, address: 10.0.0.300}\n") == [
        "site.yaml:12:27: clients[1].address: '10.0.0.300' is not an IPv4 address"
    ]


@pytest.mark.parametrize("name", ["web1;rm -rf /", "../etc", "web\nx", "wеb1", "-web", "a" * 64, "web.example.com"])
def test_host_names_that_a_shell_or_path_could_misread_are_refused(tmp_path, name):
    text = BASE.replace("{name: web1,", "{name: " + repr(name).replace("\\n", "\\n") + ",")
    text = BASE + f'  - name: "{name.encode("unicode_escape").decode()}"\n    address: 10.0.0.22\n'
    [msg] = errors(tmp_path, text)
    assert msg.startswith("site.yaml:12:11: clients[1].name: ") and "not a valid unqualified host name" in msg


def test_path_traversal_in_mount_is_refused(tmp_path):
    [msg] = errors(tmp_path, BASE.replace("mount: /csync", "mount: /csync/../etc"))
    assert msg == "site.yaml:6:53: master.package.mount: '/csync/../etc' is not normalised; write '/etc'"


def test_unknown_field_suggests_the_closest(tmp_path):
    assert "s.yaml:12:5: clients[1].address: required field is missing" in errors(tmp_path, BASE + "  - {name: web2, adress: 10.0.0.22}\n", "s.yaml")
    assert any("unknown field 'adress'; did you mean 'address'?" in m for m in errors(tmp_path, BASE + "  - {name: web2, adress: 10.0.0.22}\n"))


def test_semantic_errors_point_at_the_second_occurrence(tmp_path):
    msgs = errors(tmp_path, BASE + "  - {name: web2, address: 10.0.0.21}\n  - {name: WEB1, address: 10.0.0.10}\n")
    assert "site.yaml:12:27: clients[1].address: 10.0.0.21 is already the address of web1 (clients[0])" in msgs
    assert any(m.startswith("site.yaml:13:12: clients[2].name: 'WEB1' is already the name of clients[0]") for m in msgs)
    assert any("master.package.address: 10.0.0.10 is the address of WEB1" in m for m in msgs)


def test_preferred_node_must_be_a_member(tmp_path):
    [msg] = errors(tmp_path, BASE.replace("node: node1", "node: node9"))
    assert msg.startswith("site.yaml:6:67: master.package.node: 'node9' is not a declared member")


def test_wrong_literal_lists_the_choices(tmp_path):
    [msg] = errors(tmp_path, BASE + "keys: {distribution: cpy}\n")
    assert msg == "site.yaml:12:22: keys.distribution: 'cpy' is not allowed; must be one of: copy or regenerate"


@pytest.mark.parametrize("text, needle", [
    ("", "file is empty"),
    ("- a\n- b\n", "the top level is a CommentedSeq"),
    ("version: 1\nversion: 2\n", "duplicate key"),
    ("a: &x [1]\nb: *x\n", "anchors and aliases are not allowed"),
    ("a: [1,\n", "YAML:"),
    ("a: 1\n---\nb: 2\n", "more than one YAML document"),
])
def test_malformed_files_are_clear_errors(tmp_path, text, needle):
    assert any(needle in m for m in errors(tmp_path, text))


def test_two_files_setting_one_key_name_both_places(tmp_path):
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text("site: other\nclients:\n  - {name: web9, address: 10.0.0.29}\n")
    with pytest.raises(DesiredStateInvalid) as e:
        load_desired_state([tmp_path])
    [msg] = [str(d).replace(str(tmp_path) + "/", "") for d in e.value.diagnostics]
    assert msg == "b.yaml:1:1: site: also set in a.yaml:2:1; set it in one file"


def test_clients_from_several_files_are_concatenated(tmp_path):
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text("clients:\n  - {name: web9, address: 10.0.0.300}\n")
    with pytest.raises(DesiredStateInvalid) as e:
        load_desired_state([tmp_path])
    assert [str(d).replace(str(tmp_path) + "/", "") for d in e.value.diagnostics] == [
        "b.yaml:2:27: clients[1].address: '10.0.0.300' is not an IPv4 address"
    ]


def test_every_problem_is_reported_in_one_run(tmp_path):
    assert len(errors(tmp_path, BASE.replace("10.0.0.1}", "1.2.3}").replace("c1", "c 1") + "keys: {prune: maybe}\n")) == 3


def test_digest_ignores_access(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text(BASE)
    b = tmp_path / "b.yaml"
    b.write_text(BASE + "access: {user: admin, port: 2222}\n")
    assert load_desired_state([a]).digest() == load_desired_state([b]).digest()


def test_committed_schema_is_current():
    committed = (ROOT / "schemas/desired-state.schema.json").read_text()
    assert committed == schema_json(), "regenerate it: csync schema > schemas/desired-state.schema.json"


def test_validate_command_summary_and_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "reconciler.cli", "validate", "-f", str(ROOT / "desired-state/example")], capture_output=True, text=True)
    assert ok.returncode == 0 and "valid: site plant-north" in ok.stdout
    (tmp_path / "bad.yaml").write_text("version: 1\n")
    bad = subprocess.run([sys.executable, "-m", "reconciler.cli", "validate", "-f", str(tmp_path / "bad.yaml")], capture_output=True, text=True)
    assert bad.returncode == 3 and "bad.yaml:1:1: site: required field is missing" in bad.stderr and "Traceback" not in bad.stderr


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300) | yaml_values.map(repr))
def test_arbitrary_text_never_escapes_as_anything_but_a_validation_error(tmp_path, text):
    f = tmp_path / "fuzz.yaml"
    f.write_text(text)
    try:
        load_desired_state([f])
    except DesiredStateInvalid:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["site", "master.cluster", "clients[0].address", "keys.prune", "master.package.mount"]), yaml_values)
def test_arbitrary_values_in_fields_never_escape(tmp_path, field, value):
    import json

    text = BASE
    target = {"site": "site: lab", "master.cluster": "cluster: c1", "clients[0].address": "address: 10.0.0.21}",
              "keys.prune": None, "master.package.mount": "mount: /csync"}[field]
    rendered = json.dumps(value)
    if target is None:
        text += f"keys: {{prune: {rendered}}}\n"
    else:
        key = target.split(":")[0]
        text = text.replace(target, f"{key}: {rendered}" + ("}" if target.endswith("}") else ""))
    f = tmp_path / "fuzz.yaml"
    f.write_text(text)
    try:
        load_desired_state([f])
    except DesiredStateInvalid:
        pass
