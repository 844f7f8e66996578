"""The JSON Schema: committed, current, and describing what the loader accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.desired.schema import SCHEMA_DIALECT, desired_state_schema, schema_json

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "schemas/desired-state.schema.json"


def test_committed_schema_is_current():
    assert COMMITTED.read_text() == schema_json(), (
        "schemas/desired-state.schema.json is out of date; regenerate it: csync schema > schemas/desired-state.schema.json"
    )


def test_schema_json_is_the_schema_indented_with_a_trailing_newline():
    text = schema_json()
    assert text.endswith("}\n") and json.loads(text) == desired_state_schema() and text.startswith('{\n  "$schema"')


def test_schema_identifies_itself_first():
    schema = desired_state_schema()
    assert list(schema)[:3] == ["$schema", "$id", "title"] and schema["$schema"] == SCHEMA_DIALECT


def test_schema_requires_what_the_model_requires():
    schema = desired_state_schema()
    assert schema["required"] == ["version", "site", "master"] and schema["additionalProperties"] is False
    assert schema["properties"]["version"]["const"] == 1
    assert schema["$defs"]["Host"]["properties"]["address"]["format"] == "ipv4"
    assert set(schema["properties"]["master"]["discriminator"]["mapping"]) == {"serviceguard", "standalone"}


def test_every_property_is_described():
    schema = desired_state_schema()
    models = [schema, *schema["$defs"].values()]
    undescribed = [name for m in models for name, p in m.get("properties", {}).items() if not p.get("description")]
    assert undescribed == []


def test_every_example_file_points_editors_at_the_schema():
    for file in sorted((ROOT / "desired-state/example").glob("*.yaml")):
        assert file.read_text().splitlines()[0] == "# yaml-language-server: $schema=../../schemas/desired-state.schema.json", file.name


def test_the_example_site_satisfies_the_schema_and_a_broken_one_does_not():
    jsonschema = pytest.importorskip("jsonschema")
    from ruamel.yaml import YAML

    merged: dict = {}
    for file in sorted((ROOT / "desired-state/example").glob("*.yaml")):
        for key, value in YAML(typ="safe", pure=True).load(file).items():
            merged[key] = merged.get(key, []) + value if key == "clients" else value
    validator = jsonschema.Draft202012Validator(desired_state_schema(), format_checker=jsonschema.FormatChecker())
    assert list(validator.iter_errors(merged)) == []
    broken = merged | {"site": "plant north", "clients": [{"name": "web1", "address": "10.0.0.300"}]}
    assert sorted(e.json_path for e in validator.iter_errors(broken)) == ["$.clients[0].address", "$.site"]
