"""Tasks as the REST contract sees them, translated to and from StanTask resources.

Reads come from the watch-backed cache; every write is a create, patch or
delete of a StanTask, and status stays the operator's. Updates read the
current object, validate the merged spec, and patch with its resourceVersion
as a precondition, retrying on a conflict, so concurrent updates never lose
one another and never leave a mix of two.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable

from stan_api import schemas, views
from stan_api.facade import Facade, Invalid, NotFound, QuotaExceeded, TimedOut, retrying_conflicts, talking_to_cluster
from stan_core import backfill as stan_backfill
from stan_core import catalog, ids, kube, models, schedule, validation


def _objects(facade: Facade) -> kube.Objects:
    return kube.Objects(facade.api, models.STAN_TASK)


def _body(facade: Facade, namespace: str, task_id: str) -> dict:
    facade.require_cluster()
    name = ids.object_name(task_id)
    body = facade.tasks.get(namespace, name) if name else None
    if body is None:
        raise NotFound()
    return body


def list_tasks_json(facade: Facade, namespace: str) -> bytes:
    """The tenant's task summaries, oldest first, as the JSON array the contract answers."""
    facade.require_cluster()
    return facade.tasks.rendered(namespace)


def get_task(facade: Facade, namespace: str, task_id: str) -> schemas.Task:
    return views.full(_body(facade, namespace, task_id))


def recent_runs(facade: Facade, namespace: str, task_id: str) -> list[schemas.Run]:
    status = views.task_status(_body(facade, namespace, task_id))
    return [schemas.Run.model_validate(run, from_attributes=True) for run in status.recentRuns]


def actions(facade: Facade) -> list[schemas.Action]:
    return [
        schemas.Action(name=name, kind="job" if name in facade.configuration.jobActions else "builtin")
        for name in catalog.action_names(facade.configuration)
    ]


def _validated(facade: Facade, spec: dict) -> None:
    _, errors = validation.guarded(validation.task_spec, spec, facade.configuration)
    if errors:
        raise Invalid(errors)


def _within_quota(facade: Facade, namespace: str) -> None:
    """The configured bound on a tenant's tasks, counted in the cache: concurrent creates may pass it by
    a few; a ResourceQuota on count/stantasks.stan.dev is the exact bound."""
    quota = facade.configuration.limits.tasksPerTenant
    if quota is not None and facade.tasks.count(namespace) >= quota:
        raise QuotaExceeded(f"the tenant has {quota} tasks, as many as it may have; delete one first")


async def create_task(facade: Facade, namespace: str, request: schemas.TaskCreate) -> schemas.Task:
    spec = request.model_dump(mode="json", exclude_none=True)
    _validated(facade, spec)
    facade.require_cluster()
    _within_quota(facade, namespace)
    manifest = {
        "apiVersion": models.API_VERSION,
        "kind": models.STAN_TASK.kind,
        "metadata": {"name": ids.new_object_name()},
        "spec": spec,
    }
    with talking_to_cluster():
        created = await _objects(facade).create(namespace, manifest)
    await facade.tasks.remember(created)
    scheduled = await _observed(facade, created)
    task = views.full(scheduled)
    if task.nextRunAt is None and views.task_status(scheduled).observedGeneration is None:
        # The operator has not answered yet: the same rules it uses say when the task runs next.
        task.nextRunAt = next(iter(_upcoming(facade, scheduled, 1)), None)
    return task


def upcoming_runs(facade: Facade, namespace: str, task_id: str, count: int) -> schemas.UpcomingRuns:
    return schemas.UpcomingRuns(id=task_id, runs=_upcoming(facade, _body(facade, namespace, task_id), count))


def _upcoming(facade: Facade, body: dict, count: int) -> list[datetime.datetime]:
    """None for a task whose spec the operator refuses."""
    spec, _ = validation.guarded(validation.task_spec, body["spec"], facade.configuration)
    if spec is None:
        return []
    return schedule.upcoming_of_task(
        body, spec, facade.configuration.allowSecondSchedules, now=datetime.datetime.now(datetime.UTC), count=count
    )


async def _observed(facade: Facade, written: dict) -> dict:
    """The object once the operator has taken in this generation, or as written if it is slow to."""
    namespace, name = written["metadata"]["namespace"], written["metadata"]["name"]
    generation = written["metadata"].get("generation", 1)

    def taken_in(body: dict | None) -> bool:
        return body is None or (views.task_status(body).observedGeneration or 0) >= generation

    try:
        body = await facade.tasks.wait_for(namespace, name, taken_in, facade.write_wait_seconds)
    except TimeoutError:
        body = None
    return body or written


async def update_task(facade: Facade, namespace: str, task_id: str, changes: dict) -> None:
    """Apply ``changes`` to the spec as a merge patch, in which null removes a field (back to its default);
    used by PUT, pause and resume alike."""
    name = _body(facade, namespace, task_id)["metadata"]["name"]
    objects = _objects(facade)

    async def attempt() -> dict:
        current = await objects.get(namespace, name)
        merged = {field: value for field, value in {**current["spec"], **changes}.items() if value is not None}
        _validated(facade, merged)
        patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": changes}
        return await objects.patch(namespace, name, patch)

    with talking_to_cluster():
        stored = await retrying_conflicts("task", attempt)
    await facade.tasks.remember(stored)
    await _observed(facade, stored)


async def _answer(
    facade: Facade, namespace: str, name: str, answered: Callable[[models.StanTaskStatus], bool], failing: str
) -> dict:
    """The task once its status answers a request made to the operator; 504 when it does not in time."""

    def done(body: dict | None) -> bool:
        return body is None or answered(views.task_status(body))

    try:
        body = await facade.tasks.wait_for(namespace, name, done, facade.operator_answer_seconds)
    except TimeoutError:
        raise TimedOut(f"the operator {failing} within {facade.operator_answer_seconds:g}s; is it running?") from None
    if body is None:
        raise NotFound()
    return body


async def run_now(facade: Facade, namespace: str, task_id: str) -> schemas.RunTriggered:
    """Ask the operator for a run now (an annotation with a request id) and answer once it has started."""
    name = _body(facade, namespace, task_id)["metadata"]["name"]
    request = uuid.uuid4().hex
    with talking_to_cluster():
        stored = await _objects(facade).patch(
            namespace, name, {"metadata": {"annotations": {models.RUN_REQUEST_ANNOTATION: request}}}
        )
    await facade.tasks.remember(stored)

    body = await _answer(
        facade, namespace, name, lambda status: status.lastRunRequest == request, "did not start the run"
    )
    run = views.task_status(body).latestRun
    assert run is not None
    return schemas.RunTriggered(runId=run.runId, result=run.result, message=run.message)


async def backfill(facade: Facade, namespace: str, task_id: str, request: schemas.BackfillRequest) -> schemas.Backfill:
    """Ask the operator to backfill a past range, refusing what it would refuse, and answer once it has
    taken the request up."""
    body = _body(facade, namespace, task_id)
    name = body["metadata"]["name"]
    spec, errors = validation.guarded(validation.task_spec, body["spec"], facade.configuration)
    if spec is None:
        raise Invalid(errors)
    status = views.task_status(body)
    created = datetime.datetime.fromisoformat(body["metadata"]["creationTimestamp"])
    until = stan_backfill.accounted_until(status, created)
    refused = stan_backfill.refusal(
        spec, status, request.start, request.end, until, facade.configuration.allowSecondSchedules
    )
    if refused is not None:
        raise Invalid([validation.FieldError(refused[0], refused[1])])
    asked = stan_backfill.Request(uuid.uuid4().hex, request.start, request.end)
    annotation = {"metadata": {"annotations": {models.BACKFILL_REQUEST_ANNOTATION: asked.annotation()}}}
    with talking_to_cluster():
        stored = await _objects(facade).patch(namespace, name, annotation)
    await facade.tasks.remember(stored)

    taken = await _answer(
        facade,
        namespace,
        name,
        lambda status: status.backfill is not None and status.backfill.request == asked.id,
        "did not take the backfill up",
    )
    state = views.task_status(taken).backfill
    assert state is not None
    if state.refusal:
        field, _, reason = state.refusal.partition(": ")
        raise Invalid([validation.FieldError(field, reason)])
    return schemas.Backfill(id=task_id, **state.model_dump(by_alias=True, exclude={"refusal", "through"}))


async def delete_task(facade: Facade, namespace: str, task_id: str) -> None:
    name = _body(facade, namespace, task_id)["metadata"]["name"]
    with talking_to_cluster():
        await _objects(facade).delete(namespace, name)
    await facade.tasks.forget(namespace, name)
