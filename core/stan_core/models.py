"""The StanTask and StanHeartbeat resources: the single source of truth.

Validation, defaults and documentation are declared here once; ``crdgen``
turns these models into the CRDs' ``openAPIV3Schema``, and the operator and
the facade parse objects through them. Field names are camelCase, as the REST
contract and Kubernetes conventions both want.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
from typing import Annotated, Any, Literal

import pydantic.dataclasses
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

GROUP = "stan.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


def format_timestamp(value: datetime.datetime) -> str:
    """ISO 8601 in UTC with ``Z``, as the REST contract writes it; milliseconds only when present."""
    # isoformat, not strftime: a claim formats every timestamp of a task's status, thousands of claims a tick.
    value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds") + "Z"


def _in_utc(value: datetime.datetime) -> datetime.datetime:
    """Every parsed timestamp in ``datetime.timezone.utc``: datetimes whose tzinfo objects differ
    (pydantic's own UTC against the standard one) compare through Python-level ``utcoffset`` calls,
    and audits compare thousands a tick."""
    return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)


Timestamp = Annotated[
    datetime.datetime,
    AfterValidator(_in_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    # The serializer returns text, and would document it as a plain string: a client generated from the
    # OpenAPI document then gets strings, not instants.
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 control characters and the bidirectional embeddings, overrides and isolates: text with
them can rewrite a terminal (ANSI escapes), forge lines in logs, or display other than it reads."""


def _printable(value: str) -> str:
    found = _UNPRINTABLE.search(value)
    if found:
        raise ValueError(
            f"must not contain control or bidirectional-override characters "
            f"(U+{ord(found.group()):04X} at position {found.start()})"
        )
    return value


PRINTABLE = AfterValidator(_printable)
Text = Annotated[str, PRINTABLE]
"""Every text field a person writes: any Unicode but what cannot be shown as it reads."""


class Model(BaseModel):
    """Base of every resource part: camelCase on the wire, unknown fields kept out."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, use_enum_values=True)


class ConcurrencyPolicy(str, enum.Enum):
    """What to do when a tick comes while the previous run is still going (as batch/v1 CronJob)."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"
    BUFFER_ONE = "BufferOne"
    """A tick that comes while a run is going waits for it to end; at most one waits, later ones are skipped."""


MAX_NOTE_LENGTH = 1024
MAX_JITTER_SECONDS = 3600
"""An hour: enough to spread a fleet's shared tick, short enough that an hourly task still runs in its hour."""


class RunResult(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Condition(Model):
    """A Kubernetes API convention condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable details.")
    lastTransitionTime: Timestamp
    observedGeneration: int | None = None


NotifyType = Literal["webhook", "slack"]
"""A generic webhook gets Stan's versioned JSON body; a Slack-compatible incoming webhook gets ``{"text"}``."""


class SecretKeyRef(Model):
    """A key of a Secret in the object's own namespace, read by the operator when it sends."""

    name: Text = Field(min_length=1, max_length=253, description="The Secret's name.")
    key: Text = Field(min_length=1, max_length=253, description="The key within the Secret's data.")


class UrlSource(Model):
    secretKeyRef: SecretKeyRef


MAX_URL_LENGTH = 2048
MAX_NOTIFY_TARGETS = 10


class NotifyTarget(Model):
    """Where a notification goes: a URL given inline or held in a Secret, never both."""

    type: NotifyType = Field(default="webhook", description="webhook (Stan's JSON body) or slack.")
    url: Text | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="The destination; it must match the operator's notificationAllowlist.",
    )
    urlFrom: UrlSource | None = Field(
        default=None,
        description="The destination held in a Secret; checked against the allowlist when sending.",
    )
    signingSecretRef: SecretKeyRef | None = Field(
        default=None,
        description="Sign the body with HMAC-SHA256 under this Secret key's value (header X-Stan-Signature-256).",
    )

    @model_validator(mode="after")
    def _one_destination(self) -> NotifyTarget:
        if (self.url is None) == (self.urlFrom is None):
            raise ValueError("give exactly one of url and urlFrom")
        return self


class Notifying(Model):
    """The notification fields that StanTask and StanHeartbeat specs share."""

    notify: list[NotifyTarget] = Field(
        default_factory=list,
        max_length=MAX_NOTIFY_TARGETS,
        description="Where to send notifications of state changes; empty: none are sent.",
    )
    repeatIntervalSeconds: int | None = Field(
        default=None,
        ge=60,
        le=7 * 86400,
        description="While failing or unhealthy, send a reminder this often; null: no reminders.",
    )


class StanTaskSpec(Notifying):
    name: Text = Field(min_length=1, max_length=253, description="Human-readable task name.")
    action: Text = Field(min_length=1, max_length=253, description="Stan action to run on each tick.")
    schedule: Text = Field(min_length=1, max_length=253, description="Cron expression controlling when the task runs.")
    modelId: Text = Field(min_length=1, max_length=253, description="Model used to execute the task.")
    paused: bool = Field(default=False, description="A paused task keeps its configuration but does not fire.")
    pauseNote: Text | None = Field(
        default=None, max_length=MAX_NOTE_LENGTH, description="Why the task is paused; status.pauseNote keeps it."
    )
    pauseAfterFailures: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Pause the task, with a note and an Event, after this many failed runs in a row; at most "
        "runHistoryLimit. null: never.",
    )
    timeZone: Text = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone the schedule is read in, e.g. Europe/Berlin.",
    )
    concurrencyPolicy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.ALLOW,
        description="Allow, Forbid (skip a tick while a run is active), Replace (stop the active run) or BufferOne "
        "(the tick waits for the active run; at most one waits).",
    )
    jitterSeconds: int = Field(
        default=0,
        ge=0,
        le=MAX_JITTER_SECONDS,
        description="Delay each tick by an offset in [0, jitterSeconds), the same for a tick on every replica.",
    )
    startAt: Timestamp | None = Field(default=None, description="No tick before this instant; null: none.")
    endAt: Timestamp | None = Field(
        default=None, description="No tick after this instant; once past it the task is Finished. null: none."
    )
    maxRuns: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Scheduled runs after which the task is Finished (status.remainingRuns counts down); "
        "null: no limit.",
    )
    startingDeadlineSeconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="How late a missed tick (for example across an operator restart) may still run; "
        "a tick missed by more is recorded as skipped.",
    )
    runHistoryLimit: int = Field(default=10, ge=1, le=100, description="How many recent runs status keeps.")
    failureThreshold: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Failed runs in a row that make the task failing, which is notified; at most runHistoryLimit.",
    )
    deadManGraceSeconds: int | None = Field(
        default=None,
        ge=1,
        le=30 * 86400,
        description="Notify when no run has succeeded this long after the first tick since the last success; "
        "null: off.",
    )


# A slotted dataclass, not a model: the operator keeps runHistoryLimit runs for each of thousands of tasks,
# and a model costs five times the memory.
@pydantic.dataclasses.dataclass(
    slots=True, frozen=True, kw_only=True, config=ConfigDict(extra="ignore", use_enum_values=True)
)
class Run:
    """One run of a task: a cron tick that was fired, or skipped."""

    runId: str
    scheduledAt: Timestamp
    startedAt: Timestamp | None = None
    finishedAt: Timestamp | None = None
    result: RunResult
    message: str = ""

    def but(self, **changes: Any) -> Run:
        """This run with ``changes``."""
        return dataclasses.replace(self, **changes)

    def dumped(self) -> dict[str, Any]:
        """The run as status stores it."""
        dumped: dict[str, Any] = _RUN.dump_python(self, mode="json")
        return dumped


_RUN: TypeAdapter[Run] = TypeAdapter(Run)


class TickSpan(Model):
    """Consecutive ticks of one schedule, from ``first`` to ``last``, each of which ran."""

    schedule: str
    timeZone: str
    first: Timestamp
    last: Timestamp


MAX_TICK_SPANS = 50
MAX_BACKFILL_TICKS = 1000


class Backfill(Model):
    """A backfill: the past ticks of ``from``..``to`` run once each, oldest first, those that ran left out."""

    request: str = Field(description="The request it answers (annotation stan.dev/backfill-request).")
    start: Timestamp = Field(alias="from")
    end: Timestamp = Field(alias="to")
    schedule: str = Field(default="", description="The schedule whose ticks it runs, as when the backfill began.")
    timeZone: str = "UTC"
    ticks: int = Field(default=0, description="Ticks of the range to run: those that had not run when it began.")
    alreadyRan: int = Field(default=0, description="Ticks of the range left out because they had run.")
    through: Timestamp | None = Field(default=None, description="Ticks up to this one are handled.")
    handled: int = Field(default=0, description="Ticks handled: run, skipped by the concurrency policy, or left out.")
    finishedAt: Timestamp | None = None
    refusal: str | None = Field(default=None, description="Why the request was refused; then nothing ran.")


class NotificationOutcome(str, enum.Enum):
    DELIVERED = "delivered"
    FAILED = "failed"
    REFUSED = "refused"


class PendingNotification(Model):
    """A notification decided and not yet delivered to every target; the leader that finds it sends it."""

    key: str = Field(description="The idempotency key: the same for every attempt, by any replica.")
    event: str
    occurredAt: Timestamp = Field(description="The state change (or reminder) it tells of.")
    message: str = ""
    reminder: bool = Field(default=False, description="A reminder of an alert still open, not a change.")
    run: Run | None = Field(default=None, description="The run it tells of, for a task.")
    targets: list[int] = Field(default_factory=list, description="Indexes into spec.notify still to deliver to.")


class NotificationRecord(Model):
    """The outcome of the latest delivery to one target."""

    time: Timestamp
    event: str
    key: str
    target: int = Field(description="Index into spec.notify.")
    outcome: NotificationOutcome
    attempts: int
    message: str = ""


class NotificationState(Model):
    """What has been announced, so that each state change is notified once, by whichever replica leads."""

    alert: str | None = Field(default=None, description="The open alert (failing, deadman, unhealthy), or null.")
    alertSince: Timestamp | None = Field(default=None, description="The state change that opened it.")
    remindedAt: Timestamp | None = Field(default=None, description="When the latest reminder was due.")
    missedThrough: Timestamp | None = Field(
        default=None, description="Skipped ticks up to this one have been notified as missed."
    )
    pending: list[PendingNotification] = Field(default_factory=list)


class Notified(Model):
    """The notification fields that StanTask and StanHeartbeat statuses share."""

    notifications: NotificationState = Field(default_factory=NotificationState)
    lastNotification: NotificationRecord | None = None


class StanTaskStatus(Notified):
    status: Literal["active", "paused"] | None = None
    lastRunAt: Timestamp | None = Field(default=None, description="When the last run started.")
    nextRunAt: Timestamp | None = Field(
        default=None, description="The next run: its tick delayed by the jitter; null while paused or finished."
    )
    lastScheduledAt: Timestamp | None = Field(
        default=None,
        description="Ticks up to this instant are accounted for (run, or recorded as skipped); the nominal "
        "tick, without jitter. "
        "Written before a run starts, so that a restarted operator never runs a tick twice.",
    )
    lastRunRequest: str | None = Field(
        default=None, description="The latest on-demand run request (annotation) answered."
    )
    recentRuns: list[Run] = Field(default_factory=list, description="Newest first, at most runHistoryLimit.")
    lastSuccessfulAt: Timestamp | None = Field(
        default=None, description="When the latest successful run finished; kept when recentRuns is pruned."
    )
    lastFailedAt: Timestamp | None = Field(
        default=None, description="When the latest failed run finished; kept when recentRuns is pruned."
    )
    remainingRuns: int | None = Field(
        default=None, description="With spec.maxRuns: the scheduled runs still to come; 0 when Finished."
    )
    ranTicks: list[TickSpan] = Field(
        default_factory=list,
        description="The ticks that ran, oldest first, as spans of consecutive ticks; a backfill runs none again.",
    )
    ranTicksSince: Timestamp | None = Field(
        default=None,
        description="Older spans were dropped to keep ranTicks bounded: a backfill may not reach before this.",
    )
    backfill: Backfill | None = Field(default=None, description="The latest backfill and how far it has come.")
    pausedAt: Timestamp | None = Field(default=None, description="When the task was paused; null while active.")
    pauseNote: str | None = Field(default=None, description="Why it is paused, as spec.pauseNote says.")
    resumedAt: Timestamp | None = Field(
        default=None, description="When the task was last resumed; pauseAfterFailures counts failures from here."
    )
    conditions: list[Condition] = Field(default_factory=list)
    observedGeneration: int | None = None

    @property
    def latestRun(self) -> Run | None:
        """The run recorded last: not stored apart from ``recentRuns``, since every stored byte is decoded
        and encoded again on each of the thousands of status writes a shared tick brings."""
        return self.recentRuns[0] if self.recentRuns else None


MAX_CHECKS = 64
"""A bound on the checks list whatever the registry holds, so no spec can grow toward etcd's object limit."""


class StanHeartbeatSpec(Notifying):
    enabled: bool = Field(default=True, description="Whether the heartbeat runs on its interval.")
    checks: list[Annotated[Text, Field(min_length=1, max_length=253)]] = Field(
        default_factory=lambda: ["workflows", "deployments", "credits"],
        max_length=MAX_CHECKS,
        description="Check names to run each tick, each at most once.",
    )
    intervalMinutes: int = Field(default=30, ge=5, le=10080, description="Run interval in minutes (minimum: 5).")
    runHistoryLimit: int = Field(
        default=20, ge=1, le=100, description="Runs kept in status.recentRuns, so that a state has a since."
    )


class CheckStatus(str, enum.Enum):
    OK = "ok"
    WARN = "warn"
    ERROR = "error"


class CheckResult(Model):
    check: str
    status: CheckStatus
    message: str
    durationSeconds: float | None = None
    details: list[str] = Field(default_factory=list)


class HeartbeatRecord(Model):
    """One heartbeat run as the history keeps it: small, for a hundred of them fit in status."""

    startedAt: Timestamp
    durationSeconds: float
    healthy: bool
    checks: dict[str, CheckStatus] = Field(default_factory=dict, description="Each check's status.")
    issues: list[str] = Field(default_factory=list, description="'check: message' of each result not ok.")
    runRequest: str | None = Field(default=None, description="The on-demand request it answered; null on schedule.")


class StanHeartbeatStatus(Notified):
    lastRunAt: Timestamp | None = None
    nextRunAt: Timestamp | None = None
    results: list[CheckResult] = Field(default_factory=list)
    issues: list[CheckResult] = Field(default_factory=list, description="The results that are not ok.")
    healthy: bool | None = None
    runRequest: str | None = Field(default=None, description="The on-demand run request these results answer.")
    recentRuns: list[HeartbeatRecord] = Field(
        default_factory=list, description="The latest runs, newest first, at most spec.runHistoryLimit."
    )
    conditions: list[Condition] = Field(default_factory=list)
    observedGeneration: int | None = None


class StanAPIKeySpec(Model):
    """An API key of the REST facade: who it speaks for, and the SHA-256 of its secret part.

    Keys are a kind of their own, not Secrets, so that the facade is granted these objects and no
    Secret at all; the stored hash of a 256-bit random secret reveals nothing that authenticates."""

    user: Text = Field(min_length=1, max_length=58, description="The user the key belongs to.")
    tenant: Text = Field(min_length=1, max_length=63, description="The namespace the key's requests act in.")
    scopes: list[Text] = Field(default_factory=list, description="What the key may do, e.g. stan:execute.")
    sha256: str = Field(pattern="^[0-9a-f]{64}$", description="Hex SHA-256 of the key's secret part.")
    expiresAt: Timestamp | None = Field(default=None, description="After this instant the key is refused.")


class StanAPIKeyStatus(Model):
    lastUsedAt: Timestamp | None = Field(
        default=None, description="The key's latest use, written at most once a minute per key."
    )


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclasses.dataclass(frozen=True)
class Resource:
    """What a CRD declares beyond the schema: names, scope and printer columns."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[Model]
    status: type[Model]
    columns: tuple[PrinterColumn, ...]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")

STAN_TASK = Resource(
    kind="StanTask",
    plural="stantasks",
    short_names=("st", "stask"),
    spec=StanTaskSpec,
    status=StanTaskStatus,
    columns=(
        PrinterColumn("Schedule", ".spec.schedule"),
        PrinterColumn("Action", ".spec.action"),
        PrinterColumn("Model", ".spec.modelId"),
        PrinterColumn("Status", ".status.status"),
        PrinterColumn("Last Run", ".status.lastRunAt", "date"),
        PrinterColumn("Next Run", ".status.nextRunAt"),  # a date column would print <invalid> for the future
        AGE,
        PrinterColumn("Display Name", ".spec.name", priority=1),
        PrinterColumn("Result", ".status.recentRuns[0].result", priority=1),
    ),
)

STAN_HEARTBEAT = Resource(
    kind="StanHeartbeat",
    plural="stanheartbeats",
    short_names=("shb",),
    spec=StanHeartbeatSpec,
    status=StanHeartbeatStatus,
    columns=(
        PrinterColumn("Enabled", ".spec.enabled", "boolean"),
        PrinterColumn("Interval", ".spec.intervalMinutes", "integer"),
        PrinterColumn("Healthy", ".status.healthy", "boolean"),
        PrinterColumn("Last Run", ".status.lastRunAt", "date"),
        AGE,
    ),
)

STAN_API_KEY = Resource(
    kind="StanAPIKey",
    plural="stanapikeys",
    short_names=("sak",),
    spec=StanAPIKeySpec,
    status=StanAPIKeyStatus,
    columns=(
        PrinterColumn("User", ".spec.user"),
        PrinterColumn("Tenant", ".spec.tenant"),
        PrinterColumn("Expires", ".spec.expiresAt"),
        PrinterColumn("Last Used", ".status.lastUsedAt", "date"),
        AGE,
    ),
)

RESOURCES = (STAN_TASK, STAN_HEARTBEAT, STAN_API_KEY)

BACKFILL_REQUEST_ANNOTATION = "stan.dev/backfill-request"
"""Set to ``{"request": id, "from": …, "to": …}`` on a StanTask to ask for a backfill; status.backfill answers."""
RUN_REQUEST_ANNOTATION = "stan.dev/run-request"
"""Set to a new id on a StanTask or StanHeartbeat to ask the operator for a run now; status answers it."""

HEARTBEAT_NAME = "default"
"""Each tenant namespace has one StanHeartbeat, of this name."""
