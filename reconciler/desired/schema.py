"""The JSON Schema of the desired state (`csync schema`), generated from the model.

`schemas/desired-state.schema.json` is exactly `schema_json()`; a test fails when the
committed file is out of date. Editors use it through the first line of each YAML file:
`# yaml-language-server: $schema=../schemas/desired-state.schema.json`. The schema
describes each field's shape; the cross-field rules (unique names and addresses,
references to declared hosts) are checked by `csync validate` alone.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.desired.model import DesiredState

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:csync:desired-state:1"
SCHEMA_TITLE = "csync desired state"


def desired_state_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a desired-state file, identifying keys first."""
    generated = DesiredState.model_json_schema()
    head = {"$schema": SCHEMA_DIALECT, "$id": SCHEMA_ID, "title": SCHEMA_TITLE}
    return head | {k: v for k, v in generated.items() if k not in head}


def schema_json() -> str:
    """`desired_state_schema()` as committed: JSON indented by 2, with a trailing newline."""
    return json.dumps(desired_state_schema(), indent=2, ensure_ascii=False) + "\n"
