"""What makes a StanTask spec acceptable, answered field by field.

One function serves the admission webhook (a refused ``kubectl apply``), the
operator (a Ready=False condition for objects that got in without the webhook)
and the REST facade (HTTP 422), so all three give the same reasons.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import pydantic

from stan_core import catalog, config, cron, models

log = logging.getLogger(__name__)
Spec = TypeVar("Spec", bound=models.Model)
Arguments = ParamSpec("Arguments")
PYDANTIC_VALUE_ERROR = "Value error, "
"""What pydantic puts before the message of a ValueError raised by a validator; the message alone is the reason."""


@dataclasses.dataclass(frozen=True)
class FieldError:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def describe(errors: list[FieldError]) -> str:
    return "; ".join(str(error) for error in errors)


def pydantic_errors(error: pydantic.ValidationError, prefix: str = "") -> list[FieldError]:
    return [
        FieldError(
            prefix + ".".join(str(part) for part in item["loc"]) or prefix.rstrip("."),
            item["msg"].removeprefix(PYDANTIC_VALUE_ERROR),
        )
        for item in error.errors()
    ]


def guarded(
    check: Callable[Arguments, tuple[Spec | None, list[FieldError]]], *args: Arguments.args, **kwargs: Arguments.kwargs
) -> tuple[Spec | None, list[FieldError]]:
    """``check(*args, **kwargs)``, with an exception from it answered as a refusal of the whole spec.

    The checks answer every input with reasons (tests/test_validation_properties.py drives them
    with generated input); this is for an input nobody foresaw, so that the operator marks such an
    object InvalidSpec and carries on instead of crashing its handler, and the webhook refuses it
    readably. The trace goes to the operator's log, not to the user."""
    try:
        return check(*args, **kwargs)
    except Exception:
        log.exception("checking a spec failed; the spec is refused")
        return None, [FieldError("spec", "could not be checked: an internal error, logged by the operator")]


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
    available = catalog.action_names(configuration)
    if spec.action not in available:
        errors.append(FieldError("action", f"unknown action {spec.action!r}; available: {', '.join(available)}"))
    model_ids = [model.id for model in configuration.modelCatalog]
    if model_ids and spec.modelId not in model_ids:
        errors.append(FieldError("modelId", f"unknown model {spec.modelId!r}; available: {', '.join(model_ids)}"))
    return (None if errors else spec), errors


def _checks(names: list[str]) -> str:
    return f"check{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"


def heartbeat_spec(raw: Any) -> tuple[models.StanHeartbeatSpec | None, list[FieldError]]:
    """The parsed heartbeat spec and every reason to refuse it."""
    try:
        spec = models.StanHeartbeatSpec.model_validate(raw)
    except pydantic.ValidationError as error:
        return None, pydantic_errors(error)
    errors = []
    available = catalog.check_names()
    unknown = list(dict.fromkeys(name for name in spec.checks if name not in available))
    if unknown:
        errors.append(FieldError("checks", f"unknown {_checks(unknown)}; available: {', '.join(available)}"))
    repeated = [name for name, count in collections.Counter(spec.checks).items() if count > 1]
    if repeated:
        errors.append(FieldError("checks", f"{_checks(repeated)} listed more than once; list each check once"))
    return (None if errors else spec), errors
