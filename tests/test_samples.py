"""The sample manifests stay valid: the webhook and the schema accept them, and the operator takes them in."""

from __future__ import annotations

from kubernetes_asyncio import client

from . import heartbeats, tasks
from .conftest import PROJECT_ROOT, eventually, kubectl


async def test_the_samples_apply_and_are_ready(api: client.ApiClient, namespace: str) -> None:
    result = kubectl("apply", "-n", namespace, "-f", str(PROJECT_ROOT / "crds" / "samples"))
    assert result.returncode == 0, result.stderr

    async def task_ready() -> bool:
        status = await tasks.status(api, namespace, "daily-workflow-audit")
        return any(c.type == "Ready" and c.status == "True" for c in status.conditions) and bool(status.nextRunAt)

    async def heartbeat_ran() -> bool:
        return (await heartbeats.status(api, namespace)).lastRunAt is not None

    await eventually(task_ready, timeout=20)
    await eventually(heartbeat_ran, timeout=20)
