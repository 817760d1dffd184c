"""Which action names exist, and the executor behind each."""
from __future__ import annotations

from stan_operator import config
from stan_operator.actions import Action, builtin, jobs


def names(configuration: config.OperatorConfig) -> list[str]:
    return sorted({*builtin.BUILTIN, *configuration.jobActions})


def build(configuration: config.OperatorConfig, tracker: jobs.JobTracker) -> dict[str, Action]:
    job_actions = {name: jobs.JobAction(name, container, tracker) for name, container in configuration.jobActions.items()}
    return {**builtin.BUILTIN, **job_actions}
