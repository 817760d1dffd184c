"""What makes a StanTask spec acceptable, answered field by field.

One function serves the admission webhook (a refused ``kubectl apply``), the
operator (a Ready=False condition for objects that got in without the webhook)
and the REST facade (HTTP 422), so all three give the same reasons.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import pydantic

from stan_core import catalog, config, cron, models, schedule

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
    else:
        errors += _window(spec, time_zone, configuration)
    available = catalog.action_names(configuration)
    if spec.action not in available:
        errors.append(FieldError("action", f"unknown action {spec.action!r}; available: {', '.join(available)}"))
    model_ids = [model.id for model in configuration.modelCatalog]
    if model_ids and spec.modelId not in model_ids:
        errors.append(FieldError("modelId", f"unknown model {spec.modelId!r}; available: {', '.join(model_ids)}"))
    for field, streak in (("failureThreshold", spec.failureThreshold), ("pauseAfterFailures", spec.pauseAfterFailures)):
        if streak is not None and streak > spec.runHistoryLimit:
            errors.append(
                FieldError(
                    field,
                    f"must be at most runHistoryLimit ({spec.runHistoryLimit}): the streak is counted in the runs "
                    "status keeps",
                )
            )
    errors += _destinations(spec, configuration)
    return (None if errors else spec), errors


def _window(spec: models.StanTaskSpec, time_zone: str, configuration: config.OperatorConfig) -> list[FieldError]:
    """A window that is empty, or holds no tick of the schedule, would make a task that never runs."""
    if spec.startAt is None or spec.endAt is None:
        return []
    if spec.endAt <= spec.startAt:
        return [FieldError("endAt", "must be after startAt")]
    plan = schedule.Schedule(
        spec.schedule, time_zone, configuration.allowSecondSchedules, start_at=spec.startAt, end_at=spec.endAt
    )
    if plan.after(spec.startAt - datetime.timedelta(microseconds=1)) is None:
        return [FieldError("endAt", "the schedule has no tick between startAt and endAt")]
    return []


def destination_refusal(url: str, allowlist: list[str]) -> str | None:
    """Why the operator may not send to ``url``, or None when the allowlist names it.

    An entry without ``://`` is a host, optionally with a port (``hooks.slack.com``, ``10.0.0.5:8080``);
    one with it is a URL prefix, matched by scheme, host, port and leading path segments, so that the
    prefix ``https://hooks.example.com/stan`` admits neither ``https://hooks.example.com.evil.net/`` nor
    ``https://hooks.example.com/stanley``."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"is not a URL: {error}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http or https URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials before its host"
    if not any(_admits(entry, parts, port) for entry in allowlist):
        named = ", ".join(allowlist) if allowlist else "nothing (notificationAllowlist is empty)"
        return f"is not in the operator's notificationAllowlist, which admits {named}"
    return None


def _admits(entry: str, url: urllib.parse.SplitResult, port: int | None) -> bool:
    if "://" not in entry:
        host, _, entry_port = entry.lower().partition(":")
        return url.hostname == host and (not entry_port or entry_port == str(_effective_port(url.scheme, port)))
    prefix = urllib.parse.urlsplit(entry)
    try:
        prefix_port = prefix.port
    except ValueError:
        return False
    path = prefix.path
    return (
        url.scheme == prefix.scheme.lower()
        and url.hostname == (prefix.hostname or "")
        and _effective_port(url.scheme, port) == _effective_port(prefix.scheme.lower(), prefix_port)
        and (path in ("", "/") or url.path == path or url.path.startswith(path if path.endswith("/") else path + "/"))
    )


def _effective_port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)


def _destinations(spec: models.Notifying, configuration: config.OperatorConfig) -> list[FieldError]:
    """The inline URLs the allowlist does not admit; a URL in a Secret is checked when sending."""
    return [
        FieldError(f"notify.{index}.url", reason)
        for index, target in enumerate(spec.notify)
        if target.url is not None
        and (reason := destination_refusal(target.url, configuration.notificationAllowlist)) is not None
    ]


def _checks(names: list[str]) -> str:
    return f"check{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"


def heartbeat_spec(
    raw: Any, configuration: config.OperatorConfig
) -> tuple[models.StanHeartbeatSpec | None, list[FieldError]]:
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
    errors += _destinations(spec, configuration)
    return (None if errors else spec), errors
