"""Notifications: telling people, by webhook or Slack, that a task or a heartbeat changed state.

Level-triggered like the rest of the operator. ``status.notifications`` keeps what has been
announced (the open alert, the reminders, the missed ticks told of); ``decide_for_task`` and
``decide_for_heartbeat`` compare it with what status shows (a failure streak, health, a tick
skipped past its deadline, a success overdue) and turn each difference into a pending
notification. The pending notification is written to status in the same patch that marks the
change announced, before anything is sent; only then does the leader send it to each target,
retrying with backoff for up to ``GIVE_UP_SECONDS``. Each target's outcome leaves the pending list
and is recorded in ``status.lastNotification`` and an Event.

A leader killed in between leaves the pending entry in status; the next leader's sweep (every
``SWEEP_SECONDS``) sends it again under the same idempotency key, which comes from the object's
uid, the event and the run or instant it tells of, so that a receiver drops the duplicate. The
same sweep opens dead-man alerts and sends reminders, which no status write brings about.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from stan_core import ids, models, validation
from stan_operator import supervision, ticks
from stan_operator.clock import Clock
from stan_operator.effects import EventRecorder, Outbox, Undeliverable
from stan_operator.metrics import Metrics
from stan_operator.watched import Keeper, Watched

VERSION = "stan.dev/notification/v1"
"""The webhook body's version: a change that breaks receivers gets a new one."""
SIGNATURE_HEADER = "X-Stan-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
FIRST_RETRY_SECONDS = 1.0
LONGEST_RETRY_SECONDS = 60.0
GIVE_UP_SECONDS = 600.0
"""A destination that has not taken a notification in ten minutes is recorded as failed."""
SWEEP_SECONDS = 5.0
MAX_PENDING = 20
"""Status holds at most this many undelivered notifications per object, the newest: a destination
that is down for days must not grow the object toward etcd's limit."""
RETRIED_STATUSES = frozenset({408, 425, 429})
"""Answers below 500 that say "later" rather than "no"."""
log = logging.getLogger(__name__)

W = TypeVar("W", bound=Watched[Any])
Decision = tuple[models.NotificationState, list[models.PendingNotification]]
"""What status should say was announced, and the notifications that saying it takes."""


def idempotency_key(uid: str, event: str, anchor: str) -> str:
    """The same for a notification whoever decides it: the object, the event, and the run or instant."""
    return hashlib.sha256(f"{uid}\n{event}\n{anchor}".encode()).hexdigest()[:32]


def signature(secret: str, body: bytes) -> str:
    """The X-Stan-Signature-256 value: as GitHub signs webhooks, an HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _notice(
    uid: str,
    event: str,
    anchor: str,
    occurred: datetime.datetime,
    message: str,
    targets: int,
    *,
    reminder: bool = False,
    run: models.Run | None = None,
) -> models.PendingNotification:
    return models.PendingNotification(
        key=idempotency_key(uid, f"{event}/reminder" if reminder else event, anchor),
        event=event,
        occurredAt=occurred,
        message=message[:1024],
        reminder=reminder,
        run=run,
        targets=list(range(targets)),
    )


def _reminder(
    uid: str,
    prefix: str,
    state: models.NotificationState,
    repeat_seconds: int | None,
    now: datetime.datetime,
    targets: int,
) -> Decision:
    """A reminder of the open alert when one is due: the latest due instant, so that an operator that
    was away sends one reminder, not the backlog."""
    if state.alert is None or state.alertSince is None or repeat_seconds is None:
        return state, []
    last = state.remindedAt or state.alertSince
    periods = int((now - last).total_seconds() // repeat_seconds)
    if periods < 1:
        return state, []
    due = last + datetime.timedelta(seconds=periods * repeat_seconds)
    event = f"{prefix}.{state.alert}"
    notice = _notice(
        uid,
        event,
        models.format_timestamp(due),
        due,
        f"still {state.alert} since {models.format_timestamp(state.alertSince)}",
        targets,
        reminder=True,
    )
    return state.model_copy(update={"remindedAt": due}), [notice]


def decide_for_task(
    uid: str,
    spec: models.StanTaskSpec,
    status: models.StanTaskStatus,
    created: datetime.datetime,
    now: datetime.datetime,
    due_after: Callable[[datetime.datetime], datetime.datetime | None],
) -> Decision:
    """What a task's status says that has not been announced. ``due_after`` is its schedule: when the
    first run after an instant is due, its window and jitter applied; None when none is left.

    Skipped ticks neither fail nor succeed, so they neither open nor close an alert; one skipped past
    its starting deadline is a missed tick, told of once. A failure streak reaching failureThreshold
    opens the ``failing`` alert; with deadManGraceSeconds, no success by the grace after the first
    tick since the last success (or since creation) opens ``deadman``; a success closes either
    (``recovered``). One alert is open at a time."""
    targets = len(spec.notify)
    state = status.notifications.model_copy(update={"pending": []})
    notices: list[models.PendingNotification] = []
    missed_through = state.missedThrough or created
    missed = [
        run
        for run in reversed(status.recentRuns)
        if run.result == models.RunResult.SKIPPED
        and run.scheduledAt > missed_through
        and ticks.past_deadline(run.scheduledAt, run.startedAt or run.scheduledAt, spec.startingDeadlineSeconds)
    ]
    for run in missed:
        notices.append(
            _notice(uid, "task.missed", run.runId, run.finishedAt or run.scheduledAt, run.message, targets, run=run)
        )
    if missed:
        state = state.model_copy(update={"missedThrough": missed[-1].scheduledAt})
    finished = [run for run in status.recentRuns if run.result in (models.RunResult.FAILED, models.RunResult.SUCCEEDED)]
    succeeded = next((run for run in finished if run.result == models.RunResult.SUCCEEDED), None)
    streak = ticks.failure_streak(status.recentRuns)
    if state.alert is not None:
        latest = finished[0] if finished else None
        if (
            latest is not None
            and latest is succeeded
            and latest.finishedAt is not None
            and (state.alertSince is None or latest.finishedAt >= state.alertSince)
        ):
            notices.append(
                _notice(uid, "task.recovered", latest.runId, latest.finishedAt, latest.message, targets, run=latest)
            )
            state = state.model_copy(update={"alert": None, "alertSince": None, "remindedAt": None})
    elif streak >= spec.failureThreshold:
        trigger = finished[streak - spec.failureThreshold]
        since = trigger.finishedAt or trigger.scheduledAt
        message = f"{streak} runs failed in a row: {finished[0].message}" if streak > 1 else trigger.message
        notices.append(_notice(uid, "task.failing", trigger.runId, since, message, targets, run=trigger))
        state = state.model_copy(update={"alert": "failing", "alertSince": since})
    elif spec.deadManGraceSeconds is not None and not spec.paused:
        last_success = succeeded.finishedAt if succeeded is not None and succeeded.finishedAt else created
        expected = due_after(last_success)
        due = None if expected is None else expected + datetime.timedelta(seconds=spec.deadManGraceSeconds)
        if expected is not None and due is not None and now >= due:
            message = (
                f"no run has succeeded since {models.format_timestamp(last_success)}; the tick at "
                f"{models.format_timestamp(expected)} should have by {models.format_timestamp(due)}"
            )
            notices.append(_notice(uid, "task.deadman", models.format_timestamp(expected), due, message, targets))
            state = state.model_copy(update={"alert": "deadman", "alertSince": due})
    state, reminders = _reminder(uid, "task", state, spec.repeatIntervalSeconds, now, targets)
    return state, notices + reminders


def decide_for_heartbeat(
    uid: str, spec: models.StanHeartbeatSpec, status: models.StanHeartbeatStatus, now: datetime.datetime
) -> Decision:
    """What a heartbeat's status says that has not been announced: turning unhealthy (also on its first
    run), and healthy again."""
    targets = len(spec.notify)
    state = status.notifications.model_copy(update={"pending": []})
    notices: list[models.PendingNotification] = []
    at = status.lastRunAt
    if at is not None and status.healthy is False and state.alert is None:
        message = "; ".join(f"{issue.check}: {issue.message}" for issue in status.issues)
        notices.append(_notice(uid, "heartbeat.unhealthy", models.format_timestamp(at), at, message, targets))
        state = state.model_copy(update={"alert": "unhealthy", "alertSince": at})
    elif at is not None and status.healthy is True and state.alert is not None:
        notices.append(
            _notice(uid, "heartbeat.recovered", models.format_timestamp(at), at, "All checks are ok.", targets)
        )
        state = state.model_copy(update={"alert": None, "alertSince": None, "remindedAt": None})
    state, reminders = _reminder(uid, "heartbeat", state, spec.repeatIntervalSeconds, now, targets)
    return state, notices + reminders


def payload(resource: models.Resource, subject: Watched[Any], pending: models.PendingNotification) -> dict[str, Any]:
    """The generic webhook's body (documented in the README), versioned by ``VERSION``."""
    described: dict[str, str] = {
        "kind": resource.kind,
        "namespace": subject.namespace,
        "name": subject.name,
        "uid": subject.uid,
    }
    if resource is models.STAN_TASK:
        described["taskId"] = ids.task_id(subject.name)
    return {
        "version": VERSION,
        "id": pending.key,
        "event": pending.event,
        "reminder": pending.reminder,
        "occurredAt": models.format_timestamp(pending.occurredAt),
        "message": pending.message,
        "object": described,
        "run": pending.run.dumped() if pending.run is not None else None,
    }


def slack_text(resource: models.Resource, subject: Watched[Any], pending: models.PendingNotification) -> str:
    reminder = " (reminder)" if pending.reminder else ""
    return f"Stan: {resource.kind} {subject.namespace}/{subject.name}: {pending.event}{reminder}: {pending.message}"


def encode(
    resource: models.Resource, subject: Watched[Any], target: models.NotifyTarget, pending: models.PendingNotification
) -> bytes:
    """The raw body for ``target``'s type: what is sent, and what the signature covers."""
    if target.type == "slack":
        document: dict[str, Any] = {"text": slack_text(resource, subject, pending)}
    else:
        document = payload(resource, subject, pending)
    return json.dumps(document, separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True)
class Delivery:
    outcome: models.NotificationOutcome
    attempts: int
    message: str


class Notifier(Generic[W]):
    """Decides, records and delivers one kind's notifications; the leader alone writes and sends."""

    def __init__(
        self,
        resource: models.Resource,
        keeper: Keeper[Any],
        events: EventRecorder,
        outbox: Outbox | None,
        allowlist: Sequence[str],
        supervisor: supervision.Supervisor,
        clock: Clock,
        metrics: Metrics,
        *,
        targets: Callable[[W], Sequence[models.NotifyTarget]],
        decide: Callable[[W, datetime.datetime], Decision | None],
        current: Callable[[W], bool],
    ) -> None:
        """``targets``: the object's spec.notify (empty while its spec is invalid); ``decide``: what is to be
        announced, None while the spec is invalid; ``current``: whether the object is still the one watched."""
        self._resource = resource
        self._keeper = keeper
        self._events = events
        self._outbox = outbox
        self._allowlist = list(allowlist)
        self._supervisor = supervisor
        self._clock = clock
        self._metrics = metrics
        self._targets = targets
        self._decide = decide
        self._current = current
        self._in_flight: set[str] = set()
        """Keys of the notifications this replica is delivering, so that a sweep starts none twice."""

    def _involved(self, subject: W) -> bool:
        status: models.Notified = subject.status
        return bool(self._targets(subject) or status.notifications.pending)

    async def reconcile(self, subject: W) -> None:
        """Record what is to be announced and send what is pending. The caller holds the object's lock.

        A failure is logged, not raised: the run or heartbeat that called is recorded already, and the
        next sweep tries again."""
        if self._outbox is None or self._keeper.standby or not self._current(subject) or not self._involved(subject):
            return
        try:
            decided = self._decide(subject, self._clock())
            status: models.Notified = subject.status
            if decided is not None:
                state, notices = decided
                known = {pending.key for pending in status.notifications.pending}
                fresh = [notice for notice in notices if notice.key not in known and notice.targets]
                pending = [*status.notifications.pending, *fresh][-MAX_PENDING:]
                wanted = state.model_copy(update={"pending": pending})
                if wanted != status.notifications:
                    await self._keeper.write(subject, {"notifications": wanted.model_dump(mode="json", by_alias=True)})
            self._send_pending(subject)
        except Exception:
            log.exception("notifications of %s/%s could not be recorded", subject.namespace, subject.name)

    async def sweep(self, subjects: Iterable[W]) -> None:
        """Reconcile every object that notifies: dead-man alerts and reminders come due with time alone,
        and a new leader finds the notifications its predecessor left pending."""
        if self._outbox is None or self._keeper.standby:
            return
        for subject in list(subjects):
            if self._involved(subject):
                async with subject.lock:
                    await self.reconcile(subject)

    def _send_pending(self, subject: W) -> None:
        status: models.Notified = subject.status
        for pending in status.notifications.pending:
            if pending.key not in self._in_flight:
                self._in_flight.add(pending.key)
                self._supervisor.spawn(
                    f"notification {pending.event} of {subject.namespace}/{subject.name}",
                    self._deliver(subject, pending),
                )

    async def _deliver(self, subject: W, pending: models.PendingNotification) -> None:
        try:
            await asyncio.gather(*(self._deliver_to(subject, pending, index) for index in pending.targets))
        finally:
            self._in_flight.discard(pending.key)

    async def _deliver_to(self, subject: W, pending: models.PendingNotification, index: int) -> None:
        targets = self._targets(subject)
        target = targets[index] if index < len(targets) else None
        delivery = (
            Delivery(models.NotificationOutcome.FAILED, 0, "the target is no longer in spec.notify")
            if target is None
            else await self._send(subject, target, pending)
        )
        if delivery is None:
            return
        record = models.NotificationRecord(
            time=self._clock(),
            event=pending.event,
            key=pending.key,
            target=index,
            outcome=delivery.outcome,
            attempts=delivery.attempts,
            message=delivery.message,
        )
        async with subject.lock:
            if self._keeper.standby or not self._current(subject):
                return
            status: models.Notified = subject.status
            remaining = [
                item.model_copy(update={"targets": [t for t in item.targets if t != index]})
                if item.key == pending.key
                else item
                for item in status.notifications.pending
            ]
            state = status.notifications.model_copy(update={"pending": [item for item in remaining if item.targets]})
            await self._keeper.write(
                subject,
                {
                    "notifications": state.model_dump(mode="json", by_alias=True),
                    "lastNotification": record.model_dump(mode="json", by_alias=True),
                },
            )
        channel = target.type if target is not None else "unknown"
        self._metrics.notified(channel, delivery.outcome)
        delivered = delivery.outcome == models.NotificationOutcome.DELIVERED
        await self._keeper.announce(
            subject,
            "Notified" if delivered else "NotificationFailed",
            f"{pending.event}{' reminder' if pending.reminder else ''} to notify[{index}]: {delivery.outcome} "
            f"after {delivery.attempts} attempt{'s' if delivery.attempts != 1 else ''}: {delivery.message}",
            warning=not delivered,
        )

    async def _send(
        self, subject: W, target: models.NotifyTarget, pending: models.PendingNotification
    ) -> Delivery | None:
        """Send until a destination takes it, refuses it, or ``GIVE_UP_SECONDS`` pass; None when this
        replica stopped leading meanwhile (the next leader sends it)."""
        assert self._outbox is not None
        outbox = self._outbox
        body = encode(self._resource, subject, target, pending)
        loop = asyncio.get_running_loop()
        started = loop.time()
        pause = FIRST_RETRY_SECONDS
        attempts = 0
        while True:
            if self._keeper.standby:
                return None
            attempts += 1
            try:
                url = target.url or await self._secret(outbox, subject.namespace, target.urlFrom)
                refusal = validation.destination_refusal(url, self._allowlist)
                if refusal is not None:
                    return Delivery(models.NotificationOutcome.REFUSED, attempts, f"the URL {refusal}")
                headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: pending.key}
                if target.signingSecretRef is not None:
                    secret = await outbox.secret(subject.namespace, target.signingSecretRef)
                    headers[SIGNATURE_HEADER] = signature(secret, body)
                answered = await outbox.post(url, body, headers)
            except Undeliverable as error:
                problem = str(error)
            else:
                if 200 <= answered < 300:
                    return Delivery(models.NotificationOutcome.DELIVERED, attempts, f"HTTP {answered}")
                problem = f"HTTP {answered}"
                if answered < 500 and answered not in RETRIED_STATUSES:
                    return Delivery(models.NotificationOutcome.FAILED, attempts, problem)
            if loop.time() + pause - started > GIVE_UP_SECONDS:
                return Delivery(models.NotificationOutcome.FAILED, attempts, f"gave up: {problem}")
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_RETRY_SECONDS)

    @staticmethod
    async def _secret(outbox: Outbox, namespace: str, source: models.UrlSource | None) -> str:
        assert source is not None, "a target without url has urlFrom"
        return await outbox.secret(namespace, source.secretKeyRef)


async def keep_sweeping(sweeps: Sequence[Callable[[], Awaitable[None]]], beat: supervision.Beat) -> None:
    """The sweep loop over every kind's notifier, for the life of the operator."""
    while True:
        beat()
        for sweep in sweeps:
            await sweep()
        await asyncio.sleep(SWEEP_SECONDS)
