"""The facade's door against strangers and greedy clients: bodies capped while they stream, keys checked
before any body is read, rate limits, quotas, text without control characters, joined heartbeat runs.

Each runs against the real control plane with the real facade (and operator) processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes_asyncio import client, watch

from stan_api import guard
from stan_controlplane import cluster
from stan_core import kube, models

from .conftest import OPERATOR_CONFIG, FacadeProcess, Tenant, known_to, kubectl, kubectl_apply_refused, new_tenant

TASK = {"name": "Door test", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "model_abc123"}
UPLOAD_BYTES = 64 * 1024 * 1024
CHUNK = b"x" * (64 * 1024)
LIMITS = {
    "requestsPerSecondPerKey": 1,
    "burstPerKey": 5,
    "failedAuthenticationsPerMinute": 5,
    "tasksPerTenant": 2,
    "maxConcurrentRequests": 8,
}


@pytest.fixture
def strict_facade(control_plane: cluster.ControlPlane | None) -> Iterator[FacadeProcess]:
    """A facade of its own with small limits, so that tests can meet them."""
    process = FacadeProcess("facade-strict", config={**OPERATOR_CONFIG, "limits": LIMITS})
    yield process
    process.stop()


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


async def _chunked_upload(url: str, headers: dict[str, str]) -> int:
    """POST up to 64 MiB with chunked framing; the status the facade answered, however early."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(
        f"POST /api/v1/stan/tasks HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: chunked\r\n{head}\r\n".encode()
    )
    frame = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
    status_line = asyncio.create_task(reader.readline())
    with contextlib.suppress(ConnectionError):
        for _ in range(UPLOAD_BYTES // len(CHUNK)):
            if status_line.done():
                break
            writer.write(frame)
            await writer.drain()
        else:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    line = await asyncio.wait_for(status_line, 30)
    writer.close()
    return int(line.split()[1])


async def test_bodies_are_capped_while_they_stream_and_strangers_are_refused_unread(
    facade: FacadeProcess, tenant: Tenant
) -> None:
    async with httpx.AsyncClient(base_url=facade.url, timeout=30) as http:
        declared = await http.post(
            "/api/v1/stan/tasks",
            content=b"{" + b" " * 200_000 + b"}",
            headers={**tenant.headers, "Content-Type": "application/json"},
        )
        assert declared.status_code == 413, declared.text

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b" " * 50_000

        streamed = await http.post("/api/v1/stan/tasks", content=chunks(), headers=tenant.headers)
        assert (streamed.status_code, streamed.json()) == (
            413,
            {"detail": f"the body exceeds {guard.MAX_BODY_BYTES} bytes"},
        )

    pid = facade.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    idle = _rss_kib(pid, "VmRSS")
    keyed = {"X-API-Key": tenant.key}
    started = time.monotonic()
    answers = await asyncio.gather(*(_chunked_upload(facade.url, keyed if n % 2 else {}) for n in range(20)))
    elapsed = time.monotonic() - started
    peak = _rss_kib(pid, "VmHWM")
    print(
        f"20 concurrent 64 MiB chunked uploads refused in {elapsed:.2f}s: idle RSS {idle / 1024:.1f} MiB, "
        f"peak {peak / 1024:.1f} MiB (+{(peak - idle) / 1024:.1f} MiB)"
    )
    assert (answers[::2], answers[1::2]) == ([401] * 10, [413] * 10)
    assert peak - idle <= 20 * 1024


async def test_rate_limits_answer_429_with_retry_after(
    strict_facade: FacadeProcess, api: client.ApiClient, namespace: str
) -> None:
    tenant = await known_to(strict_facade, await new_tenant(api, namespace))
    async with httpx.AsyncClient(base_url=strict_facade.url, timeout=30) as http:
        codes = [(await http.get("/api/v1/stan/tasks", headers=tenant.headers)) for _ in range(8)]
        assert [answer.status_code for answer in codes].count(429) >= 2, [a.status_code for a in codes]
        throttled = next(answer for answer in codes if answer.status_code == 429)
        assert throttled.json() == {"detail": "too many requests for this API key"}
        assert int(throttled.headers["Retry-After"]) >= 1
        await asyncio.sleep(int(throttled.headers["Retry-After"]))
        assert (await http.get("/api/v1/stan/tasks", headers=tenant.headers)).status_code == 200

        guesses = [
            (await http.get("/api/v1/stan/tasks", headers={"X-API-Key": f"stan_guess{n:06d}"})) for n in range(8)
        ]
        assert [answer.status_code for answer in guesses][:3] == [401, 401, 401]
        blocked = guesses[-1]
        assert (blocked.status_code, blocked.json()) == (
            429,
            {"detail": "too many failed authentications from this address"},
        )
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60


async def test_a_tenant_has_a_task_quota(strict_facade: FacadeProcess, api: client.ApiClient, namespace: str) -> None:
    tenant = await known_to(strict_facade, await new_tenant(api, namespace))
    async with httpx.AsyncClient(base_url=strict_facade.url, timeout=30) as http:
        for _ in range(2):
            assert (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).status_code == 201
        refused = await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)
        assert (refused.status_code, refused.json()) == (
            403,
            {"detail": "the tenant has 2 tasks, as many as it may have; delete one first"},
        )


async def test_a_resource_quota_bounds_kubectl_and_the_api_alike(
    http: httpx.AsyncClient, tenant: Tenant, tmp_path: Path
) -> None:
    quota = tmp_path / "quota.yaml"
    quota.write_text(f"""
apiVersion: v1
kind: ResourceQuota
metadata: {{name: stantasks, namespace: {tenant.namespace}}}
spec: {{hard: {{count/stantasks.stan.dev: "1"}}}}
""")
    kubectl("apply", "-f", str(quota))
    for _ in range(100):  # the quota controller fills in status.hard; until then admission waits
        if kubectl("get", "resourcequota", "-n", tenant.namespace, "stantasks", "-o", "jsonpath={.status.hard}").stdout:
            break
        await asyncio.sleep(0.1)
    assert (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).status_code == 201
    over = await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)
    assert over.status_code == 403 and "exceeded quota" in over.json()["detail"], over.text
    said = kubectl_apply_refused(
        tmp_path,
        f"""
apiVersion: stan.dev/v1alpha1
kind: StanTask
metadata: {{name: second, namespace: {tenant.namespace}}}
spec: {{name: Second, action: audit_workflows, schedule: "0 9 * * *", modelId: model_abc123}}
""",
    )
    assert "exceeded quota" in said and "count/stantasks.stan.dev" in said


@pytest.mark.parametrize(
    "text", ["nul\x00byte", "two\nlines", "\x1b[31mred\x1b[0m", "evil\u202egnp.exe", "isolate\u2066x\u2069", "c1\x85"]
)
async def test_control_and_bidi_override_characters_are_refused_naming_the_field(
    http: httpx.AsyncClient, tenant: Tenant, text: str
) -> None:
    for field in ("name", "action", "schedule", "modelId", "timeZone"):
        answer = await http.post("/api/v1/stan/tasks", json={**TASK, field: text}, headers=tenant.headers)
        assert answer.status_code == 422, (field, answer.text)
        detail = answer.json()["detail"]
        assert detail[0]["loc"] == ["body", field]
        assert "control or bidirectional-override characters" in detail[0]["msg"]
    task = (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).json()
    updated = await http.put(f"/api/v1/stan/tasks/{task['id']}", json={"name": text}, headers=tenant.headers)
    assert (updated.status_code, updated.json()["detail"][0]["loc"]) == (422, ["body", "name"])
    checks = await http.put("/api/v1/stan/heartbeat", json={"checks": [text]}, headers=tenant.headers)
    assert (checks.status_code, checks.json()["detail"][0]["loc"]) == (422, ["body", "checks", 0])


async def test_ordinary_unicode_stays_allowed(http: httpx.AsyncClient, tenant: Tenant) -> None:
    name = "Größenbericht ✓ 日本語 עברית \u200f emoji 🚀"
    created = await http.post("/api/v1/stan/tasks", json={**TASK, "name": name}, headers=tenant.headers)
    assert (created.status_code, created.json()["name"]) == (201, name)


async def test_heartbeat_checks_are_bounded(http: httpx.AsyncClient, tenant: Tenant) -> None:
    many = await http.put("/api/v1/stan/heartbeat", json={"checks": ["workflows"] * 5000}, headers=tenant.headers)
    assert many.status_code == 422 and many.json()["detail"][0]["loc"] == ["body", "checks"], many.text


async def _run_requests_seen(api: client.ApiClient, namespace: str, seen: set[str]) -> None:
    listing, arguments = kube.Objects(api, models.STAN_HEARTBEAT).listing(namespace)
    async with watch.Watch() as stream:
        async for event in stream.stream(listing, **arguments):
            annotations = event["object"]["metadata"].get("annotations") or {}
            if models.RUN_REQUEST_ANNOTATION in annotations:
                seen.add(annotations[models.RUN_REQUEST_ANNOTATION])


async def test_run_requests_while_one_is_in_flight_join_it(
    http: httpx.AsyncClient, tenant: Tenant, api: client.ApiClient
) -> None:
    # "hangs" takes the checks' whole time limit (2 s here), so the first run is in flight while the rest ask.
    configured = await http.put("/api/v1/stan/heartbeat", json={"checks": ["hangs"]}, headers=tenant.headers)
    assert configured.status_code == 200, configured.text
    seen: set[str] = set()
    watching = asyncio.create_task(_run_requests_seen(api, tenant.namespace, seen))
    try:
        answers = await asyncio.gather(
            *(http.post("/api/v1/stan/heartbeat/run", headers=tenant.headers) for _ in range(10))
        )
    finally:
        watching.cancel()
    assert [answer.status_code for answer in answers] == [200] * 10
    assert len({answer.text for answer in answers}) == 1, "all ten answers are the one run's"
    assert len(seen) == 1, f"one run was asked of the operator, not {len(seen)}"


async def test_requests_beyond_the_concurrency_bound_wait_then_get_503(
    strict_facade: FacadeProcess, api: client.ApiClient, namespace: str
) -> None:
    first = await known_to(strict_facade, await new_tenant(api, namespace))
    second = await known_to(strict_facade, await new_tenant(api, namespace, shared=True))
    holding_tenants = [first] * 4 + [second] * 4  # as many as the places (LIMITS)
    sending = asyncio.Barrier(len(holding_tenants) + 1)
    released = asyncio.Event()

    async def held_body() -> AsyncIterator[bytes]:
        """A body begun once its request's headers are out and ended only when the test is done, so that
        its request holds a place until then."""
        await sending.wait()
        yield b" "
        await released.wait()
        yield b" "

    async with httpx.AsyncClient(base_url=strict_facade.url, timeout=60) as http:
        holders = [
            asyncio.create_task(http.post("/api/v1/stan/tasks", content=held_body(), headers=tenant.headers))
            for tenant in holding_tenants
        ]
        try:
            # Every holder has sent its headers: the facade reads them, and gives each a place, before it answers
            # the probe below.
            async with asyncio.timeout(30):
                await sending.wait()
            started = time.monotonic()
            health = await http.get("/healthz")
            assert (health.status_code, time.monotonic() - started < 1) == (200, True), "probes never wait"
            turned_away = await http.get("/api/v1/stan/tasks", headers=first.headers)
            waited = time.monotonic() - started
        finally:
            released.set()
        assert turned_away.status_code == 503 and turned_away.headers["Retry-After"] == "1", turned_away.text
        assert guard.PLACE_WAIT_SECONDS <= waited < guard.PLACE_WAIT_SECONDS + 2
        assert [answer.status_code for answer in await asyncio.gather(*holders)] == [422] * 8


async def test_kubectl_apply_of_control_characters_is_refused_naming_the_field(tenant: Tenant, tmp_path: Path) -> None:
    manifest = {
        "apiVersion": models.API_VERSION,
        "kind": models.STAN_TASK.kind,
        "metadata": {"name": "escape", "namespace": tenant.namespace},
        "spec": {**TASK, "name": "\x1b]0;owned\x07 report"},
    }
    said = kubectl_apply_refused(tmp_path, json.dumps(manifest))
    assert "name: must not contain control or bidirectional-override characters (U+001B at position 0)" in said, said
