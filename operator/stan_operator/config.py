"""The operator's configuration: one YAML file (a ConfigMap in a cluster).

It names what varies between installations: the Job-backed actions, the model
catalog, the heartbeat defaults for tenants that have none yet. The file's path
comes from ``STAN_CONFIG``; without it every default applies.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from stan_operator import models


class JobAction(models.Model):
    """A container that a tick runs as a batch/v1 Job."""

    image: str = Field(min_length=1)
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[dict[str, Any]] = Field(default_factory=list, description="core/v1 EnvVar objects.")
    resources: dict[str, Any] = Field(default_factory=dict, description="core/v1 ResourceRequirements.")
    backoffLimit: int = Field(default=0, ge=0)
    activeDeadlineSeconds: int | None = Field(default=None, ge=1)


class CatalogModel(models.Model):
    id: str = Field(min_length=1)
    healthUrl: str | None = None


class OperatorConfig(models.Model):
    jobActions: dict[str, JobAction] = Field(default_factory=dict)
    modelCatalog: list[CatalogModel] = Field(default_factory=list)
    heartbeatDefaults: models.StanHeartbeatSpec = Field(default_factory=models.StanHeartbeatSpec)
    allowSecondSchedules: bool = Field(
        default=False,
        description="Accept 6-field cron expressions with a leading seconds field. Off for users; "
                    "tests turn it on to see many ticks quickly.")
    checkTimeoutSeconds: float = Field(default=10.0, gt=0)
    heartbeatMinuteSeconds: float = Field(
        default=60.0, gt=0,
        description="The length of one minute of intervalMinutes; tests shorten it.")


DEFAULT_NAMESPACE = "stan-system"


def own_namespace() -> str:
    """The namespace Stan is installed in: its API-key Secrets and its Lease live there."""
    return os.environ.get("STAN_NAMESPACE", DEFAULT_NAMESPACE)


@functools.cache
def load() -> OperatorConfig:
    path = os.environ.get("STAN_CONFIG")
    if not path:
        return OperatorConfig()
    return OperatorConfig.model_validate(yaml.safe_load(Path(path).read_text()) or {})
