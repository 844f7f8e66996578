"""Whatever a file holds, loading it gives a DesiredState or DesiredStateInvalid with
well-formed diagnostics: never a traceback, never another exception."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.desired.loader import DesiredStateInvalid, load_desired_state
from reconciler.desired.model import DesiredState

VALID: dict[str, Any] = {
    "version": 1,
    "site": "lab",
    "master": {
        "mode": "serviceguard",
        "cluster": "c1",
        "package": {"name": "csync", "address": "10.0.0.10", "mount": "/csync", "node": "node1"},
        "members": [{"name": "node1", "address": "10.0.0.1"}, {"name": "node2", "address": "10.0.0.2"}],
    },
    "clients": [{"name": "web1", "address": "10.0.0.21"}, {"name": "web2", "address": "10.0.0.22"}],
    "keys": {"distribution": "copy", "cfrun": "all-members", "prune": True},
    "access": {"user": "root", "port": 22, "connect_timeout": 10, "identity_file": "k", "hosts": {"web1": {"port": 2222}}},
    "paths": {"wizard": "/opt/dsau/sbin/csync_wizard"},
}

FIELDS: list[tuple[str | int, ...]] = [
    ("version",),
    ("site",),
    ("master",),
    ("master", "mode"),
    ("master", "cluster"),
    ("master", "package"),
    ("master", "package", "name"),
    ("master", "package", "address"),
    ("master", "package", "mount"),
    ("master", "package", "node"),
    ("master", "members"),
    ("master", "members", 0),
    ("master", "members", 1, "name"),
    ("master", "members", 1, "address"),
    ("clients",),
    ("clients", 0),
    ("clients", 1, "name"),
    ("clients", 0, "address"),
    ("keys",),
    ("keys", "prune"),
    ("keys", "distribution"),
    ("access",),
    ("access", "port"),
    ("access", "connect_timeout"),
    ("access", "identity_file"),
    ("access", "hosts"),
    ("access", "hosts", "web1"),
    ("access", "hosts", "web1", "port"),
    ("paths", "wizard"),
    ("extra",),
    ("master", "extra"),
]

# Values that collide with the valid document's, so that cross-field rules are exercised.
NEAR_MISSES = st.sampled_from(
    [
        "10.0.0.1",
        "10.0.0.10",
        "10.0.0.21",
        "node1",
        "NODE2",
        "web1",
        "standalone",
        "serviceguard",
        "/csync",
        "/",
        "",
        "-",
        "~",
        "010.0.0.1",
        "10.0.0.256",
        "wеb1",
        "a;b",
        "../x",
        "1",
        "yes",
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.dates() | NEAR_MISSES
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | NEAR_MISSES, inner, max_size=4),
    max_leaves=12,
)
# Text made of YAML's own punctuation reaches the parser's corners that random text does not.
YAMLISH = st.text(alphabet="{}[]:,-&*!?|>'\"#%@` \n\tav01.~\\", max_size=120)
FUZZ = settings(max_examples=200, deadline=None)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "site.yaml"


def dump(data: Any) -> str:
    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, out)
    return out.getvalue()


def assert_loads_or_reports(path: Path) -> None:
    try:
        assert isinstance(load_desired_state([path]), DesiredState)
    except DesiredStateInvalid as error:
        assert error.diagnostics
        for d in error.diagnostics:
            assert d.file == str(path) and d.message and "\n" not in str(d)
            assert d.line is None or (d.line >= 1 and d.column >= 1)


def put(document: dict, loc: tuple[str | int, ...], value: Any) -> None:
    node = document
    for part in loc[:-1]:
        node = node[part]
    node[loc[-1]] = value


@FUZZ
@given(st.text(max_size=400) | YAMLISH)
def test_arbitrary_text(scratch, text):
    scratch.write_text(text, encoding="utf-8")
    assert_loads_or_reports(scratch)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(scratch, raw):
    scratch.write_bytes(raw)
    assert_loads_or_reports(scratch)


@FUZZ
@given(VALUES)
def test_arbitrary_yaml_documents(scratch, data):
    scratch.write_text(dump(data), encoding="utf-8")
    assert_loads_or_reports(scratch)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3))
def test_arbitrary_values_in_the_fields_of_a_valid_document(scratch, changes):
    document = copy.deepcopy(VALID)
    for loc, value in changes:
        try:
            put(document, loc, value)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier change replaced the parent of this field
    scratch.write_text(dump(document), encoding="utf-8")
    assert_loads_or_reports(scratch)


def test_the_valid_document_is_valid(scratch):
    scratch.write_text(dump(VALID), encoding="utf-8")
    assert load_desired_state([scratch]).site == "lab"
