"""Fixtures: a real control plane for the session, the operator as a process, a namespace per test.

``STAN_TEST_KUBECONFIG`` points the tests at an existing cluster instead of
the local control plane.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import fcntl
import io
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes_asyncio import client

from stan_api import keys, keystore
from stan_controlplane import build, cluster, images, node, processes
from stan_core import install, kube, models

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _claim_state_dir() -> Path:
    """A state directory no other live test session uses: sessions may run side by side.

    Each slot is guarded by an flock that dies with its process, so a crashed
    session's slot is reused, and its leftover processes are stopped on start.
    """
    for slot in itertools.count():
        directory = PROJECT_ROOT / ".stan" / "test" / str(slot)
        directory.mkdir(parents=True, exist_ok=True)
        lock = (directory / "session.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        atexit.register(lock.close)
        return directory
    raise AssertionError("unreachable")


STATE_DIR = _claim_state_dir()
PLUGINS_DIR = PROJECT_ROOT / "tests" / "plugins"
SHARED_NAMESPACES = "t-*"
"""The session's operator watches these; tests that run operators of their own use other namespaces."""

SESSION_NODE = not os.environ.get("STAN_TEST_KUBECONFIG") and node.wanted(out=io.StringIO())
"""Whether the session's cluster has a node, so that its Pods run: as root, unless ``STAN_NODE=0`` or the
tests use the cluster of ``STAN_TEST_KUBECONFIG``."""
with_node = pytest.mark.skipif(
    not SESSION_NODE,
    reason="the session's cluster has no node: it needs root, and STAN_NODE=0 or STAN_TEST_KUBECONFIG turn it off",
)
"""Marks a test of what Pods really do: it needs the session's node."""
without_node = pytest.mark.skipif(SESSION_NODE, reason="the session's cluster has a node: the real thing is tested")
"""Marks a test that writes what a kubelet or the Job controller would, in place of a test ``with_node``."""
POD_IMAGE = images.busybox_image().reference if SESSION_NODE else "registry.invalid/stan/busybox:1"
"""The image of the tests' Pods: busybox, built here and imported into the node; without a node, Pods stay
Pending, so a name that is never pulled."""


def sleeping(seconds: str) -> str:
    """A shell command that sleeps, and exits as soon as it is stopped: a shell as PID 1 ignores SIGTERM
    unless it traps it, and the kubelet would wait out the Pod's grace period."""
    return f"trap 'exit 143' TERM; sleep {seconds} & wait"


REPORT_SCRIPT = f"""\
case "$STAN_MODEL_ID" in
  exit-*) echo "giving up on $STAN_TASK_ID" >&2; exit "${{STAN_MODEL_ID#exit-}}";;
  sleep-*) {sleeping('"${STAN_MODEL_ID#sleep-}"')};;
  *) echo "$STAN_TASK_ID $STAN_ACTION $STAN_MODEL_ID $STAN_SCHEDULED_AT $STAN_RUN_ID $REPORT_FORMAT as $(id -u)";;
esac
"""
"""The session's Job action, whose task's model says what its container does, so that one action serves
every test: ``exit-N`` exits N, ``sleep-N`` sleeps N seconds; any other model prints what the run told
the container, and the user it ran as."""

OPERATOR_CONFIG = {
    # Tests wait for new keys by polling, and some send bad keys on purpose, all from one address.
    "limits": {"failedAuthenticationsPerMinute": 100_000},
    "allowSecondSchedules": True,
    "heartbeatMinuteSeconds": 0.2,  # intervalMinutes: 5 runs every second
    "checkTimeoutSeconds": 2,
    "jobActions": {
        "render_report": {
            "image": POD_IMAGE,
            "command": ["/bin/sh", "-c", REPORT_SCRIPT],
            "env": [{"name": "REPORT_FORMAT", "value": "pdf"}],
        },
    },
}


def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(build.binary_path("kubectl")), *args],
        capture_output=True,
        text=True,
        check=check,
        env=os.environ,
        input=stdin,
    )


def kubectl_apply_refused(directory: Path, manifest: str) -> str:
    """Apply ``manifest`` as a user would, expect a refusal, and return what kubectl said."""
    path = directory / "manifest.yaml"
    path.write_text(manifest)
    result = kubectl("apply", "-f", str(path), check=False)
    assert result.returncode != 0, f"kubectl apply was not refused: {result.stdout}"
    return result.stderr


@pytest.fixture(scope="session")
def control_plane() -> Iterator[cluster.ControlPlane | None]:
    os.environ["STAN_NAMESPACE"] = STAN_NAMESPACE
    explicit = os.environ.get("STAN_TEST_KUBECONFIG")
    if explicit:
        os.environ["KUBECONFIG"] = explicit
        asyncio.run(install.apply_crds_to_current_cluster())
        yield None
        return
    plane = cluster.start(STATE_DIR, fresh=True, with_node=SESSION_NODE)
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    try:
        asyncio.run(install.apply_crds_to_current_cluster())
        yield plane
    finally:
        plane.stop()


@pytest.fixture
async def api(control_plane: cluster.ControlPlane | None) -> AsyncIterator[client.ApiClient]:
    api_client = await kube.api_client()
    async with api_client:
        yield api_client


async def _namespace(api: client.ApiClient, prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    await core.delete_namespace(name)


@pytest.fixture
async def namespace(api: client.ApiClient, operator: OperatorProcess) -> AsyncIterator[str]:
    """A fresh namespace watched by the session's operator."""
    async for name in _namespace(api, SHARED_NAMESPACES.rstrip("-*")):
        yield name


@pytest.fixture
async def private_namespace(api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace no operator watches until the test starts one."""
    async for name in _namespace(api, "p"):
        yield name


class ChildProcess:
    """A Stan process under test, with its log in a file."""

    what = "the process"
    process: subprocess.Popen[bytes]
    log_path: Path

    def wait_answering(self, url: str, timeout: float = 60.0) -> None:
        """Until ``url`` answers 2xx; fail early, with the log, if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.what} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{self.what} did not answer at {url}: {self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        processes.stop(self.process)


class OperatorProcess(ChildProcess):
    """``stan operator`` as a child process."""

    what = "the operator"

    def __init__(
        self, name: str, *args: str, webhook: bool = False, config: dict | None = None, kubeconfig: Path | None = None
    ) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        config_path = STATE_DIR / f"operator-{name}.yaml"
        config_path.write_text(yaml.safe_dump(OPERATOR_CONFIG if config is None else config))
        self.log_path = STATE_DIR / "logs" / f"operator-{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.liveness = f"http://127.0.0.1:{processes.free_port()}/healthz"
        self.webhook_port = processes.free_port()
        metrics_port = processes.free_port()
        self.metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        command = [sys.executable, "-m", "stan_cli", "operator", "--liveness", self.liveness, *args]
        command += ["--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port)]
        command += (
            ["--webhook-listen", "127.0.0.1", "--webhook-port", str(self.webhook_port)] if webhook else ["--no-webhook"]
        )
        # The operators under test have a third-party check package installed (tests/plugins).
        env = {**os.environ, "STAN_CONFIG": str(config_path), "PYTHONPATH": str(PLUGINS_DIR)}
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        with self.log_path.open("ab") as log:
            self.process = processes.spawn(command, output=log, env=env)
        self.wait_answering(self.liveness)


@pytest.fixture(scope="session")
def operator(control_plane: cluster.ControlPlane | None) -> Iterator[OperatorProcess]:
    """The session's operator: watches the ``t-*`` namespaces and serves the admission webhook."""
    process = OperatorProcess("session", "--namespace", SHARED_NAMESPACES, webhook=True)
    _wait_webhook_registered(process.webhook_port)
    _wait_watching_namespaces()
    yield process
    process.stop()


def _wait_webhook_registered(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = kubectl(
            "get",
            "validatingwebhookconfiguration",
            "stan.dev",
            "-o",
            "jsonpath={.webhooks[*].clientConfig.url}",
            check=False,
        )
        if f":{port}/" in result.stdout:
            return
        time.sleep(0.2)
    raise TimeoutError("the operator did not register its admission webhook")


def _wait_watching_namespaces(timeout: float = 90.0, each: float = 10.0) -> None:
    """Until the session's operator acts on a task in a namespace made after it started.

    kopf lists the namespaces, then lists them again to start its watch, and ignores a namespace that
    appears between the two lists until that namespace next changes: a test's namespace made then would
    go unwatched. So probe namespaces are made until the operator writes a task's status in one, which
    it can only do once its watch delivers new namespaces.
    """
    deadline = time.monotonic() + timeout
    task = {
        "apiVersion": models.API_VERSION,
        "kind": "StanTask",
        "metadata": {"name": "probe"},
        "spec": {"name": "Probe", "action": "audit_workflows", "schedule": "0 0 1 1 *", "modelId": "probe"},
    }
    while time.monotonic() < deadline:
        namespace = f"{SHARED_NAMESPACES.rstrip('-*')}-ready-{uuid.uuid4().hex[:6]}"
        kubectl("create", "namespace", namespace)
        try:
            kubectl("create", "--namespace", namespace, "-f", "-", stdin=json.dumps(task))
            given_up = min(deadline, time.monotonic() + each)
            while time.monotonic() < given_up:
                if kubectl(
                    "get", "stantask", "probe", "--namespace", namespace, "-o", "jsonpath={.status.nextRunAt}"
                ).stdout:
                    return
                time.sleep(0.2)
        finally:
            kubectl("delete", "namespace", namespace, "--wait=false")
    raise TimeoutError("the operator acted in no new namespace of its pattern")


async def eventually(probe, timeout: float = 30.0, interval: float = 0.2):
    """Await ``probe()`` until it returns something truthy; fail with its last answer after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    pytest.fail(f"not reached within {timeout:.0f}s; last answer: {last!r}")


class FacadeProcess(ChildProcess):
    """``stan api`` as a child process, configured like the session's operator."""

    what = "the facade"

    def __init__(
        self,
        name: str = "facade",
        kubeconfig: Path | None = None,
        stan_namespace: str = "stan-system",
        config: dict | None = None,
    ) -> None:
        config_path = STATE_DIR / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump(OPERATOR_CONFIG if config is None else config))
        self.log_path = STATE_DIR / "logs" / f"{name}.log"
        self.url = f"http://127.0.0.1:{processes.free_port()}"
        env = {
            **os.environ,
            "STAN_CONFIG": str(config_path),
            "PYTHONPATH": str(PLUGINS_DIR),
            "STAN_NAMESPACE": stan_namespace,
        }
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        with self.log_path.open("ab") as log:
            self.process = processes.spawn(
                [sys.executable, "-m", "stan_cli", "api", "--port", self.url.rsplit(":", 1)[1]], output=log, env=env
            )
        self.wait_answering(f"{self.url}/readyz")


STAN_NAMESPACE = "stan-system"


@pytest.fixture(scope="session")
def facade(operator: OperatorProcess) -> Iterator[FacadeProcess]:
    process = FacadeProcess()
    yield process
    process.stop()


@dataclasses.dataclass(frozen=True)
class Tenant:
    namespace: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


async def new_tenant(
    api: client.ApiClient, namespace: str, scopes: tuple[str, ...] = (keys.EXECUTE_SCOPE,), shared: bool = False
) -> Tenant:
    """A new user whose key's tenant is ``namespace``, issued as `stan apikey create` does."""
    key, principal = await keystore.issue(api, f"user-{uuid.uuid4().hex[:6]}", list(scopes), namespace, shared=shared)
    return Tenant(namespace=namespace, key=key, key_id=principal.key_id)


async def known_to(facade: FacadeProcess, tenant: Tenant) -> Tenant:
    """The tenant once the facade's key cache has its key (a watch event after the StanAPIKey is written)."""

    async def accepted() -> bool:
        async with httpx.AsyncClient(base_url=facade.url, timeout=10) as session:
            return (await session.get("/api/v1/stan/heartbeat", headers=tenant.headers)).status_code != 401

    await eventually(accepted, timeout=15, interval=0.05)
    return tenant


@pytest.fixture
async def tenant(api: client.ApiClient, namespace: str, facade: FacadeProcess) -> Tenant:
    return await known_to(facade, await new_tenant(api, namespace))


@pytest.fixture
async def other_tenant(api: client.ApiClient, namespace: str, facade: FacadeProcess) -> AsyncIterator[Tenant]:
    """A second user, with a tenant namespace of its own."""
    other_namespace = f"{namespace}-b"
    await client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other_namespace)))
    yield await known_to(facade, await new_tenant(api, other_namespace))
    await client.CoreV1Api(api).delete_namespace(other_namespace)


@pytest.fixture
async def http(facade: FacadeProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=facade.url, timeout=30) as session:
        yield session
