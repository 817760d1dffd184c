"""Faults and abuse: concurrent writers, nasty input at volume, an API server outage."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from kubernetes_asyncio import client

from stan_controlplane import cluster
from stan_core import install, kube

from .conftest import STATE_DIR, FacadeProcess, OperatorProcess, Tenant, eventually, new_tenant

TASK = {"name": "Nightly", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "model_abc123"}
EVERY_2S = "*/2 * * * * *"
TICK = datetime.timedelta(seconds=2)


async def test_concurrent_puts_leave_one_whole_write(http: httpx.AsyncClient, tenant: Tenant) -> None:
    task = (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).json()
    writes = {
        f"writer {writer}.{attempt}": f"{writer * 5 + attempt} 9 * * *" for writer in range(8) for attempt in range(5)
    }

    async def writer(index: int) -> list[int]:
        codes = []
        for attempt in range(5):
            name = f"writer {index}.{attempt}"
            answer = await http.put(
                f"/api/v1/stan/tasks/{task['id']}",
                json={"name": name, "schedule": writes[name]},
                headers=tenant.headers,
            )
            codes.append(answer.status_code)
        return codes

    codes = [code for result in await asyncio.gather(*(writer(i) for i in range(8))) for code in result]
    assert [code for code in codes if code >= 500] == [], codes
    assert codes.count(200) == len(codes), codes
    final = (await http.get(f"/api/v1/stan/tasks/{task['id']}", headers=tenant.headers)).json()
    assert writes[final["name"]] == final["schedule"], "the final state is one write, whole"


async def test_nasty_payloads_get_4xx_and_change_nothing(http: httpx.AsyncClient, tenant: Tenant) -> None:
    keep = (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).json()
    deep = "[" * 100_000 + "]" * 100_000
    nasty: list[dict | bytes] = [
        {**TASK, "name": "x" * 300_000},
        deep.encode(),
        b'{"name": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        {**TASK, "name": ["not", "a", "string"]},
        {**TASK, "modelId": None},
        {**TASK, "schedule": 7},
        {**TASK, "schedule": "0 0 30 2 *"},
        {**TASK, "schedule": "0 0 31 4 *"},
        {**TASK, "schedule": "* * * * * * * *"},
        {**TASK, "schedule": "\u0000"},
        {**TASK, "timeZone": "\U0001f600"},
        {**TASK, "startingDeadlineSeconds": -1},
        {**TASK, "runHistoryLimit": 10**30},
        [TASK],
        b"\xff\xfe\x00garbage",
    ]
    for body in nasty:
        if isinstance(body, bytes):
            answer = await http.post(
                "/api/v1/stan/tasks", content=body, headers={**tenant.headers, "Content-Type": "application/json"}
            )
        else:
            answer = await http.post("/api/v1/stan/tasks", json=body, headers=tenant.headers)
        assert 400 <= answer.status_code < 500, (str(body)[:80], answer.status_code, answer.text[:200])
        put = await http.put(
            f"/api/v1/stan/tasks/{keep['id']}", json=body if not isinstance(body, bytes) else {}, headers=tenant.headers
        )
        assert put.status_code < 500, (str(body)[:80], put.status_code)
    unicode = await http.post(
        "/api/v1/stan/tasks", json={**TASK, "name": "Relatório diário ✓ 日報"}, headers=tenant.headers
    )
    assert unicode.status_code == 201 and unicode.json()["name"] == "Relatório diário ✓ 日報"
    leap_day = await http.post("/api/v1/stan/tasks", json={**TASK, "schedule": "0 0 29 2 *"}, headers=tenant.headers)
    assert leap_day.status_code == 201 and leap_day.json()["nextRunAt"].endswith("-02-29T00:00:00Z")
    after = (await http.get(f"/api/v1/stan/tasks/{keep['id']}", headers=tenant.headers)).json()
    assert {key: after[key] for key in TASK} == TASK, "no nasty payload changed the other task"


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, facade: FacadeProcess, tmp_path: Path
) -> None:
    kept = (await http.post("/api/v1/stan/tasks", json=TASK, headers=other_tenant.headers)).json()
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{facade.url}/openapi.json",
        "--header",
        f"X-API-Key: {tenant.key}",
        "--max-examples",
        "15",
        "--request-timeout",
        "40",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--generation-deterministic",
    ]
    # Its working files (a crash cache) stay out of the work tree.
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print("schemathesis:", next(line for line in result.stdout.splitlines() if "generated" in line).strip())
    after = (await http.get(f"/api/v1/stan/tasks/{kept['id']}", headers=other_tenant.headers)).json()
    assert after == kept, "another tenant's task is untouched"


@pytest.fixture
async def own_cluster(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[cluster.ControlPlane]:
    """A control plane of this test's own: its API server goes down, the session's must not."""
    plane = cluster.start(STATE_DIR / "outage", fresh=True)
    monkeypatch.setenv("KUBECONFIG", str(plane.kubeconfig))
    await install.apply_crds_to_current_cluster()
    yield plane
    plane.stop()


@pytest.mark.slow
async def test_an_api_server_outage_is_survived(own_cluster: cluster.ControlPlane) -> None:
    api = await kube.api_client()
    async with api:
        await client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="t-outage")))
        tenant = await new_tenant(api, "t-outage")
    operator = OperatorProcess("outage", "--namespace", "t-outage", kubeconfig=own_cluster.kubeconfig)
    facade = FacadeProcess("facade-outage", kubeconfig=own_cluster.kubeconfig)
    try:
        async with httpx.AsyncClient(base_url=facade.url, timeout=30) as http:
            await eventually(lambda: _answers(http, tenant, 200), timeout=20)
            task = (
                await http.post("/api/v1/stan/tasks", json={**TASK, "schedule": EVERY_2S}, headers=tenant.headers)
            ).json()
            await http.put(
                f"/api/v1/stan/tasks/{task['id']}", json={"name": "Changed before the outage"}, headers=tenant.headers
            )

            own_cluster.stop_apiserver()
            codes: set[int] = set()

            async def refusing() -> bool:
                answer = await http.get("/api/v1/stan/tasks", headers=tenant.headers)
                codes.add(answer.status_code)
                return answer.status_code == 503

            await eventually(refusing, timeout=30)
            write = await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)
            assert write.status_code == 503, write.text
            # Nothing shows how the operator fares until the API server is back: the outage lasts two of the task's
            # ticks, which the operator can neither claim nor record meanwhile.
            await asyncio.sleep(2 * TICK.total_seconds())

            started = time.monotonic()
            await asyncio.to_thread(own_cluster.start_apiserver)
            back = await eventually(lambda: _answers(http, tenant, 200), timeout=60, interval=0.2)
            recovery = time.monotonic() - started
            assert codes <= {200, 503}, f"only 200 (cached) or 503 while the cluster was away: {codes}"
            listed = back.json()
            assert [t["name"] for t in listed] == ["Changed before the outage"], "nothing was lost"

            async def fires_again() -> bool:
                runs = (await http.get(f"/api/v1/stan/tasks/{task['id']}/runs", headers=tenant.headers)).json()
                return any(
                    run["startedAt"]
                    and run["startedAt"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3))
                    for run in runs
                )

            await eventually(fires_again, timeout=60)
            print(
                f"outage: the facade answered 503 while the API server was down; recovered {recovery:.1f}s "
                "after it started again"
            )
    finally:
        facade.stop()
        operator.stop()


async def _answers(http: httpx.AsyncClient, tenant: Tenant, code: int) -> httpx.Response | None:
    answer = await http.get("/api/v1/stan/tasks", headers=tenant.headers)
    return answer if answer.status_code == code else None
