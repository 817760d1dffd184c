"""The committed CRDs are exactly what the models generate."""

from __future__ import annotations

from pathlib import Path

from stan_core import crdgen, models

CRDS = Path(__file__).resolve().parent.parent / "crds"


def test_committed_crds_match_the_models() -> None:
    for resource in models.RESOURCES:
        committed = crdgen.crd_path(CRDS, resource).read_text()
        assert committed == crdgen.render(resource), (
            f"{resource.crd_name} drifted from stan_core.models; run `make generate` and commit the result"
        )


def test_schemas_are_structural() -> None:
    """No $ref, anyOf or titles: Kubernetes refuses or ignores them."""

    def walk(node: object) -> None:
        if isinstance(node, dict):
            assert not {"$ref", "anyOf", "allOf", "title", "$defs"} & node.keys(), node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for resource in models.RESOURCES:
        walk(crdgen.crd(resource))
