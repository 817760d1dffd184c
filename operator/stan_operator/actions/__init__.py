"""Actions: what a task does on each tick.

A registry maps action names to executors. Built-in actions run inside the
operator; Job-backed actions, named in the operator's configuration, run a
container as a batch/v1 Job owned by the task, which is how work scales out
across a cluster.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Protocol

from kubernetes_asyncio import client

from stan_core import config, models


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Everything an action may know about the run it performs."""

    api: client.ApiClient
    namespace: str
    name: str
    uid: str
    task_id: str
    spec: models.StanTaskSpec
    scheduled_at: datetime.datetime
    run_id: str
    configuration: config.OperatorConfig
    namespace_tasks: Callable[[], Mapping[str, models.StanTaskStatus]]
    """The status of every task in the namespace, by name, as the operator's watch has them: reading
    them costs an action no API call, which matters when thousands of runs share a tick."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    result: models.RunResult
    message: str


class Action(Protocol):
    async def __call__(self, context: RunContext) -> Outcome: ...
