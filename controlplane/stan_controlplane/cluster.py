"""Start and stop the local cluster: etcd, kube-apiserver, kube-controller-manager and, with a node,
kube-scheduler and the node itself (containerd, kubelet, kube-proxy: see ``node``).

State (PKI, etcd data, logs, ports, pids) lives in one directory, ``.stan/``
by default. The processes die with the one that started them; should any
survive a crash anyway, the pids left behind are stopped by the next start,
and ports that became busy are picked anew.

Without a node the API server listens on loopback. With one it listens on the
host's end of the link to the node instead (``host.Instance.host_address``),
which the kubelet and the pods reach and which is the address it advertises:
the ``kubernetes`` Service's endpoint, where kube-proxy sends pods. The
kubeconfigs name whichever address it is, so clients never need to know.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import yaml

from stan_controlplane import build, certs, kubeapi, node, processes
from stan_controlplane.processes import GRACE_PERIOD

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
READY_TIMEOUT = 120.0
PORT_NAMES = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler")
STOP_ORDER = ("scheduler", "controller-manager", "apiserver", "etcd")
"""Each stops gracefully while what it needs still runs."""


@dataclasses.dataclass
class ControlPlane:
    """A running control plane, and its node if it has one, whose processes belong to this Python process."""

    state_dir: Path
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]]
    node: node.Node | None = None
    controller_manager_flags: tuple[str, ...] = ()
    """Appended to kube-controller-manager's arguments, at every start of it."""

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def address(self) -> str:
        """Where the API server listens: loopback, or the host's end of the link to the node."""
        return self.node.instance.host_address if self.node is not None else "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.ports['apiserver']}"

    def stop(self, grace_period: float = GRACE_PERIOD) -> None:
        """Stop the node's processes, the control plane, then undo the node's changes to the machine.

        The kubelet goes first, as its connections would hold up the API
        server's graceful stop for the whole grace period; the node's link
        goes last, as the API server's address goes with it.
        """
        if self.node is not None:
            self.node.stop(grace_period)
        for name in STOP_ORDER:
            process = self.processes.get(name)
            if process is not None:
                processes.stop(process, timeout=grace_period)
        if self.node is not None:
            self.node.release()
        _pid_file(self.state_dir).unlink(missing_ok=True)

    def stop_apiserver(self) -> None:
        """An outage: the API server goes away, etcd and the stored objects stay."""
        processes.stop(self.processes["apiserver"])

    def start_apiserver(self) -> None:
        """The API server comes back on the same port; returns once it is ready.

        The controller manager exits when it loses the API server while it is
        starting its controllers; a kubelet would restart it, so this does.
        """
        pki = certs.Pki(self.state_dir / "pki")
        self.processes["apiserver"] = _spawn(self.state_dir, "apiserver", _apiserver_args(self, pki))
        _record_pids(self)
        wait_ready(self, watched=("etcd", "apiserver"))
        if self.processes["controller-manager"].poll() is not None:
            self.processes["controller-manager"] = _spawn(
                self.state_dir,
                "controller-manager",
                _controller_manager_args(self.state_dir, pki, self.ports, self.controller_manager_flags),
            )
            _record_pids(self)


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "pids.json"


def _record_pids(plane: ControlPlane) -> None:
    pids = {name: process.pid for name, process in plane.processes.items()}
    _pid_file(plane.state_dir).write_text(json.dumps(pids))


def stop_stale(state_dir: Path) -> None:
    """Stop processes a crashed earlier run left behind in this state directory.

    A pid counts as ours only if its command line names the state directory,
    so a recycled pid of an unrelated process is never touched.
    """
    pid_file = _pid_file(state_dir)
    if not pid_file.exists():
        return
    # The reverse of their start order, so that each stops while what it needs still runs.
    for pid in reversed(json.loads(pid_file.read_text()).values()):
        if _is_ours(pid, state_dir):
            processes.terminate({pid: functools.partial(_is_gone, pid, state_dir)})
    pid_file.unlink()


def _is_gone(pid: int, state_dir: Path) -> bool:
    return not _is_ours(pid, state_dir)


def _is_ours(pid: int, state_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return status != "Z" and str(state_dir).encode() in cmdline


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ports(state_dir: Path) -> dict[str, int]:
    """The ports of the last run where still free (etcd remembers its peer URL), else new ones."""
    port_file = state_dir / "ports.json"
    ports = json.loads(port_file.read_text()) if port_file.exists() else {}
    for name in PORT_NAMES:
        if name not in ports or not _port_is_free(ports[name]):
            ports[name] = processes.free_port()
    port_file.write_text(json.dumps(ports))
    return ports


def _spawn(state_dir: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    return processes.spawn_logged(args, state_dir / "logs" / f"{name}.log")


def _write_kubeconfig(path: Path, server: str, pki: certs.Pki, user: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "stan-local",
        "clusters": [{"name": "stan-local", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [
            {"name": user, "user": {"client-certificate": str(pki.cert(user)), "client-key": str(pki.key(user))}}
        ],
        "contexts": [{"name": "stan-local", "context": {"cluster": "stan-local", "user": user}}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _etcd_args(state_dir: Path, ports: dict[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd_client']}"
    peer = f"http://127.0.0.1:{ports['etcd_peer']}"
    return [
        str(build.binary_path("etcd")),
        "--name=stan",
        f"--data-dir={state_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=stan={peer}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def _apiserver_args(plane: ControlPlane, pki: certs.Pki) -> list[str]:
    """Node authorization and NodeRestriction confine each kubelet to its own node; the API server
    is a client of kubelets (logs, exec) with a certificate of its own, and checks theirs."""
    with_node = plane.node is not None
    # Loopback cannot be an endpoint: the `kubernetes` Service gets one only when pods can reach it.
    reconciler = "lease" if with_node else "none"
    return [
        str(build.binary_path("kube-apiserver")),
        f"--etcd-servers=http://127.0.0.1:{plane.ports['etcd_client']}",
        f"--bind-address={plane.address}",
        f"--advertise-address={plane.address}",
        f"--secure-port={plane.ports['apiserver']}",
        f"--cert-dir={plane.state_dir / 'apiserver'}",
        f"--tls-cert-file={pki.cert('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_cert}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        f"--endpoint-reconciler-type={reconciler}",
        # Services' cluster IPs exist only inside the node, where kube-proxy routes them: dialled from the
        # host, a webhook's would leave by its default route. The host routes the pod range, so webhooks and
        # aggregated APIs are dialled at an endpoint's Pod address.
        f"--enable-aggregator-routing={'true' if with_node else 'false'}",
        # Close watches when stopping: else each client watching over HTTP/2 (kubectl, the kubelet)
        # holds the stop for the whole grace period.
        "--shutdown-watch-termination-grace-period=2s",
    ]


def _controller_manager_args(
    state_dir: Path, pki: certs.Pki, ports: dict[str, int], extra: Sequence[str] = ()
) -> list[str]:
    """``extra`` comes last, so that a flag given there wins over the same flag given here."""
    kubeconfig = state_dir / "controller-manager.kubeconfig"
    return [
        str(build.binary_path("kube-controller-manager")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['controller_manager']}",
        f"--cert-dir={state_dir / 'controller-manager'}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        *extra,
    ]


def _scheduler_args(state_dir: Path, ports: dict[str, int]) -> list[str]:
    kubeconfig = state_dir / "scheduler.kubeconfig"
    return [
        str(build.binary_path("kube-scheduler")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['scheduler']}",
        f"--cert-dir={state_dir / 'scheduler'}",
        "--leader-elect=false",
    ]


def _grant_kubelet_api(api: kubeapi.Client) -> None:
    """The API server's user toward kubelets may use their API (logs, exec, port-forward), and nothing else,
    as kubeadm grants it."""
    api.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "stan:kube-apiserver-kubelet-client"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kubelet-api-admin",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": certs.KUBELET_CLIENT_USER}],
        }
    )


def wait_ready(
    plane: ControlPlane,
    timeout: float = READY_TIMEOUT,
    watched: tuple[str, ...] = ("etcd", "apiserver", "controller-manager"),
) -> None:
    """Poll the API server's /readyz with the admin's client certificate; fail if a watched process exits."""
    context = certs.Pki(plane.state_dir / "pki").client_context("admin")
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for name, process in plane.processes.items():
            if name in watched:
                processes.raise_if_exited(name, process, plane.state_dir / "logs" / f"{name}.log")
        try:
            with urllib.request.urlopen(f"{plane.server}/readyz", context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as error:
            last_error = str(error)
        time.sleep(0.2)
    raise TimeoutError(f"the API server was not ready after {timeout:.0f}s: {last_error}")


def start(
    state_dir: Path,
    *,
    fresh: bool = False,
    with_node: bool = False,
    controller_manager_flags: Sequence[str] = (),
    out=sys.stderr,
) -> ControlPlane:
    """Build if needed, then start the control plane, and a node if asked, and wait until they are ready.

    ``fresh`` wipes stored objects (tests want a clean cluster; ``make run``
    keeps the user's tasks across restarts). ``with_node`` needs root; callers
    ask ``node.wanted()`` whether this run should have one. ``controller_manager_flags``
    are added to kube-controller-manager's arguments (e.g. ``--kube-api-qps=500``), after its
    own, so they win; none by default.
    """
    if isinstance(controller_manager_flags, str):
        raise TypeError("controller_manager_flags is a sequence of flags, not one string")
    build.ensure_built(build.CONTROL_PLANE + (build.NODE if with_node else ()), out)
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    stop_stale(state_dir)
    if fresh:
        shutil.rmtree(state_dir / "etcd", ignore_errors=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    ports = _ports(state_dir)
    plane = ControlPlane(
        state_dir=state_dir, ports=ports, processes={}, controller_manager_flags=tuple(controller_manager_flags)
    )
    started = time.monotonic()
    try:
        if with_node:
            plane.node = node.Node.claim(state_dir, out)
        pki = certs.ensure(state_dir / "pki", plane.address)
        _write_kubeconfig(plane.kubeconfig, plane.server, pki, "admin")
        node_users = ("scheduler", "node", "kube-proxy") if plane.node is not None else ()
        for user in ("controller-manager", *node_users):
            _write_kubeconfig(state_dir / f"{user}.kubeconfig", plane.server, pki, user)
        plane.processes["etcd"] = _spawn(state_dir, "etcd", _etcd_args(state_dir, ports))
        plane.processes["apiserver"] = _spawn(state_dir, "apiserver", _apiserver_args(plane, pki))
        _record_pids(plane)
        wait_ready(plane)
        plane.processes["controller-manager"] = _spawn(
            state_dir,
            "controller-manager",
            _controller_manager_args(state_dir, pki, ports, plane.controller_manager_flags),
        )
        _record_pids(plane)
        print(
            f"==> control plane ready at {plane.server} in {time.monotonic() - started:.1f}s "
            f"(kubeconfig {plane.kubeconfig})",
            file=out,
            flush=True,
        )
        if plane.node is not None:
            api = kubeapi.Client(plane.server, pki.client_context("admin"))
            _grant_kubelet_api(api)
            plane.processes["scheduler"] = _spawn(state_dir, "scheduler", _scheduler_args(state_dir, ports))
            _record_pids(plane)
            plane.node.start(pki, api, state_dir / "node.kubeconfig", state_dir / "kube-proxy.kubeconfig", out)
    except BaseException:  # a print to a closed pipe too: the caller never gets the plane to stop
        plane.stop()
        raise
    return plane
