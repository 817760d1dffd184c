"""The cluster's DNS: CoreDNS as the add-on ``kube-dns`` in kube-system, as kubeadm deploys it, answering the
cluster's own names and nothing else.

Pods find Services by name (``helm test``'s Pod reaches the facade as
``stan-api``), so a node needs a DNS the kubelet points its Pods at. This one
serves only the cluster domain and the reverse zones: it forwards nothing, so
no Pod's query ever leaves the machine, and a name outside the cluster is
refused at once rather than timing out. The kubelet hands Pods no resolver of
the host's either (see ``node``).

CoreDNS runs as a non-root user with no capability, so it listens on
unprivileged ports, which the Service maps to 53. Its address is fixed, since
the kubelet's configuration names it: in the lower band of the service range,
which the API server hands out only to Services that ask for an address.
"""

from __future__ import annotations

import hashlib
import time
import urllib.request
from collections.abc import Callable

from stan_controlplane import images, kubeapi

CLUSTER_IP = "10.0.0.10"
"""In the API server's ``--service-cluster-ip-range`` (see ``cluster``)."""
DOMAIN = "cluster.local"
NAMESPACE = "kube-system"
NAME = "coredns"
SERVICE = "kube-dns"
LABELS = {"k8s-app": "kube-dns"}
"""The label kubeadm's and kind's DNS Pods carry, which tools look for."""
DNS_PORT = 1053
HEALTH_PORT = 8080
READY_PORT = 8181
READY_TIMEOUT = 60.0
CLUSTER_ROLE = "system:coredns"


def corefile() -> str:
    """The cluster domain and the reverse zones, answered from the API server's Services, Pods and
    EndpointSlices; no ``forward``, so nothing else is answered but REFUSED."""
    zones = f"{DOMAIN} in-addr.arpa ip6.arpa"
    return f"""\
{" ".join(f"{zone}:{DNS_PORT}" for zone in zones.split())} {{
    errors
    health :{HEALTH_PORT}
    ready :{READY_PORT}
    kubernetes {zones} {{
        pods insecure
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""


def manifests(image: images.Image) -> list[dict]:
    """CoreDNS's ServiceAccount, its read-only role, its Corefile, Deployment and Service."""
    metadata = {"name": NAME, "namespace": NAMESPACE, "labels": LABELS}
    rbac = "rbac.authorization.k8s.io"
    read = ["list", "watch"]
    configuration = corefile()
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CLUSTER_ROLE},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": read},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
            ],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": CLUSTER_ROLE},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"Corefile": configuration}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {
                        "labels": LABELS,
                        "annotations": {
                            # A new Corefile restarts CoreDNS (it does not reload its configuration).
                            "stan.dev/corefile-sha256": hashlib.sha256(configuration.encode()).hexdigest()
                        },
                    },
                    "spec": _pod_spec(image),
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**metadata, "name": SERVICE},
            "spec": {
                "selector": LABELS,
                "clusterIP": CLUSTER_IP,
                "ports": [
                    {"name": f"dns-{protocol.lower()}", "port": 53, "targetPort": DNS_PORT, "protocol": protocol}
                    for protocol in ("UDP", "TCP")
                ],
            },
        },
    ]


def _pod_spec(image: images.Image) -> dict:
    """Restricted as Stan's own Pods are; ``dnsPolicy: Default`` since it is the cluster's DNS itself."""
    return {
        "serviceAccountName": NAME,
        "priorityClassName": "system-cluster-critical",
        "dnsPolicy": "Default",
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": NAME,
                "image": image.reference,
                "imagePullPolicy": "Never",  # imported at each start; there is no registry to pull from
                "args": ["-conf", "/etc/coredns/Corefile"],
                "ports": [
                    {"name": "dns", "containerPort": DNS_PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"},
                ],
                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "170Mi"}},
                "livenessProbe": {"httpGet": {"path": "/health", "port": HEALTH_PORT}, "periodSeconds": 10},
                # Often: a start waits for it (below), and the kubelet's first probe may come a period late.
                "readinessProbe": {"httpGet": {"path": "/ready", "port": READY_PORT}, "periodSeconds": 1},
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": NAME}}],
    }


def deploy(api: kubeapi.Client, image: images.Image, raise_if_node_down: Callable[[], None]) -> None:
    """Write the add-on's objects as this checkout has them; return once CoreDNS answers.
    ``raise_if_node_down`` is called while waiting, to fail at once should the node fail."""
    for manifest in manifests(image):
        api.apply(manifest)
    _wait_ready(api, raise_if_node_down)


def _wait_ready(api: kubeapi.Client, raise_if_node_down: Callable[[], None], timeout: float = READY_TIMEOUT) -> None:
    """Until a ready endpoint of the Service says it is ready itself, asked at its own address (the host
    routes the pod range).

    Not the endpoints alone: in a cluster kept from an earlier run, they may
    still be the last run's Pod's, until the controllers catch up.
    """
    deadline = time.monotonic() + timeout
    answer = "no ready endpoint"
    while time.monotonic() < deadline:
        raise_if_node_down()
        for address in _ready_endpoints(api):
            try:
                urllib.request.urlopen(f"http://{address}:{READY_PORT}/ready", timeout=1).close()
                return
            except OSError as error:
                answer = f"{address}: {error}"
        time.sleep(0.2)
    raise TimeoutError(f"CoreDNS was not ready within {timeout:.0f}s ({answer})")


def _ready_endpoints(api: kubeapi.Client) -> set[str]:
    """The addresses the Service's EndpointSlices list as ready: where kube-proxy sends DNS queries."""
    slices = (
        api.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
            f"?labelSelector=kubernetes.io%2Fservice-name%3D{SERVICE}"
        )
        or {}
    )
    return {
        address
        for endpoint_slice in slices.get("items", [])
        for endpoint in endpoint_slice.get("endpoints") or []
        if endpoint["conditions"].get("ready")
        for address in endpoint["addresses"]
    }
