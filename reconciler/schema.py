"""The JSON Schema of the desired state (`csync schema`)."""

from __future__ import annotations

import json

from reconciler.model import DesiredState


def desired_state_schema() -> dict:
    schema = DesiredState.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "csync/desired-state.schema.json", **schema}


def schema_json() -> str:
    return json.dumps(desired_state_schema(), indent=2) + "\n"
