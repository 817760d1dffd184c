"""The local cluster's node: containerd and a kubelet beside the control plane, when run as root.

They run, with kube-proxy, in the node's own network namespace and cgroup
(see ``host``), which is what lets a developer's machine get a node and lose
it again without a trace. The kubelet is ``system:node:stan-node`` to the API server, which the
Node authorizer and NodeRestriction confine to its own Node and what its Pods
use; its own API takes client certificates and tokens only, each request
authorized by the API server (webhook), never anonymously. containerd's CRI
uses runc with the cgroupfs driver, as the kubelet does (no systemd to
delegate to), and the bridge CNI plugin with addresses from the node's pod
range. kube-proxy (``system:kube-proxy``) routes Services in the node's
namespace, the ``kubernetes`` Service to the API server on the host; it
masquerades all Service traffic, since without the br_netfilter module (which
would change every bridge of the machine) a reply from a Pod on the same
bridge would bypass the translation. The sandbox ("pause") image is the
busybox image built here, imported at each start, since no registry is
reachable. The cluster's DNS (see ``dns``) runs on the node as a Pod, deployed
once the Node is Ready; a start returns once it answers. The kubelet points
every Pod at it and passes on nothing of the host's resolver.

What this machine kind needs, each found by trying: cgroup v1 is refused by
the kubelet unless ``failCgroupV1: false``; runc cannot create a sandbox
unless containerd's CRI sets ``restrict_oom_score_adj`` where the machine
lacks CAP_SYS_RESOURCE (a container, a VM sandbox).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import yaml

from stan_controlplane import build, certs, debian, dns, host, images, kubeapi, processes

NODE_NAME = "stan-node"
PACKAGES = ("runc", "containernetworking-plugins", "iptables", "iproute2")
"""What containerd and the kubelet run beside them: the runtime, the CNI plugins (bridge, host-local,
portmap, loopback), the tool the kubelet and portmap write chains with, and the one ``host`` builds
the node's network with."""
CNI_BIN_DIR = "/usr/lib/cni"
"""Where containernetworking-plugins puts its plugins."""
READY_TIMEOUT = 120.0
EVICTION_HARD = {
    "memory.available": "100Mi",
    "nodefs.available": "1Gi",
    "nodefs.inodesFree": "1%",
    "imagefs.available": "1Gi",
    "imagefs.inodesFree": "1%",
}
"""Absolute, small thresholds: the kubelet's percentages would evict on a developer's nearly full disk."""


def wanted(out: TextIO = sys.stderr) -> bool:
    """Whether this run gets a node: as root, unless ``STAN_NODE=0``; ``STAN_NODE=1`` insists."""
    setting = os.environ.get("STAN_NODE", "")
    if setting == "0":
        print("==> no node (STAN_NODE=0): Pods stay Pending", file=out, flush=True)
        return False
    if os.geteuid() != 0:
        if setting == "1":
            raise RuntimeError("STAN_NODE=1 asks for a node, and a node (containerd, kubelet) needs root")
        print(
            "==> no node: a node (containerd, kubelet) needs root, so Pods stay Pending; "
            "STAN_NODE=0 says so without this message",
            file=out,
            flush=True,
        )
        return False
    return True


def prepare(out: TextIO = sys.stderr) -> None:
    """Install and build what a node start needs, ahead of it, so that a first run shows its progress
    (a test session would hold it): the Debian packages, the sandbox and DNS images."""
    debian.ensure_installed(PACKAGES, "running a node", out)
    images.busybox_image(out)
    images.coredns_image(out)


class Node:
    """A node instance claimed for one state directory: ``start`` runs it, ``stop`` and ``release`` undo it."""

    def __init__(self, state_dir: Path, instance: host.Instance) -> None:
        self.state_dir = state_dir
        self.instance = instance
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def claim(cls, state_dir: Path, out: TextIO = sys.stderr) -> Node:
        """Install what the node needs, and claim an instance: the one of the last run, if it is free."""
        debian.ensure_installed(PACKAGES, "running a node", out)
        preference = state_dir / "node" / "instance"
        preference.parent.mkdir(exist_ok=True)
        instance = host.claim(int(preference.read_text()) if preference.exists() else None)
        preference.write_text(str(instance.index))
        return cls(state_dir, instance)

    @property
    def directory(self) -> Path:
        """The node's configuration and containerd's images: kept across runs, unlike the instance's directory."""
        return self.state_dir / "node"

    @property
    def containerd_socket(self) -> Path:
        return self.instance.directory / "containerd.sock"

    def start(
        self,
        pki: certs.Pki,
        api: kubeapi.Client,
        kubelet_kubeconfig: Path,
        proxy_kubeconfig: Path,
        out: TextIO = sys.stderr,
    ) -> None:
        """Run containerd, import the sandbox and CoreDNS images, run the kubelet and kube-proxy, deploy the
        cluster's DNS; return once the Node is Ready and the DNS answers. ``api`` is the admin's."""
        sandbox = images.busybox_image(out)
        coredns = images.coredns_image(out)
        certs.ensure_node(pki, NODE_NAME, self.instance.node_address)
        self._write_configuration(pki, sandbox, proxy_kubeconfig)
        logs = self.state_dir / "logs"
        enter = self.instance.entering()
        self.processes["containerd"] = processes.spawn_logged(
            [str(build.binary_path("containerd")), "--config", str(self.directory / "containerd.toml")],
            logs / "containerd.log",
            before_exec=enter,
        )
        self._wait_containerd()
        for image in (sandbox, coredns):
            images.import_image(image, build.binary_path("ctr"), self.containerd_socket)
        stale = self._ready_condition(api)  # the last run's, when the Node is kept
        started = time.monotonic()
        self.processes["kubelet"] = processes.spawn_logged(
            [
                str(build.binary_path("kubelet")),
                f"--config={self.directory / 'kubelet.yaml'}",
                f"--kubeconfig={kubelet_kubeconfig}",
                f"--root-dir={self.instance.directory / 'kubelet'}",
                f"--cert-dir={self.instance.directory / 'kubelet' / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.instance.node_address}",
            ],
            logs / "kubelet.log",
            before_exec=enter,
        )
        self.processes["kube-proxy"] = processes.spawn_logged(
            [str(build.binary_path("kube-proxy")), f"--config={self.directory / 'kube-proxy.yaml'}"],
            logs / "kube-proxy.log",
            before_exec=enter,
        )
        self._wait_ready(api, stale)
        print(
            f"==> node {NODE_NAME} Ready {time.monotonic() - started:.1f}s after the kubelet started "
            f"(address {self.instance.node_address}, pods {self.instance.pod_cidr})",
            file=out,
            flush=True,
        )
        started = time.monotonic()
        dns.deploy(api, coredns, self._raise_if_exited)
        print(
            f"==> cluster DNS ({dns.SERVICE} at {dns.CLUSTER_IP}) answering {time.monotonic() - started:.1f}s later",
            file=out,
            flush=True,
        )

    def stop(self, grace_period: float = processes.GRACE_PERIOD) -> None:
        """Stop kube-proxy and the kubelet, then containerd; the shims and containers keep running until
        ``release``."""
        for name in ("kube-proxy", "kubelet", "containerd"):
            if name in self.processes:
                processes.stop(self.processes[name], timeout=grace_period)

    def release(self) -> None:
        """Kill whatever of the node still runs and undo all it changed on the machine."""
        self.instance.release()

    def _write_configuration(self, pki: certs.Pki, sandbox: images.Image, proxy_kubeconfig: Path) -> None:
        self.directory.mkdir(exist_ok=True)
        (self.directory / "cni").mkdir(exist_ok=True)
        (self.directory / "containerd.toml").write_text(_containerd_config(self, sandbox))
        (self.directory / "cni" / "10-stan.conflist").write_text(json.dumps(_cni_config(self.instance), indent=2))
        (self.directory / "kubelet.yaml").write_text(yaml.safe_dump(_kubelet_config(self, pki), sort_keys=False))
        (self.directory / "kube-proxy.yaml").write_text(
            yaml.safe_dump(_proxy_config(self.instance, proxy_kubeconfig), sort_keys=False)
        )

    def _wait_containerd(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._raise_if_exited()
            with socket.socket(socket.AF_UNIX) as client:
                try:
                    client.connect(str(self.containerd_socket))
                    return
                except OSError:
                    time.sleep(0.05)
        raise TimeoutError(f"containerd did not listen on {self.containerd_socket} within {timeout:.0f}s")

    def _ready_condition(self, api: kubeapi.Client) -> dict | None:
        """The Node's Ready condition, None before the kubelet first registers it."""
        found = api.get(f"/api/v1/nodes/{NODE_NAME}")
        conditions = found.get("status", {}).get("conditions", []) if found is not None else []
        return next((condition for condition in conditions if condition["type"] == "Ready"), None)

    def _wait_ready(self, api: kubeapi.Client, stale: dict | None, timeout: float = READY_TIMEOUT) -> None:
        """Until this kubelet reports the Node Ready (not the ``stale`` report of an earlier one);
        fail early if containerd or the kubelet exits."""
        deadline = time.monotonic() + timeout
        ready = None
        while time.monotonic() < deadline:
            self._raise_if_exited()
            ready = self._ready_condition(api)
            if ready is not None and ready["status"] == "True" and ready != stale:
                return
            time.sleep(0.1)
        raise TimeoutError(
            f"node {NODE_NAME} was not Ready after {timeout:.0f}s: {ready}; "
            f"see {self.state_dir / 'logs' / 'kubelet.log'}"
        )

    def _raise_if_exited(self) -> None:
        for name, process in self.processes.items():
            processes.raise_if_exited(name, process, self.state_dir / "logs" / f"{name}.log")


def _containerd_config(node: Node, sandbox: images.Image) -> str:
    """containerd's configuration: everything it writes under the node's directories, nothing in /etc,
    /run/containerd or /opt; no NRI socket (in /var/run, machine-wide); pods' loopback set up by
    containerd itself, not by a CNI plugin whose cached result would be named after no network of ours."""
    instance = node.instance.directory
    return f"""\
version = 4
root = {json.dumps(str(node.directory / "containerd"))}
state = {json.dumps(str(instance / "containerd"))}
imports = []
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]

[plugins."io.containerd.server.v1.grpc"]
  address = {json.dumps(str(node.containerd_socket))}
[plugins."io.containerd.server.v1.ttrpc"]
  address = {json.dumps(str(node.containerd_socket) + ".ttrpc")}
[plugins."io.containerd.shim.v1.manager"]
  socket_dir = {json.dumps(str(instance / "shims"))}
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = {json.dumps(sandbox.containerd_name)}
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  Root = {json.dumps(str(instance / "runc"))}
  SystemdCgroup = false
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [{json.dumps(CNI_BIN_DIR)}]
  conf_dir = {json.dumps(str(node.directory / "cni"))}
  use_internal_loopback = true
"""


def _cni_config(instance: host.Instance) -> dict:
    """One bridge in the node's namespace, the gateway of the pod range; no masquerading, since the
    host routes the pod range to the node (the API server answers pods directly)."""
    return {
        "cniVersion": "1.0.0",
        "name": instance.name,  # the CNI library's cached results are named after it (see host)
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": instance.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(instance.directory / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kubelet_config(node: Node, pki: certs.Pki) -> dict:
    """The kubelet's configuration: its cgroups under the node's (``host``), everything it writes under the
    node's directory, its API on the node's address only."""
    instance = node.instance
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{instance.name}",
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "address": instance.node_address,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "tlsCertFile": str(pki.cert("kubelet")),
        "tlsPrivateKeyFile": str(pki.key("kubelet")),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "failSwapOn": False,
        "evictionHard": EVICTION_HARD,
        # Images imported here cannot be pulled again: never collect them for disk space.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "podLogsDir": str(instance.directory / "pod-logs"),
        "volumePluginDir": str(instance.directory / "volume-plugins"),
        "clusterDNS": [dns.CLUSTER_IP],
        "clusterDomain": dns.DOMAIN,
        "resolvConf": "",  # Pods get the cluster's DNS and search domains only, nothing of the host's
    }


def _proxy_config(instance: host.Instance, kubeconfig: Path) -> dict:
    """kube-proxy's configuration: iptables chains in the node's namespace, Service traffic masqueraded (see
    above), the machine's conntrack table left as it is (its size is machine-wide), its endpoints on the
    node's loopback."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": instance.pod_cidr,
        "iptables": {"masqueradeAll": True},
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": ["primary"],
    }
