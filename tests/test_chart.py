"""The Helm chart: it lints, renders, refuses typos, ships exactly the CRDs of crds/,
installs into a real API server, and grants its ServiceAccounts enough to run Stan
and no more, shown by acting with their own tokens.

Here the releases have no replicas: the operator and the facade run as processes that
authenticate as the chart's ServiceAccounts, so each permission can be probed. The chart
installed and running on a real node is tests/test_chart_install.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes_asyncio import client

from stan_controlplane import build, chartgen, cluster, processes
from stan_core import certificates, config, kube, models

from .conftest import (
    PROJECT_ROOT,
    STATE_DIR,
    ChildProcess,
    FacadeProcess,
    OperatorProcess,
    eventually,
    kubectl,
    new_tenant,
)

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
    "config.limits.burstPerKey": "500",
    "api.tls.secretName": "stan-api-tls",
    "networkPolicy.apiFrom[0].namespaceSelector.matchLabels.team": "a",
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
    configuration = config.OperatorConfig.model_validate(yaml.safe_load(find(docs, "ConfigMap")["data"]["config.yaml"]))
    assert configuration.jobActions["render_report"].backoffLimit == 2
    assert configuration.modelCatalog[0].healthUrl == "http://models.example/health"
    service = find(docs, "Service", "-api")["spec"]
    assert (service["type"], service["ports"][0]["nodePort"]) == ("NodePort", 30080)
    assert "--namespace=team-a" in container(docs, "operator")["args"]
    webhook = find(docs, "ValidatingWebhookConfiguration")
    assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "stan-system/rel-stan-webhook"
    assert find(docs, "Certificate")["spec"]["secretName"] == "rel-stan-webhook-tls"
    assert [doc for doc in docs if doc["kind"] == "Secret"] == [], "cert-manager writes the Secret, not Helm"
    assert configuration.limits.burstPerKey == 500


def test_the_facade_serves_https_from_the_given_secret() -> None:
    plain, tls = render({}), render({"api.tls.secretName": "stan-api-tls"})
    assert not {"--tls-cert-file=/tls/tls.crt", "--tls-key-file=/tls/tls.key"} & set(container(plain, "api")["args"])
    api = container(tls, "api")
    assert {"--tls-cert-file=/tls/tls.crt", "--tls-key-file=/tls/tls.key"} <= set(api["args"])
    assert {"name": "tls", "mountPath": "/tls", "readOnly": True} in api["volumeMounts"]
    pod = find(tls, "Deployment", "-api")["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "stan-api-tls"}} in pod["volumes"]
    for docs, scheme in ((plain, "http"), (tls, "https")):
        api = container(docs, "api")
        assert [port["name"] for port in api["ports"]] == [scheme]
        assert {
            (api[probe]["httpGet"]["port"], api[probe]["httpGet"]["scheme"])
            for probe in ("livenessProbe", "readinessProbe")
        } == {(scheme, scheme.upper())}
        assert find(docs, "Service", "-api")["spec"]["ports"][0]["targetPort"] == scheme
        assert (
            f'url = "{scheme}://rel-stan-api:80/readyz"'
            in find(docs, "Pod", "-test-readyz")["spec"]["containers"][0]["command"][2]
        )


def _ingress_ports(policy: dict) -> list[int]:
    return [port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]]


def test_network_policies_admit_only_what_each_port_needs() -> None:
    docs = render({})
    for component in ("api", "operator"):
        policy = find(docs, "NetworkPolicy", f"-{component}")
        pod_labels = find(docs, "Deployment", f"-{component}")["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert policy["spec"]["policyTypes"] == ["Ingress"], "egress stays open"
    api, operator = find(docs, "NetworkPolicy", "-api"), find(docs, "NetworkPolicy", "-operator")
    assert _ingress_ports(api) == [container(docs, "api")["ports"][0]["containerPort"]] == [8080]
    assert "from" not in api["spec"]["ingress"][0], "any client by default"
    assert _ingress_ports(operator) == [9443, 9090], "the webhook and the metrics; the liveness port is the kubelet's"
    assert "from" not in operator["spec"]["ingress"][0], "the API server's address is not knowable"

    assert _ingress_ports(find(render({"webhook.enabled": "false"}), "NetworkPolicy", "-operator")) == [9090]
    assert [doc for doc in render({"networkPolicy.enabled": "false"}) if doc["kind"] == "NetworkPolicy"] == []

    restricted = render({"networkPolicy.apiFrom[0].namespaceSelector.matchLabels.team": "a"})
    peers = find(restricted, "NetworkPolicy", "-api")["spec"]["ingress"][0]["from"]
    test_pod = find(restricted, "Pod", "-test-readyz")["metadata"]["labels"]
    assert peers[0] == {"namespaceSelector": {"matchLabels": {"team": "a"}}}
    assert peers[1]["podSelector"]["matchLabels"].items() <= test_pod.items(), "helm test still reaches the API"
    assert len(peers) == 2


SENSITIVE_RULES = [
    (
        {"config.jobActions.render_report.image": "registry.example/report:1"},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    ),
    (
        {"config.notificationAllowlist[0]": "hooks.example.com"},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    ),
]


@pytest.mark.parametrize(("values", "rule"), SENSITIVE_RULES, ids=["jobs", "secrets"])
def test_a_sensitive_rule_comes_only_with_what_needs_it(values: dict[str, str], rule: dict) -> None:
    """Creating Jobs in a namespace, or reading its Secrets, is granted only when job actions, or places
    that notifications may go to, are configured."""

    def rules_on(docs: list[dict]) -> list[dict]:
        return [
            granted
            for doc in docs
            if doc["kind"] in ("Role", "ClusterRole")
            for granted in doc["rules"]
            if granted["resources"] == rule["resources"]
        ]

    assert rules_on(render({})) == []
    assert rules_on(render(values)) == [rule]


def test_helm_generated_certificates_serve_the_webhook_service() -> None:
    docs = render({})
    secret = find(docs, "Secret", "-webhook-tls")
    webhooks = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert {hook["clientConfig"]["caBundle"] for hook in webhooks} == {secret["data"]["ca.crt"]}
    assert {(hook["clientConfig"]["service"]["path"], hook["failurePolicy"]) for hook in webhooks} == {
        ("/stantask", "Ignore"),
        ("/stanheartbeat", "Ignore"),
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operator.replicaCount": "two"}, "at '/operator/replicaCount': got string, want integer"),
        ({"api.servce.type": "NodePort"}, "at '/api': additional properties 'servce' not allowed"),
        ({"config.allowSecondSchedule": "true"}, "additional properties 'allowSecondSchedule' not allowed"),
        ({"config.limits.burstPerKy": "5"}, "at '/config/limits': additional properties 'burstPerKy' not allowed"),
        ({"config.limits.burstPerKey": "0"}, "at '/config/limits/burstPerKey': minimum"),
        ({"api.tls.secret": "x"}, "at '/api/tls': additional properties 'secret' not allowed"),
    ],
    ids=["wrong-type", "unknown-key", "unknown-config-key", "unknown-limit", "limit-out-of-range", "unknown-tls-key"],
)
def test_the_schema_refuses_a_typo_readably(values: dict[str, str], message: str) -> None:
    result = helm("template", "rel", str(CHART), *sets(values))
    assert result.returncode != 0
    assert message in result.stderr


def test_the_values_schema_names_every_operator_setting() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["config"]["properties"]) == set(config.OperatorConfig.model_fields)


@pytest.mark.parametrize("name", sorted(chartgen.GENERATED))
def test_the_charts_configuration_is_generated_from_the_model(name: str) -> None:
    committed = (CHART / name).read_text()
    assert committed == chartgen.GENERATED[name](committed), (
        f"{name} drifted from stan_core.config.OperatorConfig; run `make generate` and commit the result"
    )


def test_the_charts_default_configuration_is_the_operators() -> None:
    """A Helm install configures the operator exactly as no configuration file would: tenants
    get the heartbeat checks the README promises, and every section (limits too) is there."""
    rendered = yaml.safe_load(find(render({}), "ConfigMap")["data"]["config.yaml"])
    assert rendered == config.OperatorConfig().model_dump(mode="json")


def test_the_chart_ships_exactly_the_generated_crds() -> None:
    shipped = sorted((CHART / "files" / "crds").glob("*.yaml"))
    assert [path.name for path in shipped] == [path.name for path in CRDS]
    for ours, theirs in zip(shipped, CRDS, strict=True):
        assert ours.read_text() == theirs.read_text(), "run `make generate`"
    rendered = {doc["metadata"]["name"]: doc for doc in render({}) if doc["kind"] == "CustomResourceDefinition"}
    for path in CRDS:
        generated = yaml.safe_load(path.read_text())
        crd = rendered[generated["metadata"]["name"]]
        assert crd["spec"] == generated["spec"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


class Release:
    """The chart installed into a fresh namespace, with kubeconfigs for its ServiceAccounts."""

    def __init__(self, name: str, namespace: str, directory: Path) -> None:
        self.name = name
        self.namespace = namespace
        self.directory = directory

    def kubeconfig(self, component: str) -> Path:
        """A kubeconfig that authenticates with a freshly requested token of the component's ServiceAccount."""
        token = kubectl(
            "create", "token", f"{self.name}-{component}", "--namespace", self.namespace, "--duration", "1h"
        ).stdout.strip()
        admin = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
        context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
        path = self.directory / f"{component}.kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": component,
                    "clusters": [c for c in admin["clusters"] if c["name"] == context["cluster"]],
                    "users": [{"name": component, "user": {"token": token}}],
                    "contexts": [{"name": component, "context": {"cluster": context["cluster"], "user": component}}],
                }
            )
        )
        return path

    def configuration(self) -> dict:
        """The operator configuration the release rendered into its ConfigMap."""
        return yaml.safe_load(
            kubectl(
                "get", "configmap", self.name, "--namespace", self.namespace, "-o", r"jsonpath={.data.config\.yaml}"
            ).stdout
        )


def _adopt_crds(name: str, namespace: str) -> None:
    """Mark the session's CRDs as the release's, as a user does whose CRDs came from `kubectl apply`."""
    crds = [f"crd/{yaml.safe_load(path.read_text())['metadata']['name']}" for path in CRDS]
    kubectl("label", "--overwrite", *crds, "app.kubernetes.io/managed-by=Helm")
    kubectl(
        "annotate",
        "--overwrite",
        *crds,
        f"meta.helm.sh/release-name={name}",
        f"meta.helm.sh/release-namespace={namespace}",
    )


@contextlib.contextmanager
def _installed(name: str, directory: Path, values: dict[str, str]) -> Iterator[Release]:
    """The chart installed as ``name`` (also its fullname, so names do not meet another release's)."""
    installed = Release(name, f"stan-{uuid.uuid4().hex[:8]}", directory)
    kubectl("create", "namespace", installed.namespace)
    if values.get("crds.install") != "false":
        _adopt_crds(installed.name, installed.namespace)
    result = helm(
        "install",
        installed.name,
        str(CHART),
        "--namespace",
        installed.namespace,
        *sets({"fullnameOverride": installed.name, "operator.replicaCount": "0", "api.replicaCount": "0", **values}),
    )
    assert result.returncode == 0, result.stderr
    try:
        yield installed
    finally:
        helm("uninstall", installed.name, "--namespace", installed.namespace)
        kubectl("delete", "namespace", installed.namespace, "--wait=false")


@pytest.fixture(scope="module")
def release(control_plane: cluster.ControlPlane | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """The chart as a user installs it, but for what lets a test see results quickly: seconds in
    schedules, and no lockout of the one address that polls for its new key with it."""
    with _installed(
        "stan",
        tmp_path_factory.mktemp("release"),
        {"config.allowSecondSchedules": "true", "config.limits.failedAuthenticationsPerMinute": "100000"},
    ) as installed:
        yield installed


@pytest.fixture(scope="module")
def jobs_release(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """A second release, with a Job action configured (the first owns the CRDs and the webhook)."""
    with _installed(
        "stan-jobs",
        tmp_path_factory.mktemp("jobs-release"),
        {
            "crds.install": "false",
            "webhook.enabled": "false",
            "config.jobActions.render_report.image": "registry.invalid/stan/report:1",
        },
    ) as installed:
        yield installed


def test_the_release_installs_and_its_crds_are_established(release: Release) -> None:
    for path in CRDS:
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    status = json.loads(helm("status", release.name, "--namespace", release.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    deployments = kubectl("get", "deployments", "--namespace", release.namespace, "-o", "name").stdout.split()
    assert sorted(deployments) == [f"deployment.apps/{release.name}-api", f"deployment.apps/{release.name}-operator"]
    policies = kubectl("get", "networkpolicies", "--namespace", release.namespace, "-o", "name").stdout.split()
    assert sorted(policies) == [
        f"networkpolicy.networking.k8s.io/{release.name}-{component}" for component in ("api", "operator")
    ]


async def test_the_service_accounts_run_the_whole_task_and_heartbeat_flow(
    api: client.ApiClient, release: Release, private_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator and the facade run with the chart's ServiceAccount tokens and the configuration
    it rendered, and everything works."""
    monkeypatch.setenv("STAN_NAMESPACE", release.namespace)  # the Lease and the API keys live there
    configuration = release.configuration()
    operator = OperatorProcess(
        f"chart-{private_namespace}",
        "--namespace",
        private_namespace,
        "--leader-election",
        config=configuration,
        kubeconfig=release.kubeconfig("operator"),
    )
    facade = FacadeProcess(
        f"facade-chart-{private_namespace}",
        kubeconfig=release.kubeconfig("api"),
        stan_namespace=release.namespace,
        config=configuration,
    )
    try:
        tenant = await new_tenant(api, private_namespace)
        async with httpx.AsyncClient(base_url=facade.url, timeout=30, headers=tenant.headers) as http:
            await eventually(lambda: _answers(http, "/api/v1/stan/tasks"), timeout=20)
            created = await http.post(
                "/api/v1/stan/tasks",
                json={
                    "name": "Charted",
                    "action": "audit_workflows",
                    "schedule": "*/2 * * * * *",
                    "modelId": "model_abc123",
                },
            )
            assert created.status_code == 201, created.text
            path = f"/api/v1/stan/tasks/{created.json()['id']}"

            async def fired() -> bool:
                return (await http.get(path)).json()["lastRunAt"] is not None

            await eventually(fired, timeout=30)
            assert (await http.put(path, json={"name": "Charted, renamed"})).status_code == 200
            assert (await http.post(f"{path}/pause")).json() == {"paused": True}
            assert (await http.get(path)).json()["status"] == "paused"
            assert (await http.post(f"{path}/resume")).json() == {"resumed": True}
            # A tenant whose heartbeat nobody has written yet has the chart's defaults.
            await kube.Objects(api, models.STAN_HEARTBEAT).delete(private_namespace, models.HEARTBEAT_NAME)
            run = (await http.post("/api/v1/stan/heartbeat/run")).json()
            assert [result["check"] for result in run["results"]] == ["workflows", "deployments", "credits"]
            assert (await http.delete(path)).status_code == 204
        holder = kubectl(
            "get", "lease", "stan-operator", "--namespace", release.namespace, "-o", "jsonpath={.spec.holderIdentity}"
        ).stdout
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


def assert_forbidden(release: Release, component: str, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0
    assert (
        f'is forbidden: User "system:serviceaccount:{release.namespace}:{release.name}-{component}"' in result.stderr
    ), result.stderr


INTRUDER_JOB = ("create", "job", "intruder", "--image=registry.invalid/x")


NOT_GRANTED = [
    ("api", ("get", "secrets"), "elsewhere"),
    ("api", ("get", "secrets"), "release"),
    ("api", ("get", "secret", "stan-webhook-tls"), "release"),
    ("api", ("get", "stanapikeys"), "elsewhere"),
    ("api", ("delete", "stanapikey", "any"), "release"),
    ("operator", ("get", "secrets"), "release"),
    ("operator", ("get", "secrets"), "elsewhere"),
    ("operator", ("get", "stanapikeys"), "release"),
    ("operator", ("create", "deployment", "intruder", "--image=registry.invalid/x"), "elsewhere"),
    ("operator", INTRUDER_JOB, "kube-system"),
    ("operator", INTRUDER_JOB, "elsewhere"),
    ("operator", INTRUDER_JOB, "release"),
    ("api", INTRUDER_JOB, "elsewhere"),
    ("api", ("get", "leases"), "release"),
]


@pytest.mark.parametrize(
    ("component", "action", "where"),
    NOT_GRANTED,
    ids=["-".join((component, *action[:2], where)) for component, action, where in NOT_GRANTED],
)
async def test_what_the_chart_does_not_grant_is_forbidden(
    release: Release, private_namespace: str, component: str, action: tuple[str, ...], where: str
) -> None:
    namespace = {"release": release.namespace, "elsewhere": private_namespace}.get(where, where)
    assert_forbidden(
        release, component, as_component(release, component, "--namespace", namespace, *action, check=False)
    )


async def test_job_actions_grant_the_operator_jobs(jobs_release: Release, private_namespace: str) -> None:
    created = as_component(jobs_release, "operator", "--namespace", private_namespace, *INTRUDER_JOB, check=False)
    assert created.returncode == 0, created.stderr
    assert (
        as_component(
            jobs_release, "operator", "--namespace", private_namespace, "delete", "job", "intruder", check=False
        ).returncode
        == 0
    )


async def test_the_facade_reads_api_keys_and_writes_only_their_status(
    release: Release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "key.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": models.API_VERSION,
                "kind": models.STAN_API_KEY.kind,
                "metadata": {"name": "k0probe0000", "namespace": release.namespace},
                "spec": {"user": "probe", "tenant": "stan-probe", "scopes": ["stan:execute"], "sha256": "0" * 64},
            }
        )
    )
    kubectl("apply", "-f", str(manifest))
    listed = as_component(release, "api", "--namespace", release.namespace, "get", "stanapikeys", "-o", "name")
    assert "stanapikey.stan.dev/k0probe0000" in listed.stdout.split()
    with monkeypatch.context() as facade_credentials:  # as the facade does it: kubectl would read status first
        facade_credentials.setenv("KUBECONFIG", str(release.kubeconfig("api")))
        async with await kube.api_client() as as_facade:
            await kube.Objects(as_facade, models.STAN_API_KEY).patch_status(
                release.namespace, "k0probe0000", {"status": {"lastUsedAt": "2030-01-02T03:04:05Z"}}
            )
    assert (
        kubectl(
            "get", "stanapikey", "k0probe0000", "--namespace", release.namespace, "-o", "jsonpath={.status.lastUsedAt}"
        ).stdout
        == "2030-01-02T03:04:05Z"
    )
    assert_forbidden(
        release,
        "api",
        as_component(
            release,
            "api",
            "--namespace",
            release.namespace,
            "patch",
            "stanapikey",
            "k0probe0000",
            "--type=merge",
            "-p",
            '{"spec": {"scopes": ["stan:execute", "stan:admin"]}}',
            check=False,
        ),
    )


class HTTPSFacade(ChildProcess):
    """``stan api`` serving HTTPS with the given certificate and key."""

    what = "the HTTPS facade"

    def __init__(self, cert: Path, key: Path) -> None:
        port = processes.free_port()
        self.url = f"https://127.0.0.1:{port}"
        self.log_path = STATE_DIR / "logs" / f"facade-https-{port}.log"
        with self.log_path.open("ab") as log:
            self.process = processes.spawn(
                [
                    sys.executable,
                    "-m",
                    "stan_cli",
                    "api",
                    "--port",
                    str(port),
                    "--tls-cert-file",
                    str(cert),
                    "--tls-key-file",
                    str(key),
                ],
                output=log,
                env=os.environ,
            )
        self.wait_answering(f"{self.url}/healthz")


def test_the_facade_serves_https_with_the_given_certificate(
    control_plane: cluster.ControlPlane | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = certificates.new_ca("stan-test-ca")
    certificates.issue(authority, "127.0.0.1", server_names=("127.0.0.1",)).write(
        tmp_path / "tls.crt", tmp_path / "tls.key"
    )
    (tmp_path / "ca.crt").write_bytes(authority.cert_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.crt"))  # what this process trusts, waiting included
    facade = HTTPSFacade(tmp_path / "tls.crt", tmp_path / "tls.key")
    try:
        trusted = ssl.create_default_context(cafile=tmp_path / "ca.crt")
        assert httpx.get(f"{facade.url}/healthz", verify=trusted).json() == {"status": "ok"}
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{facade.url.replace('https:', 'http:')}/healthz")
    finally:
        facade.stop()


def test_the_facade_wants_a_certificate_and_its_key_together(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "stan_cli", "api", "--tls-cert-file", str(tmp_path / "tls.crt")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "--tls-cert-file and --tls-key-file go together" in result.stderr
