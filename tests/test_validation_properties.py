"""Validation is total: every entry point answers any input with its validation error, nothing else.

Generated cron strings, time zones (folders of the tz database and path-like strings among them)
and names (any Unicode, control characters included) go through the facade's request schemas and
domain validation, the admission webhook's handlers and the operator's checks. A crash in any of
them would be a 500 from the facade, a refusal showing internals from the webhook, or a task the
operator neither schedules nor marks InvalidSpec.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
import zoneinfo
from collections.abc import Callable, Coroutine
from typing import Any

import kopf
import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stan_api import schemas, tasks
from stan_api.facade import Invalid
from stan_core import catalog, config, validation
from stan_operator import handlers

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIGURATIONS = (
    config.OperatorConfig(),
    config.OperatorConfig.model_validate(
        {
            "allowSecondSchedules": True,
            "modelCatalog": [{"id": "model_abc123"}],
            "jobActions": {"render_report": {"image": "registry.invalid/report:1"}},
            "notificationAllowlist": ["hooks.example.com", "https://example.org/stan/", "127.0.0.1:8080"],
        }
    ),
)
ZONES = sorted(zoneinfo.available_timezones())
FOLDERS = sorted({zone.rsplit("/", 1)[0] for zone in ZONES if "/" in zone} - set(ZONES))
INTERNALS = ("zoneinfo/", "site-packages", "Errno", "Traceback")
"""Signs of an internal error in a message: a file path of the tz database or of Python, an OSError, a trace."""

any_unicode = st.characters(exclude_categories=())
"""Every code point, control characters and lone surrogates included."""
cron_fields = st.sampled_from(
    [
        "*",
        "0",
        "59",
        "60",
        "-1",
        "1-5",
        "5-1",
        "*/0",
        "*/15",
        "1,2",
        "L",
        "15W",
        "5#3",
        "?",
        "H",
        "JAN",
        "mon-fri",
        "7",
        "99999999999999999999",
        "½",
        "٣",
        "--",
        ",,",
    ]
)
schedules = st.one_of(
    st.lists(cron_fields | st.text(alphabet="0123456789*/-,LW#?H", min_size=1, max_size=6), min_size=1, max_size=7).map(
        " ".join
    ),
    st.text(any_unicode, max_size=40),
)
zones = st.one_of(
    st.sampled_from(ZONES),
    st.sampled_from(FOLDERS),
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "/",
            "../etc/passwd",
            "/etc/localtime",
            "/usr/share/zoneinfo/UTC",
            "Europe/../UTC",
            "Europe//Berlin",
            "Europe/",
            "/Europe/Berlin",
            "UTC\x00",
            "__pycache__",
            "posixrules",
            "right/UTC",
            "zone.tab",
            "C:\\Windows",
            "x" * 255,
        ]
    ),
    st.builds(
        "/".join, st.lists(st.sampled_from(FOLDERS) | st.text(alphabet="AEUaeu._-+ \x00", max_size=8), max_size=4)
    ),
    st.text(any_unicode, max_size=300),
)
names = st.text(any_unicode, max_size=300) | st.sampled_from(["\x1b[31mred", "a\u202eb", "line\nbreak", "   ", "\x00"])
odd_values = st.none() | st.integers() | st.booleans() | st.lists(st.integers(), max_size=2)
urls = st.sampled_from(
    [
        "https://hooks.example.com/x",
        "https://hooks.example.com.evil.net/",
        "https://example.org/stanley",
        "https://example.org/stan/hook",
        "http://127.0.0.1:8080/",
        "http://user@hooks.example.com/",
        "http://[::1",
        "http://h:99999/",
        "ftp://hooks.example.com/",
        "",
    ]
) | st.text(any_unicode, max_size=100)
secret_refs = st.fixed_dictionaries({}, optional={"name": names, "key": names}) | odd_values
notify_targets = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["webhook", "slack"]) | names,
        "url": urls | odd_values,
        "urlFrom": st.fixed_dictionaries({}, optional={"secretKeyRef": secret_refs}) | odd_values,
        "signingSecretRef": secret_refs,
    },
)
notify_lists = st.lists(notify_targets, max_size=12) | odd_values


def _varied(baseline: dict, fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict]:
    """Specs that differ from an acceptable ``baseline``: half in one field, so that the checks
    behind the schema (time zone, cron, action, catalog) are reached; half in any of them, values
    of the wrong type and missing fields included."""
    one = st.sampled_from(sorted(fields)).flatmap(lambda key: fields[key].map(lambda value: {**baseline, key: value}))
    anything = {
        key: (st.just(baseline[key]) | values if key in baseline else values) | odd_values
        for key, values in fields.items()
    }
    return one | st.fixed_dictionaries({}, optional=anything)


TASK = {"name": "Nightly", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "model_abc123"}
task_specs = _varied(
    TASK,
    {
        "name": names,
        "action": names,
        "schedule": schedules,
        "modelId": names,
        "timeZone": zones,
        "paused": st.booleans(),
        "concurrencyPolicy": st.sampled_from(["Allow", "Forbid", "Replace"]) | names,
        "startingDeadlineSeconds": st.integers(-10, 100_000),
        "runHistoryLimit": st.integers(-1, 200),
        "notify": notify_lists,
        "failureThreshold": st.integers(-1, 200),
        "deadManGraceSeconds": st.integers(-1, 10_000_000) | st.none(),
        "repeatIntervalSeconds": st.integers(-1, 1_000_000) | st.none(),
    },
)
heartbeat_specs = _varied(
    {"checks": ["workflows"]},
    {
        "enabled": st.booleans(),
        "intervalMinutes": st.integers(-10, 20_000),
        "checks": st.lists(st.sampled_from(catalog.check_names()) | names, max_size=70),
        "notify": notify_lists,
        "repeatIntervalSeconds": st.integers(-1, 1_000_000) | st.none(),
    },
)
configurations = st.sampled_from(CONFIGURATIONS)


def _reported_zones(test: Callable[..., None]) -> Callable[..., None]:
    """The zones that found the crash (folders of the time zone database), tried on every run."""
    for zone in ("America", "Asia", "Europe", "Etc", "America/Argentina"):
        test = example({**TASK, "timeZone": zone}, CONFIGURATIONS[0])(test)
    return test


def _shows_internals(message: str, given: object) -> bool:
    """Whether ``message`` shows an internal error; a refusal may quote the input, whatever it holds."""
    return any(internal in message and internal not in str(given) for internal in INTERNALS)


def _readable(errors: list[validation.FieldError], given: object) -> None:
    """The errors of a refusal of ``given``: a field and a reason each, said for people."""
    assert errors
    for error in errors:
        assert isinstance(error, validation.FieldError)
        assert error.field and error.reason
        assert not error.reason.startswith(validation.PYDANTIC_VALUE_ERROR)
        assert not _shows_internals(error.reason, given), error


def _accepted_or_refused(raw: dict, answer: tuple[pydantic.BaseModel | None, list[validation.FieldError]]) -> None:
    spec, errors = answer
    if spec is None:
        _readable(errors, raw)
    else:
        assert errors == []


@EXAMPLES
@given(task_specs, configurations)
@_reported_zones
def test_the_operators_task_check_answers_every_spec(raw: dict, configuration: config.OperatorConfig) -> None:
    _accepted_or_refused(raw, validation.task_spec(raw, configuration))


@EXAMPLES
@given(heartbeat_specs, configurations)
def test_the_operators_heartbeat_check_answers_every_spec(raw: dict, configuration: config.OperatorConfig) -> None:
    _accepted_or_refused(raw, validation.heartbeat_spec(raw, configuration))


@EXAMPLES
@given(task_specs, configurations)
@_reported_zones
def test_the_facades_task_validation_raises_only_invalid(raw: dict, configuration: config.OperatorConfig) -> None:
    facade: Any = types.SimpleNamespace(configuration=configuration)
    try:
        tasks._validated(facade, raw)
    except Invalid as invalid:
        _readable(invalid.errors, raw)


def _schema_answers(schema: type[pydantic.BaseModel], body: dict) -> None:
    with contextlib.suppress(pydantic.ValidationError):
        schema.model_validate(body)


@EXAMPLES
@given(task_specs)
def test_the_facades_task_schemas_raise_only_validation_errors(body: dict) -> None:
    _schema_answers(schemas.TaskCreate, body)
    _schema_answers(schemas.TaskUpdate, body)


@EXAMPLES
@given(heartbeat_specs)
def test_the_facades_heartbeat_schema_raises_only_validation_errors(body: dict) -> None:
    _schema_answers(schemas.HeartbeatUpdate, body)


def _admission(review: Coroutine[Any, Any, None], raw: dict) -> None:
    """Run a webhook handler to its answer: acceptance, or a refusal that shows no internals."""
    try:
        asyncio.run(review)
    except kopf.AdmissionError as refusal:
        answer = str(refusal)
    else:
        return
    assert not _shows_internals(answer, raw), answer


@EXAMPLES
@given(task_specs, configurations)
@_reported_zones
def test_the_task_webhook_raises_only_admission_errors(raw: dict, configuration: config.OperatorConfig) -> None:
    memo = kopf.Memo()
    memo.config = configuration
    _admission(handlers.validate_task(spec=raw, memo=memo), raw)


@EXAMPLES
@given(heartbeat_specs, configurations)
def test_the_heartbeat_webhook_raises_only_admission_errors(raw: dict, configuration: config.OperatorConfig) -> None:
    memo = kopf.Memo()
    memo.config = configuration
    _admission(handlers.validate_heartbeat(spec=raw, memo=memo), raw)


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_folder_of_the_time_zone_database_is_refused_as_a_time_zone(folder: str) -> None:
    _, errors = validation.task_spec(
        {"name": "n", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "m", "timeZone": folder},
        CONFIGURATIONS[0],
    )
    assert [error.field for error in errors] == ["timeZone"]
    assert f"{folder!r} is a group of time zones, not a zone" in errors[0].reason


def test_a_repeated_check_is_refused_by_name() -> None:
    _, errors = validation.heartbeat_spec({"checks": ["workflows", "credits", "workflows"]}, CONFIGURATIONS[0])
    assert errors == [validation.FieldError("checks", "check 'workflows' listed more than once; list each check once")]


def test_a_refused_control_character_reads_without_pydantics_prefix() -> None:
    _, errors = validation.heartbeat_spec({"checks": ["work\x1bflows"]}, CONFIGURATIONS[0])
    assert errors == [
        validation.FieldError(
            "checks.0", "must not contain control or bidirectional-override characters (U+001B at position 4)"
        )
    ]


def test_an_unforeseen_exception_while_checking_is_a_refusal_of_the_spec() -> None:
    def broken(raw: dict) -> tuple[None, list[validation.FieldError]]:
        raise IsADirectoryError(21, "Is a directory", "/usr/share/zoneinfo/America")

    spec, errors = validation.guarded(broken, {})
    assert spec is None
    _readable(errors, {})
    assert [error.field for error in errors] == ["spec"]
