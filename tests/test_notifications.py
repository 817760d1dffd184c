"""Notifications, end to end: a real operator sends real HTTP to a receiver on loopback, and the API server
holds what was sent; the door refuses destinations off the allowlist."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import json
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from kubernetes_asyncio import client

from stan_controlplane import processes
from stan_core import models
from stan_operator import notifications

from . import heartbeats, tasks
from .conftest import OPERATOR_CONFIG, OperatorProcess, Tenant, eventually, kubectl_apply_refused
from .test_operator_metrics import scrape, value

SIGNING_KEY = "s3cret-signing-key"
OFF_LIST = "http://169.254.169.254/latest/meta-data"


@dataclasses.dataclass(frozen=True)
class Received:
    at: float
    """Wall-clock seconds, as the operator's timestamps are."""
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def document(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on loopback that records every POST and answers from a script: the statuses in
    ``answers`` first, then 200; ``stall_first`` holds the first request until released. ``/health``
    answers 200 and 500 in turn, a model's health URL that flips on every probe."""

    def __init__(self) -> None:
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Received] = []
        self.answers: list[int] = []
        self.stall_first = False
        self.released = asyncio.Event()
        self._probes = 0
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        stall = self.stall_first and not self.received
        answer = self.answers.pop(0) if self.answers else 200
        self.received.append(Received(at, dict(request.headers), body, answer))
        if stall:
            await self.released.wait()
        return web.Response(status=answer)

    async def _health(self, _: web.Request) -> web.Response:
        self._probes += 1
        return web.Response(status=200 if self._probes % 2 else 500)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def events(self) -> list[str]:
        return [item.document["event"] for item in self.received if item.answered == 200]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A listening receiver."""
    started = Receiver()
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
def own_operators(private_namespace: str) -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.stop()


def _config(receiver: Receiver, **more: object) -> dict:
    return {**OPERATOR_CONFIG, "notificationAllowlist": [f"127.0.0.1:{receiver.port}"], **more}


def start(started: list[OperatorProcess], namespace: str, config: dict, *args: str) -> OperatorProcess:
    process = OperatorProcess(f"{namespace}-{len(started)}", "--namespace", namespace, *args, config=config)
    started.append(process)
    return process


async def _secret(api: client.ApiClient, namespace: str, name: str, **data: str) -> None:
    await client.CoreV1Api(api).create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
    )


async def _hook(api: client.ApiClient, namespace: str, url: str, **more: object) -> dict:
    """A target whose URL is in a Secret. Inline URLs are checked at the door, by the admission webhook of
    the session's operator when one runs, whose allowlist names no receiver of these tests; a Secret's is
    checked by the sending operator, whose allowlist does."""
    await _secret(api, namespace, "hook", url=url)
    return {"urlFrom": {"secretKeyRef": {"name": "hook", "key": "url"}}, **more}


async def _received(receiver: Receiver, count: int, timeout: float = 30.0) -> list[str]:
    async def enough() -> list[str] | None:
        events = receiver.events()
        return events if len(events) >= count else None

    return await eventually(enough, timeout=timeout)


async def _settled(api: client.ApiClient, namespace: str) -> models.NotificationRecord:
    """The heartbeat's last notification once nothing is pending."""

    async def done() -> models.NotificationRecord | None:
        status = await heartbeats.status(api, namespace)
        return status.lastNotification if status.lastNotification and not status.notifications.pending else None

    return await eventually(done, timeout=30)


async def test_unhealthy_and_recovery_each_notify_once_signed(
    api: client.ApiClient, private_namespace: str, own_operators: list[OperatorProcess], receiver: Receiver
) -> None:
    await _secret(api, private_namespace, "signing", key=SIGNING_KEY)
    operator = start(own_operators, private_namespace, _config(receiver))
    target = await _hook(api, private_namespace, receiver.url, signingSecretRef={"name": "signing", "key": "key"})
    await heartbeats.create(api, private_namespace, checks=["explodes"], intervalMinutes=5, notify=[target])
    assert await _received(receiver, 1) == ["heartbeat.unhealthy"]

    first = receiver.received[0]
    expected = "sha256=" + hmac.new(SIGNING_KEY.encode(), first.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(first.headers[notifications.SIGNATURE_HEADER], expected), "the signature verifies"
    document = first.document
    assert document["version"] == "stan.dev/notification/v1"
    assert first.headers[notifications.IDEMPOTENCY_HEADER] == document["id"]
    assert document["object"]["kind"] == "StanHeartbeat" and document["object"]["namespace"] == private_namespace
    assert "explodes" in document["message"] and document["reminder"] is False

    await heartbeats.patch(api, private_namespace, {"spec": {"checks": ["greets"]}})
    assert await _received(receiver, 2) == ["heartbeat.unhealthy", "heartbeat.recovered"]
    record = await _settled(api, private_namespace)
    assert (record.event, record.outcome, record.attempts, record.target) == ("heartbeat.recovered", "delivered", 1, 0)

    async def three_more_runs() -> bool:
        runs = (await heartbeats.status(api, private_namespace)).recentRuns
        return len([run for run in runs if run.startedAt > record.time]) >= 3

    await eventually(three_more_runs, timeout=30)
    assert receiver.events() == ["heartbeat.unhealthy", "heartbeat.recovered"], "each change notified once"
    assert value(scrape(operator), "stan_notifications_total", channel="webhook", outcome="delivered") == 2
    await tasks.events_posted(api, private_namespace, "default", "Notified")


async def test_three_failures_in_a_row_notify_once_then_recovery(
    api: client.ApiClient, private_namespace: str, own_operators: list[OperatorProcess], receiver: Receiver
) -> None:
    start(own_operators, private_namespace, _config(receiver))
    await heartbeats.create(api, private_namespace, enabled=False, checks=["explodes"])
    await tasks.create(
        api,
        private_namespace,
        "flaky",
        action="run_heartbeat",
        schedule="* * * * * *",
        failureThreshold=3,
        notify=[await _hook(api, private_namespace, receiver.url)],
    )

    async def failed(count: int) -> list[models.Run] | None:
        runs = [r for r in (await tasks.status(api, private_namespace, "flaky")).recentRuns if r.result == "failed"]
        return runs if len(runs) >= count else None

    await eventually(lambda: failed(6), timeout=30)
    assert receiver.events() == ["task.failing"], "three failures make one notification, more make none"
    document = receiver.received[0].document
    assert document["object"]["taskId"] == "task_flaky" and document["run"]["result"] == "failed"
    assert document["message"].startswith("3 runs failed in a row")

    await heartbeats.patch(api, private_namespace, {"spec": {"checks": ["greets"]}})
    assert await _received(receiver, 2) == ["task.failing", "task.recovered"]
    assert receiver.received[1].document["run"]["result"] == "succeeded"


async def test_a_receiver_down_then_up_gets_it_after_retries(
    api: client.ApiClient, private_namespace: str, own_operators: list[OperatorProcess]
) -> None:
    """Not listening at first, then answering 500 once: the notification arrives, under one key."""
    down = Receiver()
    target = await _hook(api, private_namespace, down.url, type="webhook")
    start(own_operators, private_namespace, _config(down))
    await heartbeats.create(api, private_namespace, checks=["explodes"], intervalMinutes=5, notify=[target])

    async def pending() -> bool:
        return bool((await heartbeats.status(api, private_namespace)).notifications.pending)

    await eventually(pending, timeout=30)
    # Attempts meet a closed port meanwhile; nothing records them until one ends, which attempts >= 3 shows.
    await asyncio.sleep(2 * notifications.FIRST_RETRY_SECONDS)
    down.answers = [500]
    await down.start()
    try:
        assert await _received(down, 1, timeout=60) == ["heartbeat.unhealthy"]
        assert [item.answered for item in down.received] == [500, 200]
        assert len({item.headers[notifications.IDEMPOTENCY_HEADER] for item in down.received}) == 1
        record = await _settled(api, private_namespace)
        assert record.outcome == "delivered" and record.attempts >= 3, record
    finally:
        await down.stop()


async def test_a_leader_killed_mid_delivery_loses_nothing(
    api: client.ApiClient,
    private_namespace: str,
    own_operators: list[OperatorProcess],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The receiver holds the first delivery; its sender is killed then, and the new leader sends the
    notification it finds pending in status, under the same key."""
    monkeypatch.setenv("STAN_NAMESPACE", private_namespace)
    replicas = [start(own_operators, private_namespace, _config(receiver), "--leader-election") for _ in range(2)]
    holder = await eventually(lambda: _holder(api, private_namespace), timeout=30)
    receiver.stall_first = True
    target = await _hook(api, private_namespace, receiver.url)
    await heartbeats.create(api, private_namespace, checks=["explodes"], intervalMinutes=5, notify=[target])

    async def stalled() -> bool:
        return bool(receiver.received)

    await eventually(stalled, timeout=30)
    leader = next(r for r in replicas if holder.endswith(f"-{r.process.pid}"))
    leader.kill()
    killed_at = time.monotonic()
    receiver.released.set()

    async def resent() -> bool:
        return len(receiver.received) >= 2 and receiver.received[-1].answered == 200

    await eventually(resent, timeout=90)
    print(f"failover: the notification arrived again {time.monotonic() - killed_at:.1f}s after the kill")
    assert {item.document["event"] for item in receiver.received} == {"heartbeat.unhealthy"}
    assert len({item.headers[notifications.IDEMPOTENCY_HEADER] for item in receiver.received}) == 1
    record = await _settled(api, private_namespace)
    assert (record.event, record.outcome) == ("heartbeat.unhealthy", "delivered")


async def _holder(api: client.ApiClient, namespace: str) -> str | None:
    with contextlib.suppress(client.ApiException):
        lease = await client.CoordinationV1Api(api).read_namespaced_lease("stan-operator", namespace)
        return lease.spec.holder_identity
    return None


async def test_a_secret_url_off_the_allowlist_is_refused_when_sending(
    api: client.ApiClient, private_namespace: str, own_operators: list[OperatorProcess], receiver: Receiver
) -> None:
    target = await _hook(api, private_namespace, OFF_LIST)
    start(own_operators, private_namespace, _config(receiver))
    await heartbeats.create(api, private_namespace, checks=["explodes"], intervalMinutes=5, notify=[target])
    record = await _settled(api, private_namespace)
    assert (record.outcome, record.attempts) == ("refused", 1)
    assert "notificationAllowlist" in record.message and "169.254" not in record.message
    await tasks.events_posted(api, private_namespace, "default", "NotificationFailed")
    assert receiver.received == []


async def test_the_door_refuses_a_url_off_the_allowlist(
    http: httpx.AsyncClient, tenant: Tenant, namespace: str, tmp_path: Path
) -> None:
    task = {"name": "n", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "model_abc123"}
    refused = await http.post(
        "/api/v1/stan/tasks", json={**task, "notify": [{"url": OFF_LIST}]}, headers=tenant.headers
    )
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"][0]
    assert detail["loc"] == ["body", "notify", 0, "url"] and "notificationAllowlist" in detail["msg"]
    refused = await http.put("/api/v1/stan/heartbeat", json={"notify": [{"url": OFF_LIST}]}, headers=tenant.headers)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "notify", 0, "url"]

    said = kubectl_apply_refused(
        tmp_path,
        f"""\
apiVersion: stan.dev/v1alpha1
kind: StanTask
metadata: {{name: nosy, namespace: {namespace}}}
spec:
  name: Nosy
  action: audit_workflows
  schedule: "0 9 * * *"
  modelId: model_abc123
  notify: [{{url: "{OFF_LIST}"}}]
""",
    )
    assert "notify.0.url" in said and "notificationAllowlist" in said, said


async def test_the_api_takes_notify_and_shows_it_without_secrets(http: httpx.AsyncClient, tenant: Tenant) -> None:
    """A Secret reference passes the door (its URL is checked when sending) and reads back as given."""
    target = {
        "type": "slack",
        "urlFrom": {"secretKeyRef": {"name": "hook", "key": "url"}},
        "signingSecretRef": {"name": "signing", "key": "key"},
    }
    task = {"name": "n", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "model_abc123"}
    created = await http.post(
        "/api/v1/stan/tasks", json={**task, "notify": [target], "failureThreshold": 2}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["notify"] == [target] and created.json()["failureThreshold"] == 2
    shown = (await http.get(f"/api/v1/stan/tasks/{created.json()['id']}", headers=tenant.headers)).json()
    assert shown["notify"] == [target] and shown["failureThreshold"] == 2
    updated = await http.put(
        f"/api/v1/stan/tasks/{created.json()['id']}", json={"deadManGraceSeconds": 600}, headers=tenant.headers
    )
    assert updated.json() == {"updated": True}
    shown = (await http.get(f"/api/v1/stan/tasks/{created.json()['id']}", headers=tenant.headers)).json()
    assert shown["deadManGraceSeconds"] == 600

    put = await http.put(
        "/api/v1/stan/heartbeat", json={"notify": [target], "repeatIntervalSeconds": 3600}, headers=tenant.headers
    )
    assert put.status_code == 200, put.text
    heartbeat = (await http.get("/api/v1/stan/heartbeat", headers=tenant.headers)).json()
    assert heartbeat["notify"] == [target] and heartbeat["repeatIntervalSeconds"] == 3600
    assert {"enabled", "checks", "intervalMinutes", "availableChecks"} <= heartbeat.keys()
    both = await http.post(
        "/api/v1/stan/tasks",
        json={**task, "notify": [{"url": "https://x.example/", **target}]},
        headers=tenant.headers,
    )
    assert both.status_code == 422 and "exactly one of url and urlFrom" in both.text


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@pytest.mark.slow
async def test_delay_from_a_state_change_to_its_receipt(
    api: client.ApiClient, private_namespace: str, own_operators: list[OperatorProcess], receiver: Receiver
) -> None:
    """A task whose runs fail and succeed in turn (its model's health URL flips on every probe) notifies on
    every run; the delay is from the run's finishedAt to the receiver's receipt."""
    catalog = [{"id": "model_abc123", "healthUrl": f"http://127.0.0.1:{receiver.port}/health"}]
    start(own_operators, private_namespace, _config(receiver, modelCatalog=catalog))
    await heartbeats.create(api, private_namespace, enabled=False, checks=["models"])
    await tasks.create(
        api,
        private_namespace,
        "flipper",
        action="run_heartbeat",
        schedule="* * * * * *",
        notify=[await _hook(api, private_namespace, receiver.url)],
    )
    wanted = 60
    await _received(receiver, wanted, timeout=wanted * 3)
    delays = []
    for item in receiver.received[:wanted]:
        finished = datetime.datetime.fromisoformat(item.document["run"]["finishedAt"])
        delays.append(item.at - finished.timestamp())
    events = [item.document["event"] for item in receiver.received[:wanted]]
    assert set(events) == {"task.failing", "task.recovered"}
    print(
        f"notification delay over {len(delays)} notifications: p50 {statistics.median(delays) * 1000:.0f} ms, "
        f"p99 {_percentile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
    )
    assert all(delay >= -0.01 for delay in delays), "no notification arrives before its change"
