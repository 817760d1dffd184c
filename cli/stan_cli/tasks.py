"""``stan tasks``: what StanTasks in the cluster of the current kubeconfig will do."""

from __future__ import annotations

import datetime

import click
from kubernetes_asyncio import client

from stan_cli.cluster import with_api
from stan_core import config, ids, kube, models, schedule, validation


@click.group()
def tasks() -> None:
    """StanTasks, as the operator schedules them."""


class NotFound(Exception):
    pass


@tasks.command()
@click.argument("task")
@click.option("-n", "--namespace", default="default", show_default=True, help="The task's namespace (its tenant).")
@click.option(
    "--count",
    default=10,
    show_default=True,
    type=click.IntRange(1, schedule.MAX_UPCOMING),
    help="How many runs to list.",
)
def upcoming(task: str, namespace: str, count: int) -> None:
    """When TASK's next runs are due, jitter, window and maxRuns applied; TASK is its REST id or object name."""
    name = ids.object_name(task) or task

    async def read(api: client.ApiClient) -> kube.Body:
        body = await kube.unless_missing(kube.Objects(api, models.STAN_TASK).get(namespace, name))
        if body is None:
            raise NotFound(f"no StanTask {name!r} in namespace {namespace!r}")
        return body

    body = with_api(read, NotFound)
    configuration = config.load()
    spec, errors = validation.guarded(validation.task_spec, body["spec"], configuration)
    if spec is None:
        raise click.ClickException(f"the task's spec is refused, so it does not run: {validation.describe(errors)}")
    now = datetime.datetime.now(datetime.UTC)
    for due in schedule.upcoming_of_task(body, spec, configuration.allowSecondSchedules, now=now, count=count):
        click.echo(models.format_timestamp(due))
