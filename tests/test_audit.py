"""The workflow findings and quota arithmetic, on plain objects (no cluster needed)."""

from __future__ import annotations

import datetime
import decimal

import pytest

from stan_operator import audit
from stan_operator.checks import quantity

NOW = datetime.datetime(2026, 1, 15, 12, 0, tzinfo=datetime.UTC)


def task(name: str, **status: object) -> dict:
    return {"metadata": {"name": name}, "status": status}


def test_failed_and_overdue_tasks_are_found() -> None:
    found = audit.findings(
        audit.statuses(
            [
                task(
                    "fine",
                    status="active",
                    nextRunAt="2026-01-15T12:01:00Z",
                    recentRuns=[{"runId": "r1", "scheduledAt": "2026-01-15T11:59:00Z", "result": "succeeded"}],
                ),
                task(
                    "broken",
                    status="active",
                    recentRuns=[{"runId": "r2", "scheduledAt": "2026-01-15T11:59:00Z", "result": "failed"}],
                ),
                task("late", status="active", nextRunAt="2026-01-15T11:50:00Z"),
                task("slightly-late", status="active", nextRunAt="2026-01-15T11:59:00Z"),
                task("paused", status="paused", nextRunAt=None),
                {"metadata": {"name": "new"}},
            ]
        ),
        NOW,
    )
    assert (found.audited, found.failed, found.overdue) == (6, ("task_broken",), ("task_late",))
    assert found.summary() == "6 tasks audited; 1 failed: task_broken; 1 overdue: task_late"
    assert audit.findings({}, NOW).summary() == "All workflows healthy (0 tasks audited)"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", "10"),
        ("500m", "0.5"),
        ("2Gi", str(2 * 2**30)),
        ("1k", "1000"),
        ("1e3", "1000"),
        ("1.5M", "1500000"),
    ],
)
def test_quantities(text: str, value: str) -> None:
    assert quantity.parse(text) == decimal.Decimal(value)


def test_a_bad_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        quantity.parse("ten")


def test_a_summary_names_a_few_tasks_however_many_are_found() -> None:
    found = audit.Findings(audited=99, failed=(), overdue=tuple(f"task_{index}" for index in range(99)))
    assert found.summary() == "99 tasks audited; 99 overdue: task_0, task_1, task_2, task_3, task_4 and 94 more"
