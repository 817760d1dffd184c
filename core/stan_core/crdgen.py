"""Generate the CRDs in ``crds/`` from the pydantic models.

Pydantic's JSON Schema is close to what Kubernetes wants but not the same:
structural schemas forbid ``$ref`` and ``anyOf`` with null, and titles are
noise in ``kubectl explain``. This module inlines references, turns optional
fields into ``nullable``, and drops what Kubernetes does not accept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stan_core import models

_DROPPED_KEYS = {"title"}


def inline_references(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with each ``$ref`` replaced by its definition and no ``$defs``: neither a
    structural schema nor a subtree pasted into another document (the chart's values schema)
    can point into pydantic's ``$defs``. Keys beside a ``$ref`` (a field's description) win."""
    definitions = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            return inline({**target, **{k: v for k, v in node.items() if k != "$ref"}})
        return {key: inline(value) for key, value in node.items() if key != "$defs"}

    inlined: dict[str, Any] = inline(schema)
    return inlined


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "anyOf" in node:
        variants = [variant for variant in node["anyOf"] if variant.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(variants) == 1 and len(variants) < len(node["anyOf"]):
            merged = {**_structural(variants[0]), **_structural(rest), "nullable": True}
            if merged.get("default", ...) is None:
                del merged["default"]
            return merged
    schema = {key: _structural(value) for key, value in node.items() if key not in _DROPPED_KEYS}
    if "enum" in schema and "type" not in schema:
        schema["type"] = "string"
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", None)
        schema.pop("additionalProperties")
    return schema


def schema_of(model: type[models.Model]) -> dict[str, Any]:
    schema: dict[str, Any] = _structural(inline_references(model.model_json_schema(by_alias=True)))
    return schema


_SURFACE_KEYS = ("type", "description", "nullable", "format", "enum")


def status_schema_of(model: type[models.Model]) -> dict[str, Any]:
    """Status as ``kubectl explain`` shows it, one level deep: every field with its type and description,
    and inside an object (or a list of objects) whatever the operator stored.

    The operator alone writes status, from the models this schema comes from. The API server walks a
    full schema on every status write, to coerce, prune and validate it, for checks the models have
    already made; at thousands of claims a tick that is a large share of its CPU (bench/README.md)."""
    schema = schema_of(model)
    return {**schema, "properties": {name: _surface(field) for name, field in schema["properties"].items()}}


def _surface(field: dict[str, Any]) -> dict[str, Any]:
    surface = {key: field[key] for key in _SURFACE_KEYS if key in field}
    if field.get("type") == "object":
        surface["x-kubernetes-preserve-unknown-fields"] = True
    elif field.get("type") == "array":
        surface["items"] = _surface(field["items"])
    return surface


def crd(resource: models.Resource) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": list(resource.short_names),
                "categories": ["stan"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [column.to_crd() for column in resource.columns],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": resource.spec.__doc__ or f"{resource.kind} is a Stan resource.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": schema_of(resource.spec),
                                "status": status_schema_of(resource.status),
                            },
                        }
                    },
                }
            ],
        },
    }


def render(resource: models.Resource) -> str:
    header = "# Generated from stan_core.models by `stan generate`; do not edit.\n"
    return header + yaml.safe_dump(crd(resource), sort_keys=False, width=120)


def crd_path(directory: Path, resource: models.Resource) -> Path:
    return directory / f"{resource.crd_name}.yaml"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for resource in models.RESOURCES:
        path = crd_path(directory, resource)
        path.write_text(render(resource))
        written.append(path)
    return written
