"""What is notified, decided from status alone: the rules behind tests/test_notifications.py, on chosen
instants, and the allowlist's matching."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest

from stan_core import models, validation
from stan_operator import notifications

UTC = datetime.UTC
T0 = datetime.datetime(2025, 2, 15, 9, 0, tzinfo=UTC)
UID = "0b6f5c1e-uid"
HOOK = {"url": "https://hooks.example.com/x"}


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def _run(second: int, result: str) -> models.Run:
    return models.Run(
        runId=f"run_{second}",
        scheduledAt=_at(second),
        startedAt=_at(second),
        finishedAt=_at(second + 0.5),
        result=result,
    )


def _spec(**fields: object) -> models.StanTaskSpec:
    return models.StanTaskSpec.model_validate(
        {"name": "n", "action": "audit_workflows", "schedule": "* * * * *", "modelId": "m", "notify": [HOOK], **fields}
    )


def _decide(
    spec: models.StanTaskSpec, runs: list[models.Run], state: models.NotificationState | None = None, now: float = 100
) -> notifications.Decision:
    status = models.StanTaskStatus(recentRuns=list(reversed(runs)), notifications=state or models.NotificationState())
    return notifications.decide_for_task(
        UID, spec, status, T0, _at(now), lambda moment: moment + datetime.timedelta(seconds=60)
    )


def test_the_threshold_th_failure_opens_the_alert_once_and_a_success_closes_it() -> None:
    spec = _spec(failureThreshold=3)
    runs = [_run(1, "succeeded"), _run(2, "failed"), _run(3, "failed")]
    assert _decide(spec, runs)[1] == []
    runs.append(_run(4, "skipped"))
    runs.append(_run(5, "failed"))
    state, sent = _decide(spec, runs)
    assert [(n.event, n.run.runId if n.run else None) for n in sent] == [("task.failing", "run_5")]
    assert (state.alert, state.alertSince) == ("failing", _at(5.5))
    runs.append(_run(6, "failed"))
    assert _decide(spec, runs, state)[1] == [], "a longer streak is the same alert"
    runs.append(_run(7, "succeeded"))
    closed, sent = _decide(spec, runs, state)
    assert [n.event for n in sent] == ["task.recovered"] and closed.alert is None


def test_keys_are_the_same_whoever_decides() -> None:
    runs = [_run(1, "failed")]
    first, second = _decide(_spec(), runs)[1], _decide(_spec(), runs)[1]
    assert first[0].key == second[0].key == notifications.idempotency_key(UID, "task.failing", "run_1")
    assert notifications.idempotency_key("other-uid", "task.failing", "run_1") != first[0].key


def test_a_tick_skipped_past_its_deadline_is_told_of_once() -> None:
    spec = _spec(startingDeadlineSeconds=5)
    late = models.Run(runId="run_9", scheduledAt=_at(9), startedAt=_at(30), finishedAt=_at(30), result="skipped")
    forbidden = models.Run(runId="run_8", scheduledAt=_at(8), startedAt=_at(8), finishedAt=_at(8), result="skipped")
    state, sent = _decide(spec, [forbidden, late])
    assert [n.event for n in sent] == ["task.missed"] and state.missedThrough == _at(9)
    assert _decide(spec, [forbidden, late], state)[1] == []


def test_the_dead_man_waits_for_the_grace_after_the_expected_tick() -> None:
    spec = _spec(deadManGraceSeconds=30)
    runs = [_run(1, "succeeded")]  # expected again at 61.5, due at 91.5
    assert _decide(spec, runs, now=91)[1] == []
    state, sent = _decide(spec, runs, now=92)
    assert [n.event for n in sent] == ["task.deadman"] and state.alert == "deadman"
    assert _decide(spec, runs, state, now=500)[1] == [], "told once"
    runs.append(_run(600, "succeeded"))
    assert [n.event for n in _decide(spec, runs, state, now=601)[1]] == ["task.recovered"]
    assert _decide(_spec(deadManGraceSeconds=30, paused=True), runs[:1], now=1000)[1] == []


def test_the_dead_man_counts_from_the_due_time_and_is_silent_once_no_run_is_due() -> None:
    spec = _spec(deadManGraceSeconds=30)
    status = models.StanTaskStatus(recentRuns=[_run(1, "succeeded")])

    def decide(due_after: Callable[[datetime.datetime], datetime.datetime | None], now: float) -> list[str]:
        return [n.event for n in notifications.decide_for_task(UID, spec, status, T0, _at(now), due_after)[1]]

    jittered = lambda moment: moment + datetime.timedelta(seconds=60 + 20)  # noqa: E731
    assert decide(jittered, now=100) == [], "the run is due 20 s later than its tick: so is the dead man"
    assert decide(jittered, now=112) == ["task.deadman"]
    assert decide(lambda moment: None, now=10_000) == [], "the window has ended: no run is owed"


def test_reminders_come_every_interval_and_one_after_an_absence() -> None:
    spec = _spec(repeatIntervalSeconds=60)
    state = models.NotificationState(alert="failing", alertSince=_at(0))
    runs = [_run(0, "failed")]
    assert _decide(spec, runs, state, now=59)[1] == []
    reminded, sent = _decide(spec, runs, state, now=61)
    assert [(n.event, n.reminder) for n in sent] == [("task.failing", True)] and reminded.remindedAt == _at(60)
    later, sent = _decide(spec, runs, reminded, now=60 * 10 + 1)
    assert len(sent) == 1 and later.remindedAt == _at(600), "one reminder, not the backlog"


def test_a_heartbeat_turning_unhealthy_and_back() -> None:
    spec = models.StanHeartbeatSpec.model_validate({"notify": [HOOK, {**HOOK, "type": "slack"}]})
    issue = models.CheckResult(check="credits", status="error", message="out of credits")
    sick = models.StanHeartbeatStatus(lastRunAt=_at(0), healthy=False, issues=[issue])
    state, sent = notifications.decide_for_heartbeat(UID, spec, sick, _at(1))
    assert [(n.event, n.message, n.targets) for n in sent] == [
        ("heartbeat.unhealthy", "credits: out of credits", [0, 1])
    ]
    well = models.StanHeartbeatStatus(lastRunAt=_at(5), healthy=True, notifications=state)
    closed, sent = notifications.decide_for_heartbeat(UID, spec, well, _at(6))
    assert [n.event for n in sent] == ["heartbeat.recovered"] and closed.alert is None


@pytest.mark.parametrize(
    ("url", "admitted"),
    [
        ("https://hooks.slack.com/services/T/B/x", True),
        ("http://hooks.slack.com:8080/x", True),
        ("https://hooks.slack.com.evil.net/", False),
        ("https://user@hooks.slack.com/", False),
        ("http://127.0.0.1:8080/hook", True),
        ("http://127.0.0.1:8081/hook", False),
        ("https://example.org/stan/team-a", True),
        ("https://example.org/stanley", False),
        ("http://example.org/stan/team-a", False),
        ("https://example.org:443/stan/x", True),
        ("gopher://hooks.slack.com/", False),
        ("http://169.254.169.254/latest/meta-data", False),
    ],
)
def test_the_allowlist_matches_hosts_and_prefixes(url: str, admitted: bool) -> None:
    allowlist = ["hooks.slack.com", "127.0.0.1:8080", "https://example.org/stan/"]
    assert (validation.destination_refusal(url, allowlist) is None) is admitted
    assert validation.destination_refusal(url, []) is not None, "an empty list admits nothing"


def test_the_signature_is_githubs() -> None:
    # The example of GitHub's documentation on validating webhook deliveries.
    assert notifications.signature("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
