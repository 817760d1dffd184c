"""StanHeartbeat against the real API server with the operator running: every check's outcomes
from real objects, on-demand and periodic runs, failing checks, validation."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes_asyncio import client

from stan_core import models

from . import heartbeats, tasks
from .conftest import (
    OPERATOR_CONFIG,
    POD_IMAGE,
    OperatorProcess,
    eventually,
    kubectl_apply_refused,
    sleeping,
    with_node,
    without_node,
)

OK, WARN, ERROR = models.CheckStatus.OK, models.CheckStatus.WARN, models.CheckStatus.ERROR


async def run_now(api: client.ApiClient, namespace: str) -> models.StanHeartbeatStatus:
    """Ask for a run through the resource, as the facade does, and wait for its answer."""
    request = await heartbeats.request_run(api, namespace)

    async def answered() -> models.StanHeartbeatStatus | None:
        current = await heartbeats.status(api, namespace)
        return current if current.runRequest == request else None

    return await eventually(answered, timeout=15, interval=0.05)


async def test_an_on_demand_run_answers_quickly_with_fresh_results(api: client.ApiClient, namespace: str) -> None:
    await heartbeats.create(api, namespace, enabled=False)
    started = time.monotonic()
    result = await run_now(api, namespace)
    elapsed = time.monotonic() - started
    assert [(r.check, r.status, r.message) for r in result.results] == [
        ("workflows", OK, "All workflows healthy"),
        ("deployments", OK, "No deployments"),
        ("credits", OK, "No resource quota in this namespace"),
    ]
    assert result.healthy is True and result.issues == []
    assert result.nextRunAt is None, "a disabled heartbeat runs only on demand"
    assert all(r.durationSeconds is not None for r in result.results)
    print(f"on-demand heartbeat answered in {elapsed * 1000:.0f} ms")


async def test_failing_checks_become_error_results_and_the_others_still_run(
    api: client.ApiClient, namespace: str
) -> None:
    await heartbeats.create(api, namespace, enabled=False, checks=["explodes", "hangs", "greets"])
    result = heartbeats.by_check(await run_now(api, namespace))
    assert (result["explodes"].status, result["explodes"].message) == (
        ERROR,
        "check failed: RuntimeError: the plugin broke",
    )
    assert (result["hangs"].status, result["hangs"].message) == (ERROR, "timed out after 2s")
    assert (result["greets"].status, result["greets"].message) == (OK, f"hello from {namespace}")


async def test_workflows_reports_a_failed_run_as_an_error(api: client.ApiClient, namespace: str) -> None:
    """A run_heartbeat task whose checks find an issue fails; the workflows check then flags it."""
    await heartbeats.create(api, namespace, enabled=False, checks=["explodes"])
    await tasks.create(api, namespace, "checker", action="run_heartbeat", schedule="*/2 * * * * *")

    async def failed_run() -> models.Run | None:
        run = (await tasks.status(api, namespace, "checker")).latestRun
        return run if run and run.result == models.RunResult.FAILED else None

    run = await eventually(failed_run, timeout=20)
    assert run.message == "unhealthy: explodes error: check failed: RuntimeError: the plugin broke"
    await tasks.patch_spec(api, namespace, "checker", paused=True)
    await heartbeats.patch(api, namespace, {"spec": {"checks": ["workflows"]}})
    workflows = heartbeats.by_check(await run_now(api, namespace))["workflows"]
    assert (workflows.status, workflows.message, workflows.details) == (ERROR, "1 workflow failed", ["task_checker"])


def _deployment(name: str, replicas: int, script: str) -> dict:
    """A Deployment of busybox Pods running the shell ``script``."""
    command = ["/bin/sh", "-c", script]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "app", "image": POD_IMAGE, "command": command}],
                },
            },
        },
    }


async def _deployments_check(
    api: client.ApiClient, namespace: str, expected: models.CheckStatus
) -> models.CheckResult | None:
    found = heartbeats.by_check(await run_now(api, namespace))["deployments"]
    return found if found.status == expected else None


async def _idle_web(api: client.ApiClient, namespace: str) -> None:
    """The Deployment ``web``, whose container sleeps, created with no replicas: idle, a warning."""
    await heartbeats.create(api, namespace, enabled=False, checks=["deployments"])
    await client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("web", 0, sleeping("3600")))
    idle = await eventually(lambda: _deployments_check(api, namespace, WARN), timeout=20)
    assert (idle.message, idle.details) == ("1 deployment idle", ["web"])


@with_node
async def test_deployments_idle_available_and_crash_looping(api: client.ApiClient, namespace: str) -> None:
    """Real Pods: one that keeps running makes its Deployment available, one whose container exits 1
    crash-loops and leaves its Deployment unavailable."""
    await _idle_web(api, namespace)
    apps = client.AppsV1Api(api)

    started = time.monotonic()
    await apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 1}})
    available = await eventually(lambda: _deployments_check(api, namespace, OK), timeout=60)
    assert available.message == "All 1 deployment available"
    print(f"a Deployment scaled to 1 found available {time.monotonic() - started:.1f}s later")

    await apps.create_namespaced_deployment(namespace, _deployment("crasher", 1, "exit 1"))

    async def restarted_after_exiting() -> client.V1ContainerStateTerminated | None:
        pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=crasher")
        statuses = [status for pod in pods.items for status in pod.status.container_statuses or []]
        return next(
            (
                status.state.terminated or status.last_state.terminated
                for status in statuses
                if status.restart_count >= 1
            ),
            None,
        )

    assert (await eventually(restarted_after_exiting, timeout=60)).exit_code == 1
    unavailable = await eventually(lambda: _deployments_check(api, namespace, ERROR), timeout=20)
    assert (unavailable.message, unavailable.details) == ("1 deployment unavailable", ["crasher: 0/1 available"])


async def _ready_pods(api: client.ApiClient, namespace: str, node: str) -> None:
    """Do the kubelet's part for the namespace's pods (none runs here): bind them and report them Ready."""
    core = client.CoreV1Api(api)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for pod in (await core.list_namespaced_pod(namespace)).items:
        if not pod.spec.node_name:
            await core.create_namespaced_binding(
                namespace,
                client.V1Binding(
                    metadata=client.V1ObjectMeta(name=pod.metadata.name),
                    target=client.V1ObjectReference(kind="Node", name=node),
                ),
                _preload_content=False,
            )
        await core.patch_namespaced_pod_status(
            pod.metadata.name,
            namespace,
            {
                "status": {
                    "phase": "Running",
                    "startTime": now,
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    ],
                    "containerStatuses": [
                        {
                            "name": "app",
                            "image": POD_IMAGE,
                            "imageID": "",
                            "ready": True,
                            "restartCount": 0,
                            "started": True,
                            "state": {"running": {"startedAt": now}},
                        }
                    ],
                }
            },
        )


@pytest.fixture
async def fake_node(api: client.ApiClient) -> str:
    """A Node object without a kubelet, for pods to be bound to."""
    name = "fake-node"
    core = client.CoreV1Api(api)
    try:
        await core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=name)))
    except client.ApiException as error:
        if error.status != 409:
            raise
    return name


@without_node
async def test_deployments_idle_unavailable_and_available_as_the_kubelet_would_report(
    api: client.ApiClient, namespace: str, fake_node: str
) -> None:
    await _idle_web(api, namespace)
    apps = client.AppsV1Api(api)
    await apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 1}})
    unavailable = await eventually(lambda: _deployments_check(api, namespace, ERROR), timeout=20)
    assert (unavailable.message, unavailable.details) == ("1 deployment unavailable", ["web: 0/1 available"])

    async def pods_made_ready() -> models.CheckResult | None:
        await _ready_pods(api, namespace, fake_node)
        return await _deployments_check(api, namespace, OK)

    available = await eventually(pods_made_ready, timeout=30, interval=1)
    assert available.message == "All 1 deployment available"


async def test_credits_room_close_to_the_limit_and_exhausted(api: client.ApiClient, namespace: str) -> None:
    await heartbeats.create(api, namespace, enabled=False, checks=["credits"])
    core = client.CoreV1Api(api)

    async def credits(expected: models.CheckStatus) -> models.CheckResult | None:
        found = heartbeats.by_check(await run_now(api, namespace))["credits"]
        return found if found.status == expected else None

    await core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="budget"), spec=client.V1ResourceQuotaSpec(hard={"configmaps": "10"})
        ),
    )
    room = await eventually(lambda: credits(OK), timeout=20)
    assert room.message == "Resource quotas have room"

    async def configmaps(count: int) -> None:
        """Create ConfigMaps until the quota counts ``count`` (quota admission updates it on each create)."""
        while int((await core.read_namespaced_resource_quota("budget", namespace)).status.used["configmaps"]) < count:
            await core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="cm-"))
            )

    await eventually(lambda: _quota_counted(core, namespace), timeout=20)
    await eventually(lambda: _root_ca_published(core, namespace), timeout=20)
    await configmaps(9)
    close = await eventually(lambda: credits(WARN), timeout=20)
    assert (close.message, close.details) == ("1 quota at 90% or more", ["budget/configmaps: 9 of 10 (90%)"])
    await configmaps(10)
    exhausted = await eventually(lambda: credits(ERROR), timeout=20)
    assert (exhausted.message, exhausted.details) == ("1 quota exhausted", ["budget/configmaps: 10 of 10 (100%)"])


async def _root_ca_published(core: client.CoreV1Api, namespace: str) -> bool:
    """kube-controller-manager adds the kube-root-ca.crt ConfigMap, which the quota counts too."""
    names = [item.metadata.name for item in (await core.list_namespaced_config_map(namespace)).items]
    return "kube-root-ca.crt" in names


async def _quota_counted(core: client.CoreV1Api, namespace: str) -> bool:
    quota = await core.read_namespaced_resource_quota("budget", namespace)
    return bool(quota.status and quota.status.used)


class ModelEndpoint:
    """A local HTTP server standing in for a model's health URL: up, down or slow. A slow one holds its
    answers until it is up or down again, so only the prober's own time limit ends a probe."""

    def __init__(self) -> None:
        self._answering = threading.Event()
        self.mode = "up"
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint._answering.wait()
                self.send_response(200 if endpoint.mode == "up" else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        if mode == "slow":
            self._answering.clear()
        else:
            self._answering.set()

    def close(self) -> None:
        self.mode = "down"  # lets held answers go
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model_endpoint() -> Iterator[ModelEndpoint]:
    endpoint = ModelEndpoint()
    yield endpoint
    endpoint.close()


async def test_models_catalog_membership_and_health(
    api: client.ApiClient, private_namespace: str, model_endpoint: ModelEndpoint
) -> None:
    catalog = [{"id": "model_abc123", "healthUrl": model_endpoint.url}, {"id": "model_local"}]
    operator = OperatorProcess(
        private_namespace, "--namespace", private_namespace, config={**OPERATOR_CONFIG, "modelCatalog": catalog}
    )
    try:
        await heartbeats.create(api, private_namespace, enabled=False, checks=["models"])
        await tasks.create(api, private_namespace, "known", schedule="0 9 * * *")
        up = heartbeats.by_check(await run_now(api, private_namespace))["models"]
        assert (up.status, up.message) == (OK, "All 2 models available")

        model_endpoint.mode = "down"
        down = heartbeats.by_check(await run_now(api, private_namespace))["models"]
        assert (down.status, down.details) == (ERROR, ["model model_abc123: health check answered HTTP 503"])

        model_endpoint.mode = "slow"
        slow = heartbeats.by_check(await run_now(api, private_namespace))["models"]
        assert (slow.status, slow.details) == (ERROR, ["model model_abc123: health check timed out"])

        model_endpoint.mode = "up"
        await tasks.create(api, private_namespace, "stray", schedule="0 9 * * *", modelId="model_gone")
        stray = heartbeats.by_check(await run_now(api, private_namespace))["models"]
        assert (stray.status, stray.message, stray.details) == (
            ERROR,
            "1 model problem",
            ["task stray uses unknown model 'model_gone'"],
        )
    finally:
        operator.stop()


async def test_periodic_runs_follow_the_interval_and_stop_when_disabled(api: client.ApiClient, namespace: str) -> None:
    """intervalMinutes: 5 is one second here: the session's operator counts a minute as 0.2 s."""
    interval_minutes = 5
    await heartbeats.create(api, namespace, enabled=True, intervalMinutes=interval_minutes, checks=["workflows"])
    seen: set[datetime.datetime] = set()

    async def several_runs() -> models.StanHeartbeatStatus | None:
        current = await heartbeats.status(api, namespace)
        if current.lastRunAt:
            seen.add(current.lastRunAt)
        return current if len(seen) >= 3 else None

    running = await eventually(several_runs, timeout=20)
    assert running.nextRunAt is not None
    assert datetime.timedelta(0) < running.nextRunAt - running.lastRunAt <= datetime.timedelta(seconds=1.5)

    await heartbeats.patch(api, namespace, {"spec": {"intervalMinutes": 60}})

    async def rescheduled() -> models.StanHeartbeatStatus | None:
        current = await heartbeats.status(api, namespace)
        gap = current.nextRunAt - current.lastRunAt if current.nextRunAt and current.lastRunAt else None
        return current if gap and gap > datetime.timedelta(seconds=10) else None

    await eventually(rescheduled, timeout=10)
    # Disabled at the short interval, so that a heartbeat that ran on regardless would show within a few seconds.
    await heartbeats.patch(api, namespace, {"spec": {"enabled": False, "intervalMinutes": interval_minutes}})

    async def stopped() -> models.StanHeartbeatStatus | None:
        current = await heartbeats.status(api, namespace)
        return current if current.nextRunAt is None else None

    last = (await eventually(stopped, timeout=10)).lastRunAt
    # Nothing to wait for: a disabled heartbeat writes nothing. Two of its intervals pass without a run.
    await asyncio.sleep(2 * interval_minutes * OPERATOR_CONFIG["heartbeatMinuteSeconds"])
    assert (await heartbeats.status(api, namespace)).lastRunAt == last, "a disabled heartbeat does not run"


async def test_a_change_of_health_is_an_event(api: client.ApiClient, namespace: str) -> None:
    await heartbeats.create(api, namespace, enabled=False, checks=["greets"])
    assert (await run_now(api, namespace)).healthy is True
    await heartbeats.patch(api, namespace, {"spec": {"checks": ["explodes"]}})
    assert (await run_now(api, namespace)).healthy is False
    await heartbeats.patch(api, namespace, {"spec": {"checks": ["greets"]}})
    assert (await run_now(api, namespace)).healthy is True
    reasons = await tasks.events_posted(api, namespace, models.HEARTBEAT_NAME, "Unhealthy", "Healthy")
    assert reasons.count("Unhealthy") == 1 and reasons.count("Healthy") == 1


async def test_kubectl_apply_of_an_unknown_check_is_refused(namespace: str, tmp_path) -> None:
    refusal = kubectl_apply_refused(
        tmp_path,
        f"apiVersion: {models.API_VERSION}\nkind: StanHeartbeat\n"
        f"metadata: {{name: default, namespace: {namespace}}}\n"
        "spec: {checks: [workflows, vibes]}\n",
    )
    assert (
        'admission webhook "stanheartbeat.stan.dev" denied the request: invalid StanHeartbeat: checks: '
        "unknown check 'vibes'; available: workflows, deployments, credits, models, explodes, greets, hangs"
    ) in refusal
