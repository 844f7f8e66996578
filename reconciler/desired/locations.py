"""The part of the desired-state model behind a location in the YAML: which field, which
model, which YAML tags it accepts. The loader uses it to word its diagnostics."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from reconciler.desired.model import DesiredState
from reconciler.desired.values import Loc, show

# Suggestions for unknown fields and the choices of a discriminated union need the model a
# YAML mapping stands for: found by walking the model's annotations along the location.


def declared(loc: Loc, data: Any) -> tuple[Any, FieldInfo | None, Any]:
    """(the type declared for the value at ``loc``, the model field that declares it when
    ``loc`` ends at one, the value itself); the type is None where nothing is declared."""
    annotation: Any = DesiredState
    field: FieldInfo | None = None
    for part in loc:
        model = model_at(annotation, data, field)
        data = child(data, part)
        field = None
        if model is not None:
            field = model.model_fields.get(part) if isinstance(part, str) else None
            annotation = field.annotation if field else None
            continue
        annotation = unwrap(annotation)
        if get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None, None, data
    return annotation, field, data


def child(data: Any, part: str | int) -> Any:
    if isinstance(data, dict):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return None


def unwrap(annotation: Any) -> Any:
    """Annotated[X, ...] and X | None as X."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        present = [a for a in get_args(annotation) if a is not type(None)]
        if len(present) == 1:
            return unwrap(present[0])
    return annotation


def is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def model_at(annotation: Any, value: Any, field: FieldInfo | None) -> type[BaseModel] | None:
    """The model ``annotation`` stands for; a discriminated union's member is chosen by the
    tag in ``value``."""
    annotation = unwrap(annotation)
    if is_model(annotation):
        return annotation
    discriminator = field.discriminator if field else None
    if isinstance(discriminator, str) and isinstance(value, dict):
        for member in get_args(annotation):
            if is_model(member) and value.get(discriminator) in get_args(member.model_fields[discriminator].annotation):
                return member
    return None


def field_names(loc: Loc, data: Any) -> list[str]:
    """The fields of the mapping at ``loc``, in declaration order."""
    annotation, field, value = declared(loc, data)
    model = model_at(annotation, value, field)
    return list(model.model_fields) if model else []


def tags(field: FieldInfo | None) -> list[str]:
    """The values the discriminator of a discriminated-union field accepts."""
    if field is None or not isinstance(field.discriminator, str):
        return []
    members = [m for m in get_args(unwrap(field.annotation)) if is_model(m)]
    return [str(tag) for m in members for tag in get_args(m.model_fields[field.discriminator].annotation)]


def yaml_loc(loc: tuple[int | str, ...], data: Any) -> Loc:
    """pydantic's location as a path into the YAML: the tag pydantic inserts after a
    discriminated union (`master.serviceguard.cluster`) is dropped."""
    out: list[int | str] = []
    previous_was_tag = False
    for part in loc:
        if out and not previous_was_tag and part in tags(declared(tuple(out), data)[1]):
            previous_was_tag = True
            continue
        previous_was_tag = False
        out.append(part)
    return tuple(out)


def tag_problem(kind: str, loc: Loc, value: Any, data: Any) -> tuple[Loc, str]:
    """(path, message) of a discriminated union whose tag is missing or unknown."""
    field = declared(loc, data)[1]
    tag = field.discriminator if field and isinstance(field.discriminator, str) else "mode"
    choices = ", ".join(tags(field))
    if kind == "union_tag_not_found":
        return loc + (tag,), f"required field is missing; it must be one of: {choices}"
    return loc + (tag,), f"{show(value.get(tag) if isinstance(value, dict) else value)} is not allowed; must be one of: {choices}"
