"""The built-in checks, each reading the real state of the tenant's namespace."""

from __future__ import annotations

import asyncio
import datetime
import decimal

import aiohttp
from kubernetes_asyncio import client

from stan_core import models
from stan_operator import audit
from stan_operator.checks import CheckContext, Finding, quantity

OK, WARN, ERROR = models.CheckStatus.OK, models.CheckStatus.WARN, models.CheckStatus.ERROR
QUOTA_WARN_RATIO = decimal.Decimal("0.9")  # a float 0.9 is a hair above nine tenths
MODEL_PROBE_SECONDS = 5.0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


async def workflows(context: CheckContext) -> Finding:
    """Failed last runs are errors; active tasks whose next run is long overdue are warnings."""
    found = audit.findings(
        audit.statuses(await audit.list_tasks(context.api, context.namespace)), datetime.datetime.now(datetime.UTC)
    )
    if found.failed:
        return Finding(ERROR, f"{_plural(len(found.failed), 'workflow')} failed", found.failed + found.overdue)
    if found.overdue:
        return Finding(WARN, f"{_plural(len(found.overdue), 'workflow')} overdue", found.overdue)
    return Finding(OK, "All workflows healthy")


async def deployments(context: CheckContext) -> Finding:
    """Unavailable replicas are errors; a deployment scaled to zero is idle, a warning."""
    listing = await client.AppsV1Api(context.api).list_namespaced_deployment(context.namespace)
    unavailable, idle = [], []
    for deployment in listing.items:
        wanted = deployment.spec.replicas if deployment.spec.replicas is not None else 1
        status = deployment.status
        available = (status.available_replicas or 0) if status else 0
        if wanted == 0:
            idle.append(deployment.metadata.name)
        elif available < wanted or (status and status.unavailable_replicas):
            unavailable.append(f"{deployment.metadata.name}: {available}/{wanted} available")
    if unavailable:
        return Finding(ERROR, f"{_plural(len(unavailable), 'deployment')} unavailable", tuple(unavailable))
    if idle:
        return Finding(WARN, f"{_plural(len(idle), 'deployment')} idle", tuple(idle))
    if not listing.items:
        return Finding(OK, "No deployments")
    return Finding(OK, f"All {_plural(len(listing.items), 'deployment')} available")


async def credits(context: CheckContext) -> Finding:
    """ResourceQuota usage: at or over 90% of a hard limit warns, at or over 100% is an error."""
    listing = await client.CoreV1Api(context.api).list_namespaced_resource_quota(context.namespace)
    if not listing.items:
        return Finding(OK, "No resource quota in this namespace")
    exhausted, close = [], []
    for quota in listing.items:
        hard = (quota.status.hard if quota.status else None) or {}
        used = (quota.status.used if quota.status else None) or {}
        for resource, limit in sorted(hard.items()):
            limit_value = quantity.parse(limit)
            used_value = quantity.parse(used.get(resource, "0"))
            ratio = used_value / limit_value if limit_value else (1 if used_value else 0)
            line = f"{quota.metadata.name}/{resource}: {used.get(resource, '0')} of {limit} ({ratio:.0%})"
            if ratio >= 1:
                exhausted.append(line)
            elif ratio >= QUOTA_WARN_RATIO:
                close.append(line)
    if exhausted:
        return Finding(ERROR, f"{_plural(len(exhausted), 'quota')} exhausted", tuple(exhausted + close))
    if close:
        return Finding(WARN, f"{_plural(len(close), 'quota')} at 90% or more", tuple(close))
    return Finding(OK, "Resource quotas have room")


async def models_check(context: CheckContext) -> Finding:
    """Tasks must name models of the catalog, and every model's health URL must answer."""
    catalog = {model.id: model for model in context.configuration.modelCatalog}
    if not catalog:
        return Finding(OK, "No model catalog configured")
    problems = []
    for task in await audit.list_tasks(context.api, context.namespace):
        model_id = (task.get("spec") or {}).get("modelId")
        if model_id not in catalog:
            problems.append(f"task {task['metadata']['name']} uses unknown model {model_id!r}")
    probes = [model for model in catalog.values() if model.healthUrl]
    timeout = aiohttp.ClientTimeout(total=min(MODEL_PROBE_SECONDS, context.configuration.checkTimeoutSeconds / 2))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(_probe(session, model.healthUrl) for model in probes if model.healthUrl))
    problems += [f"model {model.id}: {answer}" for model, answer in zip(probes, answers, strict=True) if answer]
    if problems:
        return Finding(ERROR, f"{_plural(len(problems), 'model problem')}", tuple(problems))
    return Finding(OK, f"All {_plural(len(catalog), 'model')} available")


async def _probe(session: aiohttp.ClientSession, url: str) -> str | None:
    """None when the health URL answers 2xx, else what went wrong."""
    try:
        async with session.get(url) as response:
            return None if 200 <= response.status < 300 else f"health check answered HTTP {response.status}"
    except TimeoutError:
        return "health check timed out"
    except aiohttp.ClientError as error:
        return f"health check failed: {error}"


BUILTIN = {"workflows": workflows, "deployments": deployments, "credits": credits, "models": models_check}
