"""``stan run``: Stan on one machine, in the foreground.

It starts the local control plane unless ``KUBECONFIG`` names a cluster,
installs the CRDs, then runs the operator and the REST facade as child
processes. Ctrl-C or SIGTERM stops the children, then the control plane; if a
child dies, everything stops, so a half-running Stan is never left behind.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from stan_controlplane import build, cluster, processes
from stan_operator import install


def _stan(*args: str) -> list[str]:
    return [sys.executable, "-m", "stan_cli", *args]


def _banner(api_port: int, kubeconfig: str) -> str:
    kubectl = shutil.which("kubectl") or str(build.binary_path("kubectl"))
    return "\n".join([
        "",
        "Stan is running. Ctrl-C stops it.",
        f"  API:        http://127.0.0.1:{api_port}/api/v1/stan  (docs: http://127.0.0.1:{api_port}/docs)",
        f"  kubeconfig: {kubeconfig}",
        f"  kubectl:    KUBECONFIG={kubeconfig} {kubectl} get stantasks -A",
        f"  API key:    KUBECONFIG={kubeconfig} .venv/bin/stan apikey create --user you --scopes stan:execute",
        "",
    ])


def run(project_root: Path, api_port: int) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    plane: cluster.ControlPlane | None = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        if not os.environ.get("KUBECONFIG"):
            state_dir = Path(os.environ.get("STAN_HOME", project_root / ".stan"))
            plane = cluster.start(state_dir / "local")
            os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        for name in asyncio.run(install.apply_crds_to_current_cluster(project_root / "crds")):
            print(f"==> CRD {name} established", flush=True)
        children["operator"] = processes.spawn(_stan(
            "operator", "--webhook-listen", "127.0.0.1", "--webhook-port", str(processes.free_port()),
            "--liveness", f"http://127.0.0.1:{processes.free_port()}/healthz"))
        children["api"] = processes.spawn(_stan("api", "--port", str(api_port)))
        print(_banner(api_port, os.environ["KUBECONFIG"]), flush=True)
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"==> the {name} exited with {child.returncode}; stopping Stan", flush=True)
                    return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("==> stopping Stan", flush=True)
        for child in reversed(list(children.values())):
            processes.stop(child)
        if plane is not None:
            plane.stop()
