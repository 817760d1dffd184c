"""The operator's configuration: one YAML file (a ConfigMap in a cluster).

It names what varies between installations: the Job-backed actions, the model
catalog, the heartbeat defaults for tenants that have none yet. The file's path
comes from ``STAN_CONFIG``; without it every default applies.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from stan_core import models


class JobAction(models.Model):
    """A container that a tick runs as a batch/v1 Job.

    Its image is code from elsewhere running in a tenant's namespace, so by default it gets the
    restricted Pod Security Standard and no API credential; an action that needs more says so here."""

    image: str = Field(min_length=1, description="The container image.")
    command: list[str] = Field(default_factory=list, description="The entrypoint; empty keeps the image's.")
    args: list[str] = Field(default_factory=list, description="Its arguments; empty keeps the image's.")
    env: list[dict[str, Any]] = Field(
        default_factory=list,
        description="core/v1 EnvVar objects, after STAN_TASK_ID, STAN_ACTION, STAN_MODEL_ID, "
        "STAN_SCHEDULED_AT and STAN_RUN_ID.",
    )
    resources: dict[str, Any] = Field(default_factory=dict, description="core/v1 ResourceRequirements.")
    backoffLimit: int = Field(default=0, ge=0, description="Retries before the run counts as failed.")
    activeDeadlineSeconds: int | None = Field(
        default=None, ge=1, description="The run fails when the Job runs longer; null for no limit."
    )
    securityContext: dict[str, Any] = Field(
        default_factory=lambda: {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        description="core/v1 SecurityContext of the container, replacing the default as a whole. The default is "
        "the restricted Pod Security Standard's, so the image must run as a non-root user: a numeric "
        "USER in the image, or runAsUser here.",
    )
    automountServiceAccountToken: bool = Field(
        default=False,
        description="Mount the token of the namespace's default ServiceAccount into the Pod. Off: an action that "
        "does not call the Kubernetes API should hold no credential for it.",
    )


class CatalogModel(models.Model):
    id: str = Field(min_length=1, description="The id tasks name in modelId.")
    healthUrl: str | None = Field(
        default=None, description="Probed by the heartbeat's models check; null for a model without one."
    )


class Limits(models.Model):
    """What one client or tenant may ask of the REST facade; the defaults are never met by a real client."""

    maxConcurrentRequests: int = Field(
        default=64, ge=1, description="Requests the facade serves at once; more wait for a place."
    )
    requestsPerSecondPerKey: float = Field(
        default=50.0, gt=0, description="Each API key's sustained rate; above it the answer is 429."
    )
    burstPerKey: int = Field(default=200, ge=1, description="Requests an API key may make at once after a pause.")
    failedAuthenticationsPerMinute: int = Field(
        default=30,
        ge=1,
        description="Failed authentications one client address may make in a minute before it gets 429.",
    )
    tasksPerTenant: int | None = Field(
        default=1000,
        ge=1,
        description="StanTasks a tenant may create through the REST API; null for no limit. "
        "For kubectl, a ResourceQuota on count/stantasks.stan.dev sets the same bound.",
    )


class OperatorConfig(models.Model):
    jobActions: dict[str, JobAction] = Field(
        default_factory=dict, description="Actions that run as a batch/v1 Job per tick, by action name."
    )
    modelCatalog: list[CatalogModel] = Field(
        default_factory=list, description="When set, tasks must name one of these models in modelId."
    )
    heartbeatDefaults: models.StanHeartbeatSpec = Field(
        default_factory=models.StanHeartbeatSpec,
        description="The heartbeat of a tenant that has none yet, as API keys onboard it.",
    )
    allowSecondSchedules: bool = Field(
        default=False,
        description="Accept 6-field cron expressions with a leading seconds field. Off for users; "
        "tests turn it on to see many ticks quickly.",
    )
    checkTimeoutSeconds: float = Field(default=10.0, gt=0, description="Each heartbeat check's time limit.")
    heartbeatMinuteSeconds: float = Field(
        default=60.0, gt=0, description="The length of one minute of intervalMinutes; tests shorten it."
    )
    limits: Limits = Field(default_factory=Limits, description="Rate limits and quotas of the REST facade.")
    notificationAllowlist: list[str] = Field(
        default_factory=list,
        description="Where notifications may go: hosts (hooks.slack.com, or host:port) and URL prefixes "
        "(https://hooks.example.com/stan/). Empty: nowhere, so no tenant can make the operator call an "
        "address the installation did not name.",
    )
    runEvents: Literal["all", "failures", "none"] = Field(
        default="failures",
        description="Which runs get an Event on their task: all (Fired, Waiting, Succeeded, Failed, Skipped); "
        "failures, the default: failed and skipped runs and a success after anything but a success, so that "
        "kubectl describe shows what changed while the metrics count every run; or none. Events of the task "
        "itself (Paused, Finished, InvalidSpec, ...) are always posted.",
    )
    metricsTaskLabel: bool = Field(
        default=False,
        description="Label the operator's per-run metrics with the task's name too. Off: with thousands of "
        "tasks, a series per task costs Prometheus more than it tells.",
    )


DEFAULT_NAMESPACE = "stan-system"


def own_namespace() -> str:
    """The namespace Stan is installed in: its API keys and its Lease live there."""
    return os.environ.get("STAN_NAMESPACE", DEFAULT_NAMESPACE)


@functools.cache
def load() -> OperatorConfig:
    path = os.environ.get("STAN_CONFIG")
    if not path:
        return OperatorConfig()
    return OperatorConfig.model_validate(yaml.safe_load(Path(path).read_text()) or {})
