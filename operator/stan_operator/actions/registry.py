"""The executor behind each action name."""

from __future__ import annotations

from stan_core import config
from stan_operator.actions import Action, builtin, jobs


def build(configuration: config.OperatorConfig, tracker: jobs.JobTracker) -> dict[str, Action]:
    job_actions = {
        name: jobs.JobAction(name, container, tracker) for name, container in configuration.jobActions.items()
    }
    return {**builtin.BUILTIN, **job_actions}
