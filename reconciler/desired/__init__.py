"""The desired state: pydantic model, YAML loader with file:line diagnostics, JSON Schema."""
