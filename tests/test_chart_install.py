"""The chart installed for real: ``helm install`` of ``charts/stan`` on a cluster of this module's own with a
node, running Stan's image as built here, as a platform team would install it.

The release namespace enforces the restricted Pod Security Standard, so every
Pod the chart makes must meet it. After the install: the Pods are Ready, two
operator replicas elect a leader and only it fires, the smoke test shared with
``hack/kind-e2e.sh`` passes (an API key, the webhook's refusal over its TLS, a
task that fires, a heartbeat run), ``helm test`` passes, killing the leader Pod
hands over with no tick lost or repeated, no probe failed, and ``helm uninstall``
leaves no Stan workload behind. The tests run in this order, on one release.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import yaml

from stan_controlplane import build, cluster, images
from stan_core import models
from stan_operator import leadership

from .conftest import PROJECT_ROOT, STATE_DIR
from .tasks import finished
from .test_chart import CHART, CRDS, helm
from .test_node import kubectl, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the chart is installed on a real node, and a node (containerd, kubelet) runs only as root",
)

RELEASE = "stan"
NAMESPACE = "stan-system"
SMOKE = PROJECT_ROOT / "hack" / "smoke.py"
SMOKE_VALUES = PROJECT_ROOT / "hack" / "smoke-values.yaml"
TICK = datetime.timedelta(seconds=2)
PART_OF = "app.kubernetes.io/part-of=stan"


@dataclasses.dataclass(frozen=True)
class Release:
    plane: cluster.ControlPlane
    image: images.Image

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return kubectl(self.plane.kubeconfig, *args, check=check, stdin=stdin)

    def helm(self, *args: str) -> str:
        result = helm(*args, "--namespace", NAMESPACE, "--kubeconfig", str(self.plane.kubeconfig))
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def pods(self, component: str = "") -> list[dict]:
        selector = f"app.kubernetes.io/instance={RELEASE}" + (
            f",app.kubernetes.io/component={component}" if component else ""
        )
        return json.loads(self.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout)["items"]

    def leader(self) -> str:
        """The operator Pod holding the Lease: its identity is its host name (the Pod's) and its pid, 1."""
        holder = self.kubectl(
            "get", "lease", "stan-operator", "-n", NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}", check=False
        ).stdout
        return holder.removesuffix("-1")

    def log(self, pod: str) -> str:
        return self.kubectl("logs", "-n", NAMESPACE, pod).stdout


@pytest.fixture(scope="module")
def release() -> Iterator[Release]:
    plane = cluster.start(STATE_DIR / "chart-install", fresh=True, with_node=True)
    try:
        assert plane.node is not None
        installed = Release(plane, images.stan_image())
        images.import_image(installed.image, build.binary_path("ctr"), plane.node.containerd_socket)
        installed.kubectl("create", "namespace", NAMESPACE)
        installed.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
        started = time.monotonic()
        installed.helm("install", RELEASE, str(CHART), "--values", str(SMOKE_VALUES), "--wait", "--timeout", "3m")
        print(f"helm install --wait: {time.monotonic() - started:.1f}s")
        yield installed
    finally:
        plane.stop()


def ready(pod: dict) -> bool:
    return any(
        condition["type"] == "Ready" and condition["status"] == "True"
        for condition in pod["status"].get("conditions", [])
    )


def test_every_pod_is_ready_under_the_restricted_standard(release: Release) -> None:
    """The namespace enforces the standard: a Pod that broke it would not have been admitted at all."""
    operators, facades = release.pods("operator"), release.pods("api")
    assert (len(operators), len(facades)) == (2, 1)
    assert all(ready(pod) for pod in operators + facades), [pod["status"] for pod in operators + facades]
    assert {pod["spec"]["containers"][0]["image"] for pod in operators + facades} == {release.image.reference}


@pytest.fixture(scope="module")
def ticking(release: Release) -> str:
    """A namespace with the StanTask ``steady``, ticking every two seconds, once it has run three times."""
    namespace = "ticks"
    release.kubectl("create", "namespace", namespace)
    release.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": models.API_VERSION,
                "kind": "StanTask",
                "metadata": {"name": "steady", "namespace": namespace},
                "spec": {
                    "name": "Steady",
                    "action": "audit_workflows",
                    "modelId": "model_abc123",
                    "schedule": "*/2 * * * * *",
                    "runHistoryLimit": 100,
                },
            }
        ),
    )
    wait_for(lambda: len(runs(release, namespace)) >= 3, timeout=60, what="three runs of the task")
    return namespace


def runs(release: Release, namespace: str) -> list[models.Run]:
    task = json.loads(release.kubectl("get", "stantask", "steady", "-n", namespace, "-o", "json").stdout)
    return finished(models.StanTaskStatus.model_validate(task.get("status") or {}).recentRuns)


def each_tick_once(found: list[models.Run]) -> None:
    ticks = sorted(run.scheduledAt for run in found)
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
    assert [earlier for earlier, later in itertools.pairwise(ticks) if later - earlier != TICK] == [], (
        f"a tick was lost: {ticks}"
    )


def test_one_replica_leads_and_only_it_fires(release: Release, ticking: str) -> None:
    """Were both firing, each tick's claim would be contended and the loser would log it (see
    test_task_leadership's replicas without a Lease): no replica logs one."""
    operators = [pod["metadata"]["name"] for pod in release.pods("operator")]
    leader = release.leader()
    assert leader in operators
    logs = {pod: release.log(pod) for pod in operators}
    assert [pod for pod, log in logs.items() if "leading as" in log] == [leader]
    assert f"leading as {leader}-1" in logs[leader]
    assert [pod for pod, log in logs.items() if "not claimed" in log] == []
    each_tick_once(runs(release, ticking))


def test_the_smoke_test_of_kind_e2e_passes(release: Release) -> None:
    """hack/smoke.py, run as hack/kind-e2e.sh runs it after installing."""
    started = time.monotonic()
    smoke = subprocess.run(
        [
            sys.executable,
            str(SMOKE),
            "--namespace",
            NAMESPACE,
            "--api-service",
            f"{RELEASE}-api",
            "--kubectl",
            str(build.binary_path("kubectl")),
        ],
        env={**os.environ, "KUBECONFIG": str(release.plane.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(smoke.stderr)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert smoke.stderr.rstrip().endswith("==> smoke test passed")
    print(f"smoke test: {time.monotonic() - started:.1f}s")


def test_helm_test_passes(release: Release) -> None:
    """Its Pod reaches the facade by its Service's name: the cluster's DNS answers it."""
    tested = release.helm("test", RELEASE, "--timeout", "2m")
    assert "Phase:          Succeeded" in tested, tested


def test_killing_the_leader_pod_hands_over_with_no_tick_lost_or_repeated(release: Release, ticking: str) -> None:
    leader = release.leader()
    release.kubectl("delete", "pod", leader, "-n", NAMESPACE, "--grace-period=0", "--force")
    killed_at = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()

    def new_leader() -> str | None:
        holder = release.leader()
        return holder if holder not in ("", leader) else None

    # The killed leader releases the Lease as it stops; the standby or the Pod replacing it may take it.
    wait_for(new_leader, timeout=leadership.LEASE_SECONDS * 3, what="another replica taking the Lease")
    handover = time.monotonic() - started

    def caught_up() -> list[models.Run] | None:
        found = runs(release, ticking)
        after = [
            run for run in found if run.startedAt and run.startedAt > killed_at + datetime.timedelta(seconds=handover)
        ]
        return found if len(after) >= 2 else None

    final = wait_for(caught_up, timeout=30, what="runs by the new leader")
    each_tick_once(final)
    starts = sorted(run.startedAt for run in final if run.startedAt)
    silence = max(later - earlier for earlier, later in itertools.pairwise(starts))
    late = [run for run in final if run.startedAt and run.startedAt - run.scheduledAt > TICK]
    print(
        f"handover: the Lease taken over {handover:.1f}s after the leader Pod was killed; no run started for "
        f"{silence.total_seconds():.1f}s, then {len(late)} ticks ran late; none was lost or repeated"
    )
    wait_for(
        lambda: len(release.pods("operator")) == 2 and all(ready(pod) for pod in release.pods("operator")),
        what="the Deployment replacing the killed Pod",
    )


def test_no_probe_failed_and_no_container_restarted(release: Release) -> None:
    """Over the whole module: the liveness probes (operator: from 10 s, every 20 s; facade: every 20 s) ran
    and never failed enough to restart a container."""
    oldest = min(datetime.datetime.fromisoformat(pod["status"]["startTime"]) for pod in release.pods())
    wait_for(
        lambda: datetime.datetime.now(datetime.UTC) - oldest > datetime.timedelta(seconds=30),
        timeout=60,
        what="the liveness probes having had the time to run",
    )
    pods = release.pods()
    assert all(ready(pod) for pod in pods)
    assert [
        (pod["metadata"]["name"], status["restartCount"])
        for pod in pods
        for status in pod["status"]["containerStatuses"]
        if status["restartCount"]
    ] == []
    events = json.loads(
        release.kubectl("get", "events", "-n", NAMESPACE, "--field-selector", "reason=Unhealthy", "-o", "json").stdout
    )["items"]
    assert [event["message"] for event in events if event["message"].startswith("Liveness")] == []


def test_helm_uninstall_leaves_no_stan_workload_behind(release: Release) -> None:
    """Only what the chart keeps by design (the CRDs, and with them users' objects such as the API keys)
    and the Lease, which the operator writes and no chart object owns."""
    started = time.monotonic()
    release.helm("uninstall", RELEASE, "--wait")
    wait_for(lambda: release.pods() == [], what="the release's Pods gone")
    print(f"helm uninstall: every Pod gone {time.monotonic() - started:.1f}s later")
    kinds = (
        "pods,deployments,replicasets,jobs,services,endpointslices,configmaps,secrets,serviceaccounts,roles,"
        "rolebindings,networkpolicies,poddisruptionbudgets,leases"
    )
    wait_for(
        lambda: not release.kubectl("get", "replicasets,endpointslices", "-n", NAMESPACE, "-o", "name").stdout,
        what="the garbage collector deleting what the Deployments and Services owned",
    )
    left = set(release.kubectl("get", kinds, "-n", NAMESPACE, "-o", "name").stdout.split())
    assert left == {"configmap/kube-root-ca.crt", "serviceaccount/default", "lease.coordination.k8s.io/stan-operator"}
    everywhere = release.kubectl(
        "get",
        f"{kinds},clusterroles,clusterrolebindings,validatingwebhookconfigurations",
        "--all-namespaces",
        "-l",
        PART_OF,
        "-o",
        "name",
    ).stdout.split()
    assert everywhere == []
    cluster_wide = release.kubectl(
        "get", "clusterroles,clusterrolebindings,validatingwebhookconfigurations", "-o", "name"
    ).stdout.split()
    assert [name for name in cluster_wide if name.split("/")[1].startswith(f"{RELEASE}-")] == []
    for path in CRDS:
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        crd = json.loads(release.kubectl("get", "crd", name, "-o", "json").stdout)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
