"""The local control plane is a real Kubernetes: readiness, CRDs, RBAC, garbage collection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_controlplane import certs, cluster
from stan_core import kube, models

from .conftest import kubectl, kubectl_apply_refused


async def test_api_server_answers_readyz(api: client.ApiClient) -> None:
    response = await api.call_api("/readyz", "GET", response_types_map={200: "str"}, _return_http_data_only=True)
    assert response == "ok"


async def test_crds_are_established_and_served(api: client.ApiClient) -> None:
    for resource in models.RESOURCES:
        crd = await client.ApiextensionsV1Api(api).read_custom_resource_definition(resource.crd_name)
        assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
    listed = kubectl("api-resources", "--api-group", models.GROUP, "-o", "name").stdout.split()
    assert sorted(listed) == sorted(r.crd_name for r in models.RESOURCES)


async def test_custom_object_round_trips_through_the_api_server(api: client.ApiClient, private_namespace: str) -> None:
    objects = kube.Objects(api, models.STAN_TASK)
    body = {
        "apiVersion": models.API_VERSION,
        "kind": "StanTask",
        "metadata": {"name": "round-trip"},
        "spec": {"name": "Round trip", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "model_abc123"},
    }
    created = await objects.create(private_namespace, body)
    assert created["spec"]["timeZone"] == "UTC", "schema defaults are applied by the API server"
    assert created["spec"]["concurrencyPolicy"] == "Allow"

    await objects.patch_status(
        private_namespace, "round-trip", {"status": {"status": "active", "nextRunAt": "2026-01-02T09:00:00Z"}}
    )
    fetched = await objects.get(private_namespace, "round-trip")
    assert fetched["status"] == {"status": "active", "nextRunAt": "2026-01-02T09:00:00Z"}
    assert fetched["spec"] == created["spec"], "a status patch leaves spec alone"

    await objects.delete(private_namespace, "round-trip")
    with pytest.raises(ApiException) as missing:
        await objects.get(private_namespace, "round-trip")
    assert missing.value.status == 404


async def test_schema_refuses_what_it_can_express(private_namespace: str, tmp_path) -> None:
    refusal = kubectl_apply_refused(
        tmp_path,
        f"apiVersion: {models.API_VERSION}\nkind: StanHeartbeat\n"
        f"metadata: {{name: default, namespace: {private_namespace}}}\n"
        "spec: {intervalMinutes: 4}\n",
    )
    assert (
        "spec.intervalMinutes: Invalid value: 4: spec.intervalMinutes in body should be greater than or "
        "equal to 5" in refusal
    )


async def test_rbac_refuses_a_service_account_without_a_role(api: client.ApiClient, private_namespace: str) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_service_account(
        private_namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = await core.create_namespaced_service_account_token(
        "nobody",
        private_namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)),
    )
    configuration = client.Configuration()
    configuration.host = api.configuration.host
    configuration.ssl_ca_cert = api.configuration.ssl_ca_cert
    configuration.api_key = {"BearerToken": token.status.token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    async with client.ApiClient(configuration) as as_nobody:
        with pytest.raises(ApiException) as refused:
            await kube.Objects(as_nobody, models.STAN_TASK).list_objects(private_namespace)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert f'User "system:serviceaccount:{private_namespace}:nobody" cannot list' in message


async def test_garbage_collector_deletes_dependents(api: client.ApiClient, private_namespace: str) -> None:
    core = client.CoreV1Api(api)
    owner = await core.create_namespaced_config_map(
        private_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    await core.create_namespaced_config_map(
        private_namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="dependent",
                owner_references=[
                    client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
                ],
            )
        ),
    )
    await core.delete_namespaced_config_map("owner", private_namespace)
    for _ in range(150):
        names = [item.metadata.name for item in (await core.list_namespaced_config_map(private_namespace)).items]
        if "dependent" not in names:
            return
        await asyncio.sleep(0.2)
    pytest.fail("kube-controller-manager's garbage collector did not delete the dependent")


def test_controller_manager_flags_asked_for_come_last_so_that_they_win(tmp_path: Path) -> None:
    """bench.ticks --cronjob-full-speed raises the controller manager's client limits through these."""
    full_speed = ["--kube-api-qps=500", "--kube-api-burst=1000"]
    ports = {"controller_manager": 10257}
    args = cluster._controller_manager_args(tmp_path, certs.Pki(tmp_path / "pki"), ports, full_speed)
    assert args[-2:] == full_speed
    assert not any(
        arg.startswith("--kube-api-qps")
        for arg in cluster._controller_manager_args(tmp_path, certs.Pki(tmp_path), ports)
    )
