"""What makes a StanTask spec acceptable, answered field by field.

One function serves the admission webhook (a refused ``kubectl apply``), the
operator (a Ready=False condition for objects that got in without the webhook)
and the REST facade (HTTP 422), so all three give the same reasons.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import pydantic

from stan_operator import config, cron, models
from stan_operator.actions import registry
from stan_operator.checks import registry as checks_registry


@dataclasses.dataclass(frozen=True)
class FieldError:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def describe(errors: list[FieldError]) -> str:
    return "; ".join(str(error) for error in errors)


def pydantic_errors(error: pydantic.ValidationError, prefix: str = "") -> list[FieldError]:
    return [FieldError(prefix + ".".join(str(part) for part in item["loc"]) or prefix.rstrip("."), item["msg"])
            for item in error.errors()]


def task_spec(raw: Any, configuration: config.OperatorConfig) -> tuple[models.StanTaskSpec | None, list[FieldError]]:
    """The parsed spec and every reason to refuse it (empty when it is acceptable)."""
    try:
        spec = models.StanTaskSpec.model_validate(raw)
    except pydantic.ValidationError as error:
        return None, pydantic_errors(error)
    errors = []
    if not spec.name.strip():
        errors.append(FieldError("name", "must not be blank"))
    time_zone = spec.timeZone
    try:
        cron.zone(time_zone)
    except cron.ScheduleError as error:
        errors.append(FieldError(error.field, error.reason))
        time_zone = "UTC"
    try:
        cron.validate(spec.schedule, time_zone, allow_seconds=configuration.allowSecondSchedules)
    except cron.ScheduleError as error:
        errors.append(FieldError(error.field, error.reason))
    available = registry.names(configuration)
    if spec.action not in available:
        errors.append(FieldError("action", f"unknown action {spec.action!r}; available: {', '.join(available)}"))
    catalog = [model.id for model in configuration.modelCatalog]
    if catalog and spec.modelId not in catalog:
        errors.append(FieldError("modelId", f"unknown model {spec.modelId!r}; available: {', '.join(catalog)}"))
    return (None if errors else spec), errors


def heartbeat_spec(raw: Any) -> tuple[models.StanHeartbeatSpec | None, list[FieldError]]:
    """The parsed heartbeat spec and every reason to refuse it."""
    try:
        spec = models.StanHeartbeatSpec.model_validate(raw)
    except pydantic.ValidationError as error:
        return None, pydantic_errors(error)
    available = checks_registry.names()
    unknown = [name for name in spec.checks if name not in available]
    if unknown:
        return None, [FieldError("checks", f"unknown check{'s' if len(unknown) > 1 else ''} "
                                           f"{', '.join(map(repr, unknown))}; available: {', '.join(available)}")]
    return spec, []
