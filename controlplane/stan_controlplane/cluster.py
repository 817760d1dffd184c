"""Start and stop etcd, kube-apiserver and kube-controller-manager on loopback.

State (PKI, etcd data, logs, ports, pids) lives in one directory, ``.stan/``
by default. The processes die with the one that started them; should any
survive a crash anyway, the pids left behind are stopped by the next start,
and ports that became busy are picked anew.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from stan_controlplane import build, certs, processes

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
READY_TIMEOUT = 120.0
PORT_NAMES = ("etcd_client", "etcd_peer", "apiserver", "controller_manager")


@dataclasses.dataclass
class ControlPlane:
    """A running control plane whose processes belong to this Python process."""

    state_dir: Path
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]]

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def stop(self, grace_period: float = processes.GRACE_PERIOD) -> None:
        """Stop the controller manager, then the API server, then etcd: each gracefully while what it needs runs."""
        for name in ("controller-manager", "apiserver", "etcd"):
            process = self.processes.get(name)
            if process is not None:
                processes.stop(process, timeout=grace_period)
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
        self.processes["apiserver"] = _spawn(self.state_dir, "apiserver", _apiserver_args(self.state_dir, pki,
                                                                                          self.ports))
        _record_pids(self)
        wait_ready(self, watched=("etcd", "apiserver"))
        if self.processes["controller-manager"].poll() is not None:
            self.processes["controller-manager"] = _spawn(
                self.state_dir, "controller-manager", _controller_manager_args(self.state_dir, pki, self.ports))
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
            processes.terminate({pid: lambda p=pid: not _is_ours(p, state_dir)})
    pid_file.unlink()


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
    with (state_dir / "logs" / f"{name}.log").open("ab") as log:
        return processes.spawn(args, output=log)


def _write_kubeconfig(path: Path, server: str, pki: certs.Pki, user: str) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "stan-local",
        "clusters": [{"name": "stan-local", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [{"name": user, "user": {"client-certificate": str(pki.cert(user)), "client-key": str(pki.key(user))}}],
        "contexts": [{"name": "stan-local", "context": {"cluster": "stan-local", "user": user}}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _etcd_args(state_dir: Path, ports: dict[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd_client']}"
    peer = f"http://127.0.0.1:{ports['etcd_peer']}"
    return [str(build.binary_path("etcd")), "--name=stan", f"--data-dir={state_dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=stan={peer}", "--unsafe-no-fsync", "--log-level=warn"]


def _apiserver_args(state_dir: Path, pki: certs.Pki, ports: dict[str, int]) -> list[str]:
    return [str(build.binary_path("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{ports['etcd_client']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={ports['apiserver']}",
            f"--cert-dir={state_dir / 'apiserver'}",
            f"--tls-cert-file={pki.cert('apiserver')}", f"--tls-private-key-file={pki.key('apiserver')}",
            f"--client-ca-file={pki.ca_cert}", "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            "--endpoint-reconciler-type=none"]


def _controller_manager_args(state_dir: Path, pki: certs.Pki, ports: dict[str, int]) -> list[str]:
    kubeconfig = state_dir / "controller-manager.kubeconfig"
    return [str(build.binary_path("kube-controller-manager")),
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['controller_manager']}",
            f"--cert-dir={state_dir / 'controller-manager'}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}"]


def wait_ready(plane: ControlPlane, timeout: float = READY_TIMEOUT,
               watched: tuple[str, ...] = ("etcd", "apiserver", "controller-manager")) -> None:
    """Poll the API server's /readyz with the admin's client certificate; fail if a watched process exits."""
    pki = certs.Pki(plane.state_dir / "pki")
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for name, process in plane.processes.items():
            if name in watched and process.poll() is not None:
                log = plane.state_dir / "logs" / f"{name}.log"
                tail = log.read_text(errors="replace").splitlines()[-20:]
                raise RuntimeError(f"{name} exited with {process.returncode}; last lines of {log}:\n"
                                   + "\n".join(tail))
        try:
            with urllib.request.urlopen(f"{plane.server}/readyz", context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as error:
            last_error = str(error)
        time.sleep(0.2)
    raise TimeoutError(f"the API server was not ready after {timeout:.0f}s: {last_error}")


def start(state_dir: Path, *, fresh: bool = False, out=sys.stderr) -> ControlPlane:
    """Build if needed, then start the control plane and wait until it is ready.

    ``fresh`` wipes stored objects (tests want a clean cluster; ``make run``
    keeps the user's tasks across restarts).
    """
    build.ensure_built(out)
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    stop_stale(state_dir)
    if fresh:
        shutil.rmtree(state_dir / "etcd", ignore_errors=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    pki = certs.ensure(state_dir / "pki")
    ports = _ports(state_dir)
    plane = ControlPlane(state_dir=state_dir, ports=ports, processes={})
    _write_kubeconfig(plane.kubeconfig, plane.server, pki, "admin")
    _write_kubeconfig(state_dir / "controller-manager.kubeconfig", plane.server, pki, "controller-manager")
    started = time.monotonic()
    try:
        plane.processes["etcd"] = _spawn(state_dir, "etcd", _etcd_args(state_dir, ports))
        plane.processes["apiserver"] = _spawn(state_dir, "apiserver", _apiserver_args(state_dir, pki, ports))
        _record_pids(plane)
        wait_ready(plane)
        plane.processes["controller-manager"] = _spawn(
            state_dir, "controller-manager", _controller_manager_args(state_dir, pki, ports))
        _record_pids(plane)
        print(f"==> control plane ready at {plane.server} in {time.monotonic() - started:.1f}s "
              f"(kubeconfig {plane.kubeconfig})", file=out, flush=True)
    except BaseException:  # a print to a closed pipe too: the caller never gets the plane to stop
        plane.stop()
        raise
    return plane
