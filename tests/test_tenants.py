"""One user, one tenant: `stan apikey` refuses what would merge tenants or reach the cluster's own
namespaces, keys expire, and their last use is recorded without turning requests into writes.

The CLI runs as a user runs it, against the real control plane; keys are used on the real facade.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest
from kubernetes_asyncio import client

from stan_api import keys
from stan_controlplane import cluster

from .conftest import STAN_NAMESPACE, FacadeProcess, Tenant, eventually, known_to, kubectl, new_tenant


def stan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stan_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "STAN_NAMESPACE": STAN_NAMESPACE},
        timeout=60,
    )


def issued(result: subprocess.CompletedProcess[str], namespace: str) -> Tenant:
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    split = keys.split(key)
    assert split is not None, result.stdout
    return Tenant(namespace=namespace, key=key, key_id=split[0])


def user() -> str:
    return f"u{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("name", ["Alice", "alice_", "al ice", "-alice", "a" * 59, "ali.ce"])
def test_user_names_that_would_not_map_one_to_one_are_refused_with_the_rule(
    control_plane: cluster.ControlPlane | None, name: str
) -> None:
    result = stan("apikey", "create", "--user", name)
    assert result.returncode != 0
    assert f"invalid user name {name!r}" in result.stderr and "stan-<user>" in result.stderr, result.stderr


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "default", STAN_NAMESPACE])
def test_the_clusters_and_stans_own_namespaces_are_never_tenants(
    control_plane: cluster.ControlPlane | None, namespace: str
) -> None:
    result = stan("apikey", "create", "--user", user(), "--namespace", namespace, "--shared")
    assert result.returncode != 0
    assert f"{namespace!r} cannot be a tenant" in result.stderr, result.stderr


def test_unknown_scopes_are_refused_with_the_known_ones(control_plane: cluster.ControlPlane | None) -> None:
    result = stan("apikey", "create", "--user", user(), "--scopes", "stan:execute,stan:read")
    assert result.returncode != 0
    assert "unknown scope stan:read; known scopes: stan:execute" in result.stderr, result.stderr


def test_another_users_tenant_is_shared_only_when_asked(control_plane: cluster.ControlPlane | None) -> None:
    owner, other = user(), user()
    issued(stan("apikey", "create", "--user", owner), f"stan-{owner}")
    refused = stan("apikey", "create", "--user", other, "--namespace", f"stan-{owner}")
    assert refused.returncode != 0
    assert f"is the tenant of user {owner!r}; pass --shared" in refused.stderr, refused.stderr
    issued(stan("apikey", "create", "--user", other, "--namespace", f"stan-{owner}", "--shared"), f"stan-{owner}")
    again = stan("apikey", "create", "--user", owner)
    assert again.returncode == 0, "the owner gets more keys to its own tenant"


async def test_a_key_is_refused_once_it_expires(facade: FacadeProcess) -> None:
    name = user()
    tenant = await known_to(
        facade, issued(stan("apikey", "create", "--user", name, "--expires-in", "4s"), f"stan-{name}")
    )
    listed = stan("apikey", "list").stdout
    assert tenant.key_id in listed
    async with httpx.AsyncClient(base_url=facade.url, timeout=10) as http:

        async def refused() -> bool:
            return (await http.get("/api/v1/stan/tasks", headers=tenant.headers)).status_code == 401

        await eventually(refused, timeout=10, interval=0.2)
    invalid = stan("apikey", "create", "--user", user(), "--expires-in", "soon")
    assert invalid.returncode != 0 and "a whole positive number and a unit" in invalid.stderr


async def test_last_use_is_recorded_at_most_once_a_minute(facade: FacadeProcess, api: client.ApiClient) -> None:
    name = user()
    tenant = await known_to(facade, issued(stan("apikey", "create", "--user", name), f"stan-{name}"))

    def stored(key: Tenant) -> dict:
        return json.loads(kubectl("get", "stanapikey", "-n", STAN_NAMESPACE, key.key_id, "-o", "json").stdout)

    async def recorded(key: Tenant) -> dict | None:
        body = stored(key)
        return body if (body.get("status") or {}).get("lastUsedAt") else None

    first = await eventually(lambda: recorded(tenant), timeout=10)
    async with httpx.AsyncClient(base_url=facade.url, timeout=10) as http:
        for _ in range(20):
            assert (await http.get("/api/v1/stan/tasks", headers=tenant.headers)).status_code == 200
    # A new key's first use, after those twenty, is recorded: by then any write they caused has been made too.
    witness = await known_to(facade, await new_tenant(api, tenant.namespace, shared=True))
    await eventually(lambda: recorded(witness), timeout=10)
    assert stored(tenant)["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"], (
        "twenty requests within the minute wrote nothing more"
    )
    row = next(line for line in stan("apikey", "list").stdout.splitlines() if line.startswith(tenant.key_id))
    assert first["status"]["lastUsedAt"] in row and name in row
