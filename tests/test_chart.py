"""The Helm chart: it lints, renders, refuses typos, ships exactly the CRDs of crds/,
installs into a real API server, and grants its ServiceAccounts enough to run Stan
and no more, shown by acting with their own tokens.

No kubelet runs, so the chart's Pods stay Pending; the operator runs here as a
process that authenticates as the chart's operator ServiceAccount instead.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes_asyncio import client

from stan_controlplane import build, cluster
from stan_operator import config

from .conftest import OPERATOR_CONFIG, PROJECT_ROOT, FacadeProcess, OperatorProcess, eventually, kubectl, new_tenant

CHART = PROJECT_ROOT / "charts" / "stan"
CRDS = sorted((PROJECT_ROOT / "crds").glob("*.yaml"))
NON_DEFAULT = {
    "webhook.certManager.enabled": "true",
    "api.service.type": "NodePort",
    "api.service.nodePort": "30080",
    "operator.watchNamespaces[0]": "team-a",
    "config.jobActions.render_report.image": "registry.example/report:1",
    "config.jobActions.render_report.backoffLimit": "2",
    "config.modelCatalog[0].id": "model_abc123",
    "config.modelCatalog[0].healthUrl": "http://models.example/health",
}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(build.binary_path("helm")), *args], capture_output=True, text=True, env=os.environ)


def sets(values: dict[str, str]) -> list[str]:
    return [argument for key, value in values.items() for argument in ("--set", f"{key}={value}")]


def render(values: dict[str, str]) -> list[dict]:
    result = helm("template", "rel", str(CHART), "--namespace", "stan-system", *sets(values))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"one {kind} named *{name_suffix}, found {[m['metadata']['name'] for m in matches]}"
    return matches[0]


def container(docs: list[dict], component: str) -> dict:
    return find(docs, "Deployment", f"-{component}")["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("values", [{}, NON_DEFAULT], ids=["default", "non-default"])
def test_the_chart_lints_and_renders_a_valid_configuration(values: dict[str, str]) -> None:
    lint = helm("lint", "--strict", str(CHART), *sets(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(values)
    configuration = yaml.safe_load(find(docs, "ConfigMap")["data"]["config.yaml"])
    assert config.OperatorConfig.model_validate(configuration).allowSecondSchedules is False
    operator = container(docs, "operator")
    assert find(docs, "Deployment", "-operator")["spec"]["replicas"] == 2
    assert {"--leader-election", "--no-webhook-manage", "--webhook-cert-dir=/certs"} <= set(operator["args"])
    assert container(docs, "api")["args"][0] == "api"
    for pod in (find(docs, "Deployment", suffix)["spec"]["template"]["spec"] for suffix in ("-operator", "-api")):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert [doc["metadata"]["name"] for doc in docs if len(doc["metadata"]["name"]) > 63] == []


def test_non_default_values_land_where_they_belong() -> None:
    docs = render(NON_DEFAULT)
    configuration = config.OperatorConfig.model_validate(
        yaml.safe_load(find(docs, "ConfigMap")["data"]["config.yaml"]))
    assert configuration.jobActions["render_report"].backoffLimit == 2
    assert configuration.modelCatalog[0].healthUrl == "http://models.example/health"
    service = find(docs, "Service", "-api")["spec"]
    assert (service["type"], service["ports"][0]["nodePort"]) == ("NodePort", 30080)
    assert "--namespace=team-a" in container(docs, "operator")["args"]
    webhook = find(docs, "ValidatingWebhookConfiguration")
    assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "stan-system/rel-stan-webhook"
    assert find(docs, "Certificate")["spec"]["secretName"] == "rel-stan-webhook-tls"
    assert [doc for doc in docs if doc["kind"] == "Secret"] == [], "cert-manager writes the Secret, not Helm"


def test_helm_generated_certificates_serve_the_webhook_service() -> None:
    docs = render({})
    secret = find(docs, "Secret", "-webhook-tls")
    webhooks = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert {hook["clientConfig"]["caBundle"] for hook in webhooks} == {secret["data"]["ca.crt"]}
    assert {(hook["clientConfig"]["service"]["path"], hook["failurePolicy"]) for hook in webhooks} == {
        ("/stantask", "Ignore"), ("/stanheartbeat", "Ignore")}


@pytest.mark.parametrize("values, message", [
    ({"operator.replicaCount": "two"}, "at '/operator/replicaCount': got string, want integer"),
    ({"api.servce.type": "NodePort"}, "at '/api': additional properties 'servce' not allowed"),
    ({"config.allowSecondSchedule": "true"}, "additional properties 'allowSecondSchedule' not allowed"),
], ids=["wrong-type", "unknown-key", "unknown-config-key"])
def test_the_schema_refuses_a_typo_readably(values: dict[str, str], message: str) -> None:
    result = helm("template", "rel", str(CHART), *sets(values))
    assert result.returncode != 0
    assert message in result.stderr


def test_the_values_schema_names_every_operator_setting() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["config"]["properties"]) == set(config.OperatorConfig.model_fields)


def test_the_chart_ships_exactly_the_generated_crds() -> None:
    shipped = sorted((CHART / "files" / "crds").glob("*.yaml"))
    assert [path.name for path in shipped] == [path.name for path in CRDS]
    for ours, theirs in zip(shipped, CRDS):
        assert ours.read_text() == theirs.read_text(), f"run: cp crds/*.yaml {CHART.relative_to(PROJECT_ROOT)}/files/crds/"
    rendered = {doc["metadata"]["name"]: doc for doc in render({}) if doc["kind"] == "CustomResourceDefinition"}
    for path in CRDS:
        generated = yaml.safe_load(path.read_text())
        crd = rendered[generated["metadata"]["name"]]
        assert crd["spec"] == generated["spec"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


class Release:
    """The chart installed into a fresh namespace, with kubeconfigs for its ServiceAccounts."""

    def __init__(self, namespace: str, directory: Path) -> None:
        self.name = "stan"
        self.namespace = namespace
        self.directory = directory

    def kubeconfig(self, component: str) -> Path:
        """A kubeconfig that authenticates with a freshly requested token of the component's ServiceAccount."""
        token = kubectl("create", "token", f"{self.name}-{component}", "--namespace", self.namespace,
                        "--duration", "1h").stdout.strip()
        admin = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
        context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
        path = self.directory / f"{component}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": component,
            "clusters": [c for c in admin["clusters"] if c["name"] == context["cluster"]],
            "users": [{"name": component, "user": {"token": token}}],
            "contexts": [{"name": component, "context": {"cluster": context["cluster"], "user": component}}],
        }))
        return path


def _adopt_crds(name: str, namespace: str) -> None:
    """Mark the session's CRDs as the release's, as a user does whose CRDs came from `kubectl apply`."""
    crds = [f"crd/{yaml.safe_load(path.read_text())['metadata']['name']}" for path in CRDS]
    kubectl("label", "--overwrite", *crds, "app.kubernetes.io/managed-by=Helm")
    kubectl("annotate", "--overwrite", *crds, f"meta.helm.sh/release-name={name}",
            f"meta.helm.sh/release-namespace={namespace}")


@pytest.fixture(scope="module")
def release(control_plane: cluster.ControlPlane | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    installed = Release(f"stan-{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("release"))
    kubectl("create", "namespace", installed.namespace)
    _adopt_crds(installed.name, installed.namespace)
    result = helm("install", installed.name, str(CHART), "--namespace", installed.namespace,
                  "--set", f"fullnameOverride={installed.name}")
    assert result.returncode == 0, result.stderr
    yield installed
    helm("uninstall", installed.name, "--namespace", installed.namespace)
    kubectl("delete", "namespace", installed.namespace, "--wait=false")


def test_the_release_installs_and_its_crds_are_established(release: Release) -> None:
    for path in CRDS:
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    status = json.loads(helm("status", release.name, "--namespace", release.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    deployments = kubectl("get", "deployments", "--namespace", release.namespace, "-o", "name").stdout.split()
    assert sorted(deployments) == [f"deployment.apps/{release.name}-api", f"deployment.apps/{release.name}-operator"]


async def test_the_service_accounts_run_the_whole_task_and_heartbeat_flow(
        api: client.ApiClient, release: Release, private_namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator and the facade run with the chart's ServiceAccount tokens, and everything works."""
    monkeypatch.setenv("STAN_NAMESPACE", release.namespace)  # the Lease and the key Secrets live there
    operator = OperatorProcess(f"chart-{private_namespace}", "--namespace", private_namespace, "--leader-election",
                               config=OPERATOR_CONFIG, kubeconfig=release.kubeconfig("operator"))
    facade = FacadeProcess(f"facade-chart-{private_namespace}", kubeconfig=release.kubeconfig("api"),
                           stan_namespace=release.namespace)
    try:
        tenant = await new_tenant(api, private_namespace)
        async with httpx.AsyncClient(base_url=facade.url, timeout=30, headers=tenant.headers) as http:
            await eventually(lambda: _answers(http, "/api/v1/stan/tasks"), timeout=20)
            created = await http.post("/api/v1/stan/tasks", json={
                "name": "Charted", "action": "audit_workflows", "schedule": "*/2 * * * * *",
                "modelId": "model_abc123"})
            assert created.status_code == 201, created.text
            path = f"/api/v1/stan/tasks/{created.json()['id']}"

            async def fired() -> bool:
                return (await http.get(path)).json()["lastRunAt"] is not None

            await eventually(fired, timeout=30)
            assert (await http.put(path, json={"name": "Charted, renamed"})).status_code == 200
            assert (await http.post(f"{path}/pause")).json() == {"paused": True}
            assert (await http.get(path)).json()["status"] == "paused"
            assert (await http.post(f"{path}/resume")).json() == {"resumed": True}
            assert (await http.put("/api/v1/stan/heartbeat", json={"checks": ["workflows", "deployments",
                                                                              "credits"]})).status_code == 200
            run = (await http.post("/api/v1/stan/heartbeat/run")).json()
            assert [result["check"] for result in run["results"]] == ["workflows", "deployments", "credits"]
            assert (await http.delete(path)).status_code == 204
        holder = kubectl("get", "lease", "stan-operator", "--namespace", release.namespace,
                         "-o", "jsonpath={.spec.holderIdentity}").stdout
        assert holder, "the operator took the Lease in the release namespace"
        for process in (operator, facade):
            assert "Forbidden" not in process.log_path.read_text(errors="replace"), process.log_tail()
    finally:
        facade.stop()
        operator.stop()


async def _answers(http: httpx.AsyncClient, path: str) -> bool:
    return (await http.get(path)).status_code == 200


def as_component(release: Release, component: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return kubectl("--kubeconfig", str(release.kubeconfig(component)), *args, check=check)


@pytest.mark.parametrize("component, action, where", [
    ("api", ("get", "secrets"), "elsewhere"),
    ("operator", ("get", "secrets"), "release"),
    ("operator", ("get", "secrets"), "elsewhere"),
    ("operator", ("create", "deployment", "intruder", "--image=registry.invalid/x"), "elsewhere"),
    ("api", ("create", "job", "intruder", "--image=registry.invalid/x"), "elsewhere"),
    ("api", ("get", "leases"), "release"),
])
async def test_what_the_chart_does_not_grant_is_forbidden(
        release: Release, private_namespace: str, component: str, action: tuple[str, ...], where: str) -> None:
    namespace = release.namespace if where == "release" else private_namespace
    result = as_component(release, component, "--namespace", namespace, *action, check=False)
    assert result.returncode != 0
    assert f"is forbidden: User \"system:serviceaccount:{release.namespace}:{release.name}-{component}\"" \
        in result.stderr, result.stderr
