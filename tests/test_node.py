"""The local node: a real kubelet, containerd and kube-proxy run Pods and Services, which the cluster's DNS names,
under proper identities, and leave nothing behind.

A node runs only as root. This module's clusters are its own, so that it
does not depend on whether the session's has a node: one shared by the tests
that run Pods, and one per teardown test, stopped or killed. Nothing here
trusts ``host``'s own account of what it cleaned: the machine is inspected
directly (``/proc``, mounts, links, iptables, cgroups, sysctls).
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stan_controlplane import build, certs, cluster, dns, host, images, node

from .conftest import STATE_DIR

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a node (containerd, kubelet) runs only as root")


def kubectl(
    kubeconfig: Path, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(build.binary_path("kubectl")), f"--kubeconfig={kubeconfig}", *args]
    result = subprocess.run(command, capture_output=True, text=True, input=stdin, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


def pod_manifest(name: str, *command: str, namespace: str = "default", volumes: dict[str, dict] | None = None) -> dict:
    """A busybox Pod running ``command`` once; ``volumes`` maps a mount path to a volume source."""
    volumes = volumes or {}
    container = {
        "name": "main",
        "image": images.busybox_image().reference,
        "command": list(command),
        "volumeMounts": [{"name": f"v{i}", "mountPath": path} for i, path in enumerate(volumes)],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [container],
            "volumes": [{"name": f"v{i}", **source} for i, source in enumerate(volumes.values())],
        },
    }


def http_get(address: str, port: int) -> str:
    """A shell command for busybox that prints the answer to ``GET /`` (headers, then body, no blank lines).

    nc speaks the HTTP, as busybox's wget crashes when given a timeout. A
    Service's rules come a moment after the Service and its endpoints, hence
    the attempts.
    """
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
    return (
        f"for attempt in $(seq 30); do {request} | nc -w 5 {address} {port} | grep . && exit; sleep 0.5; done; exit 1"
    )


def apply(kubeconfig: Path, manifest: dict) -> None:
    """``kubectl apply``, once the namespace's default ServiceAccount exists (the controller manager makes it
    moments after the cluster starts, and admission wants it for a Pod)."""
    namespace = manifest["metadata"]["namespace"]
    wait_for(
        lambda: kubectl(kubeconfig, "get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
        what="the default ServiceAccount",
    )
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(manifest))


def phase(kubeconfig: Path, name: str, wanted: str, namespace: str = "default") -> dict | None:
    status = json.loads(kubectl(kubeconfig, "get", "pod", "-n", namespace, name, "-o", "json").stdout)["status"]
    return status if status.get("phase") == wanted else None


def wait_for(probe, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    pytest.fail(f"{what} not reached within {timeout:.0f}s; last answer: {last!r}")


# ---- what a node leaves on the machine, seen from outside ------------------------------------------


class MachineBefore:
    """What the machine looked like before a node of the test's own: the values a stop must restore."""

    def __init__(self) -> None:
        recorded = host.MACHINE_DIR / "machine.json"
        # With another node live, the kernel settings are its kubelet's; the originals are in its record.
        self.sysctls = (
            json.loads(recorded.read_text())["sysctls"]
            if recorded.exists()
            else {name: _sysctl(name) for name in host.KUBELET_SYSCTLS}
        )
        self.shared_dirs = {path: path.exists() for path in host.SHARED_DIRS}
        self.run_netns = _listing(Path("/run/netns"))


def _sysctl(name: str) -> str:
    return (host.PROC_SYS / name).read_text().strip()


def _listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.is_dir() else []


class Seen:
    """A running node's marks, noted while it runs, to look for once it is gone.

    It holds its network namespace open, so that the namespace's inode number,
    which processes show, cannot pass to a new namespace before ``close``.
    """

    def __init__(self, state_dir: Path, instance_name: str, instance_dir: Path, netns: Path) -> None:
        self.state_dir = state_dir
        self.name = instance_name
        self.directory = instance_dir
        self._netns_fd = os.open(netns, os.O_RDONLY)
        self.netns = f"net:[{os.fstat(self._netns_fd).st_ino}]"

    @classmethod
    def of(cls, plane: cluster.ControlPlane) -> Seen:
        assert plane.node is not None
        instance = plane.node.instance
        return cls(plane.state_dir, instance.name, instance.directory, instance.netns)

    def __enter__(self) -> Seen:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self._netns_fd)


def traces(seen: Seen) -> list[str]:
    """Everything of the node still on the machine: processes, mounts, link, chains, cgroups, files."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():  # this process holds the namespace
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (proc / "cgroup").read_text()
            netns = os.readlink(proc / "ns" / "net")
        except OSError:  # gone meanwhile, or the machine's init, which even root may not inspect here
            continue
        reasons = [
            reason
            for reason, found_here in (
                ("names the node's paths", str(seen.directory) in cmdline or str(seen.state_dir) in cmdline),
                ("in its network namespace", netns == seen.netns),
                ("in its cgroup", f"/{seen.name}/" in cgroups or cgroups.rstrip().endswith(f"/{seen.name}")),
            )
            if found_here
        ]
        if reasons:
            found.append(f"process {proc.name} ({', '.join(reasons)}): {cmdline[:120]}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4])
        if point.is_relative_to(seen.directory) or point.is_relative_to(seen.state_dir):
            found.append(f"mount {point}")
    if Path(f"/sys/class/net/{seen.name}").exists():
        found.append(f"link {seen.name}")
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    found += [f"host chain {line}" for line in saved.splitlines() if line.startswith((":KUBE-", ":CNI-"))]
    for point, _ in _cgroup_mounts():
        if (point / seen.name).exists():
            found.append(f"cgroup {point / seen.name}")
    if seen.directory.exists():
        found.append(f"directory {seen.directory}")
    for link in _entries(host.CONTAINER_LOG_LINKS):
        if link.is_symlink() and os.readlink(link).startswith(str(seen.directory)):
            found.append(f"log link {link}")
    found += [f"CNI result {entry}" for entry in _entries(host.CNI_RESULTS) if entry.name.startswith(f"{seen.name}-")]
    return found


def machine_restored(before: MachineBefore) -> list[str]:
    """What differs from before: kernel settings and directories once no node is left, /run/netns always."""
    differences = []
    if _listing(Path("/run/netns")) != before.run_netns:
        differences.append(f"/run/netns: {_listing(Path('/run/netns'))}, was {before.run_netns}")
    if live := host.live_instances():  # another node runs (a session's, `make run`'s): it restores them when it stops
        print(f"kernel settings: left to the last of the live nodes {live}, the record checked")
        recorded = json.loads((host.MACHINE_DIR / "machine.json").read_text())["sysctls"]
        if recorded != before.sysctls:
            differences.append(f"the record of kernel settings is {recorded}, was {before.sysctls}")
        return differences
    differences += [
        f"{name} is {_sysctl(name)}, was {value}" for name, value in before.sysctls.items() if _sysctl(name) != value
    ]
    differences += [
        f"{path} left behind" for path, existed in before.shared_dirs.items() if not existed and path.exists()
    ]
    if (host.MACHINE_DIR / "machine.json").exists():
        differences.append("the record of kernel settings is left")
    return differences


def _cgroup_mounts() -> list[tuple[Path, str]]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        if tail.split()[0] in ("cgroup", "cgroup2"):
            mounts.append((Path(fields.split()[4]), tail.split()[0]))
    return mounts


def _entries(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.is_dir() else []


# ---- teardown first: no other node of this module is running yet ---------------------------------


def test_a_stopped_node_leaves_nothing_behind() -> None:
    before = MachineBefore()
    plane = cluster.start(STATE_DIR / "node-stopped", fresh=True, with_node=True)
    with contextlib.ExitStack() as stack:
        try:
            assert plane.node is not None
            seen = stack.enter_context(Seen.of(plane))
            apply(plane.kubeconfig, pod_manifest("sleeper", "sleep", "3600"))
            wait_for(lambda: phase(plane.kubeconfig, "sleeper", "Running"), what="the Pod running")
            # While it runs, its marks are in its own network namespace, cgroup and directory.
            assert any(mark.startswith("mount") for mark in traces(seen))
            assert not any(mark.startswith("host chain") for mark in traces(seen)), "the host's iptables are untouched"
            inside = subprocess.run(
                ["nsenter", f"--net={plane.node.instance.netns}", "iptables-save"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert ":KUBE-KUBELET-CANARY" in inside and ":KUBE-SERVICES" in inside, (
                "the kubelet's and kube-proxy's chains are in the node's namespace"
            )
            assert all((point / seen.name / "kubepods").is_dir() for point, _ in _cgroup_mounts()), (
                "the pods' cgroups are under the node's own"
            )
            assert _sysctl("vm/overcommit_memory") == "1", "the kubelet set its kernel settings"
        finally:
            started = time.monotonic()
            plane.stop()
        print(f"stop with a running Pod: {time.monotonic() - started:.1f}s")
        assert traces(seen) == []
        assert machine_restored(before) == []


STARTER = """
import sys
from pathlib import Path
from stan_controlplane import cluster
plane = cluster.start(Path(sys.argv[1]), fresh=True, with_node=True)
instance = plane.node.instance
print(plane.kubeconfig, instance.name, instance.directory, instance.netns, flush=True)
sys.stdin.read()
"""


def test_a_killed_node_is_cleaned_up_by_the_next_start() -> None:
    """SIGKILL of the process that started the cluster: its children die with it, the shims and containers
    do not; the next start of a node cleans up after it, and its stop leaves nothing."""
    before = MachineBefore()
    state_dir = (STATE_DIR / "node-killed").resolve()
    with contextlib.ExitStack() as stack:
        with subprocess.Popen(
            [sys.executable, "-c", STARTER, str(state_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as starter:
            try:
                assert starter.stdout is not None
                kubeconfig, name, directory, netns = starter.stdout.readline().split()
                killed = stack.enter_context(Seen(state_dir, name, Path(directory), Path(netns)))
                apply(Path(kubeconfig), pod_manifest("sleeper", "sleep", "3600"))
                wait_for(lambda: phase(Path(kubeconfig), "sleeper", "Running"), what="the Pod running")
            finally:
                starter.kill()
        outliving = wait_for(
            lambda: [mark for mark in traces(killed) if "shim" in mark or "sleep 3600" in mark],
            timeout=10,
            what="the shim and the container outliving the kill",
        )
        assert any("containerd-shim" in mark for mark in outliving) and any("sleep 3600" in mark for mark in outliving)
        print(f"after the SIGKILL, left running: {outliving}")

        plane = cluster.start(state_dir, fresh=True, with_node=True)
        restarted = stack.enter_context(Seen.of(plane))
        plane.stop()
        assert traces(killed) == []
        assert traces(restarted) == []
        assert machine_restored(before) == []


# ---- a node at work --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_plane() -> Iterator[cluster.ControlPlane]:
    plane = cluster.start(STATE_DIR / "node-pods", fresh=True, with_node=True)
    yield plane
    plane.stop()


@pytest.fixture
def namespace(node_plane: cluster.ControlPlane) -> Iterator[str]:
    name = f"n-{uuid.uuid4().hex[:10]}"
    kubectl(node_plane.kubeconfig, "create", "namespace", name)
    yield name
    kubectl(node_plane.kubeconfig, "delete", "namespace", name, "--wait=false")


def as_node(plane: cluster.ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with the kubelet's own credentials."""
    return kubectl(plane.state_dir / "node.kubeconfig", *args, check=False)


def serve_web(plane: cluster.ControlPlane, namespace: str) -> None:
    """The Pod ``web`` (label ``app=web``, the selector of ``kubectl create service``) answering on port 8080
    with ``served by web``; returns once it is Ready."""
    manifest = pod_manifest(
        "web",
        "sh",
        "-c",
        "mkdir /tmp/www && echo served by $(hostname) > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        namespace=namespace,
    )
    manifest["metadata"]["labels"] = {"app": "web"}
    apply(plane.kubeconfig, manifest)
    kubectl(plane.kubeconfig, "wait", "-n", namespace, "--for=condition=Ready", "pod/web", "--timeout=60s")


def test_the_node_is_ready_under_its_own_identity(node_plane: cluster.ControlPlane, namespace: str) -> None:
    assert node_plane.node is not None
    found = json.loads(kubectl(node_plane.kubeconfig, "get", "node", node.NODE_NAME, "-o", "json").stdout)
    assert {c["type"]: c["status"] for c in found["status"]["conditions"]}["Ready"] == "True"
    assert found["status"]["addresses"] == [
        {"type": "InternalIP", "address": node_plane.node.instance.node_address},
        {"type": "Hostname", "address": node.NODE_NAME},
    ]
    info = found["status"]["nodeInfo"]
    assert (info["kubeletVersion"], info["containerRuntimeVersion"]) == (
        build.KUBE_NODE.version,
        f"containerd://{build.CONTAINERD.version.removeprefix('v')}",
    )

    whoami = json.loads(as_node(node_plane, "auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert whoami["username"] == f"system:node:{node.NODE_NAME}"
    assert "system:nodes" in whoami["groups"]

    # The Node authorizer: its own Node only; NodeRestriction: not every label of its own.
    assert as_node(node_plane, "label", "node", node.NODE_NAME, "stan.dev/checked=yes").returncode == 0
    restricted = as_node(node_plane, "label", "node", node.NODE_NAME, "node-restriction.kubernetes.io/x=y")
    assert "is not allowed to modify labels: node-restriction.kubernetes.io/x" in restricted.stderr, restricted.stderr
    kubectl(
        node_plane.kubeconfig,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "another-node"}}),
    )
    try:
        for verb in (("get", "node", "another-node"), ("label", "node", "another-node", "stan.dev/checked=yes")):
            refused = as_node(node_plane, *verb)
            assert refused.returncode != 0
            assert "cannot read 'another-node', only its own Node object" in refused.stderr, refused.stderr
    finally:
        kubectl(node_plane.kubeconfig, "delete", "node", "another-node")

    # The Node authorizer: a Secret only once a Pod bound to the node uses it.
    kubectl(node_plane.kubeconfig, "create", "secret", "generic", "used", "-n", namespace, "--from-literal=a=b")
    kubectl(node_plane.kubeconfig, "create", "secret", "generic", "unused", "-n", namespace, "--from-literal=a=b")
    apply(
        node_plane.kubeconfig,
        pod_manifest(
            "with-secret",
            "cat",
            "/secret/a",
            namespace=namespace,
            volumes={"/secret": {"secret": {"secretName": "used"}}},
        ),
    )
    refused = as_node(node_plane, "get", "secret", "unused", "-n", namespace)
    assert refused.returncode != 0 and "no relationship found between node" in refused.stderr, refused.stderr
    wait_for(
        lambda: as_node(node_plane, "get", "secret", "used", "-n", namespace).returncode == 0,
        what="the node reading the Secret its Pod uses",
    )


def test_a_pod_runs_to_completion_and_kubectl_logs_shows_its_output(
    node_plane: cluster.ControlPlane, namespace: str
) -> None:
    started = time.monotonic()
    apply(node_plane.kubeconfig, pod_manifest("hello", "sh", "-c", "echo hello from $(hostname)", namespace=namespace))
    wait_for(lambda: phase(node_plane.kubeconfig, "hello", "Succeeded", namespace), what="the Pod succeeding")
    print(f"a Pod ran to completion {time.monotonic() - started:.1f}s after kubectl apply")
    assert kubectl(node_plane.kubeconfig, "logs", "-n", namespace, "hello").stdout == "hello from hello\n"


def test_a_pod_exiting_non_zero_fails(node_plane: cluster.ControlPlane, namespace: str) -> None:
    apply(node_plane.kubeconfig, pod_manifest("failing", "sh", "-c", "echo giving up >&2; exit 7", namespace=namespace))
    status = wait_for(lambda: phase(node_plane.kubeconfig, "failing", "Failed", namespace), what="the Pod failing")
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (7, "Error")
    assert kubectl(node_plane.kubeconfig, "logs", "-n", namespace, "failing").stdout == "giving up\n"


def test_kubectl_exec_runs_in_the_container(node_plane: cluster.ControlPlane, namespace: str) -> None:
    started = time.monotonic()
    apply(node_plane.kubeconfig, pod_manifest("sleeper", "sleep", "3600", namespace=namespace))
    kubectl(node_plane.kubeconfig, "wait", "-n", namespace, "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
    print(f"a Pod Ready {time.monotonic() - started:.1f}s after kubectl apply")
    answer = kubectl(
        node_plane.kubeconfig, "exec", "-n", namespace, "sleeper", "--", "sh", "-c", "echo $((6 * 7)) from $(hostname)"
    )
    assert answer.stdout == "42 from sleeper\n"


def test_the_kubelet_api_refuses_anonymous_and_unauthorized_requests(
    node_plane: cluster.ControlPlane, namespace: str
) -> None:
    """Its API authenticates with the cluster's CA or the API server's TokenReview, and authorizes each
    request with a SubjectAccessReview: anonymous is 401, a ServiceAccount without a grant 403, and the
    API server's own client certificate gets through."""
    assert node_plane.node is not None
    pki = certs.Pki(node_plane.state_dir / "pki")
    url = f"https://{node_plane.node.instance.node_address}:10250/pods"

    def status(certificate: str | None = None, token: str | None = None) -> int:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))  # the kubelet's serving certificate checks out
        if certificate:
            context.load_cert_chain(str(pki.cert(certificate)), str(pki.key(certificate)))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context, timeout=10):
                return 200
        except urllib.error.HTTPError as error:
            return error.code

    kubectl(node_plane.kubeconfig, "create", "serviceaccount", "nobody", "-n", namespace)
    token = kubectl(node_plane.kubeconfig, "create", "token", "nobody", "-n", namespace).stdout.strip()
    assert status() == 401
    assert status(token=token) == 403
    assert status(certificate="apiserver-kubelet-client") == 200


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    node_plane: cluster.ControlPlane, namespace: str
) -> None:
    """kube-proxy sends the ``kubernetes`` Service to the address the API server advertises: the host's end
    of the node's link.

    busybox speaks no TLS the API server accepts, so it sends plain HTTP and
    gets the TLS server's own answer to that.
    """
    endpoints = json.loads(kubectl(node_plane.kubeconfig, "get", "endpointslice", "kubernetes", "-o", "json").stdout)
    assert ([endpoint["addresses"] for endpoint in endpoints["endpoints"]], endpoints["ports"][0]["port"]) == (
        [[node_plane.address]],
        node_plane.ports["apiserver"],
    )
    service = json.loads(kubectl(node_plane.kubeconfig, "get", "service", "kubernetes", "-o", "json").stdout)
    apply(
        node_plane.kubeconfig,
        pod_manifest("caller", "sh", "-c", http_get(service["spec"]["clusterIP"], 443), namespace=namespace),
    )
    wait_for(lambda: phase(node_plane.kubeconfig, "caller", "Succeeded", namespace), what="the Pod succeeding")
    answer = kubectl(node_plane.kubeconfig, "logs", "-n", namespace, "caller").stdout
    assert "Client sent an HTTP request to an HTTPS server" in answer, answer


def test_a_service_sends_pods_to_its_pod_and_the_pod_to_itself(
    node_plane: cluster.ControlPlane, namespace: str
) -> None:
    serve_web(node_plane, namespace)
    kubectl(node_plane.kubeconfig, "create", "service", "clusterip", "web", "--tcp=80:8080", "-n", namespace)
    address = json.loads(kubectl(node_plane.kubeconfig, "get", "service", "web", "-n", namespace, "-o", "json").stdout)[
        "spec"
    ]["clusterIP"]
    fetch = http_get(address, 80)
    apply(node_plane.kubeconfig, pod_manifest("client", "sh", "-c", fetch, namespace=namespace))
    wait_for(lambda: phase(node_plane.kubeconfig, "client", "Succeeded", namespace), what="the client succeeding")
    assert kubectl(node_plane.kubeconfig, "logs", "-n", namespace, "client").stdout.endswith("\nserved by web\n")
    hairpin = kubectl(node_plane.kubeconfig, "exec", "-n", namespace, "web", "--", "sh", "-c", fetch)
    assert hairpin.stdout.endswith("\nserved by web\n")


def test_the_api_server_reaches_a_pod(node_plane: cluster.ControlPlane, namespace: str) -> None:
    """The host routes the pod range to the node: the API server reaches pods directly, as it will reach
    in-cluster webhooks, and as ``kubectl port-forward`` and the proxy need."""
    serve_web(node_plane, namespace)
    answer = wait_for(
        lambda: (
            kubectl(
                node_plane.kubeconfig,
                "get",
                "--raw",
                f"/api/v1/namespaces/{namespace}/pods/web:8080/proxy/",
                check=False,
            ).stdout
        ),
        what="the pod's answer through the API server",
    )
    assert answer == "served by web\n"


def test_pods_resolve_the_clusters_names_and_nothing_else(node_plane: cluster.ControlPlane, namespace: str) -> None:
    """The cluster's DNS answers Services' names and addresses from the API server; a name outside the
    cluster is refused at once, forwarded nowhere; a Pod's resolver knows the cluster's DNS and domains only,
    nothing of the host's."""
    serve_web(node_plane, namespace)
    kubectl(node_plane.kubeconfig, "create", "service", "clusterip", "web", "--tcp=80:8080", "-n", namespace)
    address = json.loads(kubectl(node_plane.kubeconfig, "get", "service", "web", "-n", namespace, "-o", "json").stdout)[
        "spec"
    ]["clusterIP"]
    name = f"web.{namespace}.svc.{dns.DOMAIN}"
    apply(
        node_plane.kubeconfig,
        pod_manifest(
            "resolver",
            "sh",
            "-c",
            f"cat /etc/resolv.conf; nslookup {name}; nslookup {address}; nslookup example.com; true",
            namespace=namespace,
        ),
    )
    wait_for(lambda: phase(node_plane.kubeconfig, "resolver", "Succeeded", namespace), what="the Pod succeeding")
    answer = kubectl(node_plane.kubeconfig, "logs", "-n", namespace, "resolver").stdout
    assert answer.startswith(
        f"search {namespace}.svc.{dns.DOMAIN} svc.{dns.DOMAIN} {dns.DOMAIN}\n"
        f"nameserver {dns.CLUSTER_IP}\noptions ndots:5\n"
    ), answer
    assert f"Name:\t{name}\nAddress: {address}\n" in answer
    assert f"name = {name}\n" in answer, "and the address's reverse name"
    assert "server can't find example.com: REFUSED" in answer


def test_the_clusters_dns_has_no_plugin_that_sends_queries_elsewhere() -> None:
    """Not only does its Corefile forward nowhere: the CoreDNS built here has no plugin that could (forward,
    grpc, the cloud providers' DNS...), only these, which answer from the cluster or report on CoreDNS."""
    build.ensure_built((build.COREDNS,))
    listed = subprocess.run(
        [str(build.binary_path("coredns")), "-plugins"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(listed) == {
        "cache",
        "errors",
        "health",
        "kubernetes",
        "loadbalance",
        "metadata",
        "prometheus",
        "ready",
        "transfer",
    }
