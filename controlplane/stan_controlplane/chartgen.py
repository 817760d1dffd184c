"""Generate the Helm chart's operator configuration, defaults and schema, from ``OperatorConfig``.

A default written in two places drifts: the chart once shipped heartbeat ``checks: []``
while the operator's default ran three checks, so tenants onboarded on a Helm install got
a heartbeat that checked nothing. So, as the CRDs come from the resource models, the
``config:`` block of ``values.yaml`` (each field's description as its comment) and
``properties.config`` of ``values.schema.json`` come from the configuration model, and a
test fails when either differs from what this module writes.
"""

from __future__ import annotations

import json
import re
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from stan_core import config, crdgen

WIDTH = 100
"""Comments in values.yaml wrap here; values.schema.json keeps a value on one line while it fits."""

CONFIG_DESCRIPTION = (
    "The operator configuration (STAN_CONFIG), rendered into a ConfigMap. Generated from "
    "stan_core.config.OperatorConfig by `stan generate`."
)

_CONFIG_BLOCK = re.compile(r"^config:.*\n(?: .*\n)*", re.MULTILINE)
"""The top-level ``config:`` key of values.yaml and every indented line under it."""


def _for_helm(node: Any) -> Any:
    """Pydantic's JSON Schema as a values schema: without titles, descriptions on one line, an
    optional T as ``type: [T, "null"]``, and every object with named fields refusing other keys,
    so that a typo fails the install (the operator itself ignores unknown keys)."""
    if isinstance(node, list):
        return [_for_helm(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {
        key: {name: _for_helm(field) for name, field in value.items()} if key == "properties" else _for_helm(value)
        for key, value in node.items()
        if key != "title"
    }
    description = schema.get("description")
    if isinstance(description, str):
        schema["description"] = " ".join(description.split())
    variants = schema.get("anyOf", [])
    others = [variant for variant in variants if variant != {"type": "null"}]
    if len(variants) == 2 and len(others) == 1 and isinstance(others[0].get("type"), str):
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        schema = {**others[0], **rest, "type": [others[0]["type"], "null"]}
    if "properties" in schema:
        schema["additionalProperties"] = False
    return schema


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the chart's ``config`` value."""
    raw = config.OperatorConfig.model_json_schema(by_alias=True)
    return {"description": CONFIG_DESCRIPTION, **_for_helm(crdgen.inline_references(raw))}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or its list's items or its map's values."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _flow(value: Any) -> str:
    """A value as YAML on one line."""
    return yaml.safe_dump(value, default_flow_style=True, width=float("inf"), sort_keys=False).splitlines()[0]


def _comment(text: str, indent: str, hanging: str = "") -> list[str]:
    return [
        f"{indent}# {line}"
        for line in textwrap.wrap(text, WIDTH - len(indent) - 2, subsequent_indent=hanging, break_on_hyphens=False)
    ]


def _field_comment(field: FieldInfo, indent: str) -> list[str]:
    """The field's description (else its model's docstring); for a list or map of a model, also
    each field an entry has, since the default shows none of them."""
    nested = _model_in(field.annotation)
    text = field.description or (nested.__doc__ if nested else None)
    lines = _comment(" ".join(text.split()), indent) if text else []
    if nested is None or nested is field.annotation:
        return lines
    lines.append(f"{indent}# Each entry:")
    for name, item in nested.model_fields.items():
        default = (
            "Required." if item.is_required() else f"Default: {_flow(item.get_default(call_default_factory=True))}."
        )
        text = " ".join(part for part in (item.description, default) if part)
        lines += _comment(f"  {item.alias or name}: {text}", indent, hanging="    ")
    return lines


def _values_lines(model: type[BaseModel], values: dict[str, Any], indent: str) -> list[str]:
    lines: list[str] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        lines += _field_comment(field, indent)
        nested = _model_in(field.annotation)
        if nested is field.annotation and nested is not None:
            lines.append(f"{indent}{key}:")
            lines += _values_lines(nested, values[key], indent + "  ")
        else:
            lines.append(f"{indent}{key}: {_flow(values[key])}")
    return lines


def config_values() -> str:
    """The ``config:`` block of values.yaml: every default of the model, each with its description."""
    defaults = config.OperatorConfig().model_dump(mode="json", by_alias=True)
    return "\n".join(["config:", *_values_lines(config.OperatorConfig, defaults, "  ")]) + "\n"


def with_config_values(values_yaml: str) -> str:
    """values.yaml with its ``config:`` block generated; the rest is written by hand."""
    updated, found = _CONFIG_BLOCK.subn(lambda _: config_values(), values_yaml, count=1)
    if not found:
        raise ValueError("values.yaml has no top-level `config:` key to generate")
    return updated


def _json(value: Any, indent: int = 0, prefix: int = 0) -> str:
    """JSON that keeps each value on one line while it fits, as people write a schema."""
    flat = json.dumps(value, ensure_ascii=False)
    if not value or not isinstance(value, (dict, list)) or indent + prefix + len(flat) < WIDTH:
        return flat
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(key)}: {_json(item, indent + 2, len(key) + 4)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return "[\n" + ",\n".join(inner + _json(item, indent + 2) for item in value) + "\n" + " " * indent + "]"


def with_config_schema(schema_json: str) -> str:
    """values.schema.json with ``properties.config`` generated; the rest is written by hand."""
    schema = json.loads(schema_json)
    schema["properties"]["config"] = config_schema()
    return _json(schema) + "\n"


GENERATED: dict[str, Callable[[str], str]] = {
    "values.yaml": with_config_values,
    "values.schema.json": with_config_schema,
}
"""Each generated chart file and how its generated part is written into the file's current text."""


def write(chart: Path) -> list[Path]:
    written = []
    for name, generate in GENERATED.items():
        path = chart / name
        path.write_text(generate(path.read_text()))
        written.append(path)
    return written
