"""Stan's smoke test of an installed chart: what a platform team tries first, on any cluster.

One program for both places the chart is installed for real, so that the one
run everywhere keeps the other honest: ``hack/kind-e2e.sh`` on kind (machines
with Docker) and ``tests/test_chart_install.py`` on the local cluster's node.
Both install with ``hack/smoke-values.yaml`` and then run, with the cluster's
kubeconfig in ``KUBECONFIG``::

    python hack/smoke.py --namespace stan-system --api-service stan-api

It checks, in order, and stops at the first failure (exit status 1):

1. the facade answers ``/readyz`` through ``kubectl port-forward`` of its Service;
2. a key issued as an admin would (``stan apikey create``, with the
   kubeconfig's own credentials) is accepted, and a wrong one refused;
3. the admission webhook refuses an invalid StanTask applied with kubectl: the
   API server calls it over the cluster network and the chart's TLS (with the
   webhook unreachable, failurePolicy Ignore would let the task in);
4. a task created through the REST API fires;
5. an on-demand heartbeat run answers with every check of the tenant's heartbeat, all healthy;
6. the task is deleted.

It needs Stan installed in the running Python (``make install``) and kubectl;
the facade is reached over plain HTTP, as the chart serves it by default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

API = "/api/v1/stan"
TASK_SCHEDULE = "*/2 * * * * *"
"""Every two seconds: the values file allows seconds in schedules, so the task fires at once."""
WEBHOOK_REFUSAL = 'admission webhook "stantask.stan.dev" denied the request'
Answer = TypeVar("Answer")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""The facade is on loopback, through the port-forward: never through a proxy of the environment."""


class Failed(Exception):
    """A check failed; its message says which and what was seen."""


def say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def eventually(probe: Callable[[], Answer | None], timeout: float, what: str) -> Answer:
    """``probe()``'s first answer that is not None, asked until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = probe()
        if answer is not None:
            return answer
        time.sleep(0.5)
    raise Failed(f"{what}: not within {timeout:.0f}s")


class Facade:
    """The REST API at ``url``, called with one API key."""

    def __init__(self, url: str, key: str = "") -> None:
        self.url = url
        self.key = key

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        """The status and the JSON answer (None when there is none) of one request."""
        headers = {"X-API-Key": self.key, "Content-Type": "application/json"}
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers=headers,
            data=json.dumps(body).encode() if body is not None else None,
        )
        try:
            with _OPENER.open(request, timeout=30) as response:
                status, content = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, content = error.code, error.read()
        return status, json.loads(content) if content else None

    def expect(self, method: str, path: str, wanted: int, body: dict | None = None) -> Any:
        status, answer = self.call(method, path, body)
        if status != wanted:
            raise Failed(f"{method} {path}: {status}, not {wanted}: {answer}")
        return answer

    def answering(self, path: str) -> bool | None:
        """True once ``path`` answers 200; None while it does not or cannot (to ``eventually``)."""
        with contextlib.suppress(OSError):
            if self.call("GET", path)[0] == 200:
                return True
        return None


@contextlib.contextmanager
def port_forward(kubectl: str, namespace: str, service: str) -> Iterator[str]:
    """``kubectl port-forward`` of the Service's first port to a free local port; yields its URL."""
    port = run([kubectl, "get", "service", service, "-n", namespace, "-o", "jsonpath={.spec.ports[0].port}"])
    with subprocess.Popen(
        [kubectl, "port-forward", "-n", namespace, f"service/{service}", f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as forward:
        try:
            assert forward.stdout is not None
            said = []
            for line in forward.stdout:  # warnings may come first
                if match := re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line):
                    break
                said.append(line)
            else:
                raise Failed(f"kubectl port-forward service/{service} ended: {''.join(said)}")
            # It goes on printing a line per connection: read them, so that it never blocks on a full pipe.
            threading.Thread(target=forward.stdout.read, daemon=True).start()
            yield f"http://127.0.0.1:{match.group(1)}"
        finally:
            forward.terminate()


def run(command: list[str], stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise Failed(f"{' '.join(command[:4])}... failed: {done.stderr.strip()}")
    return done.stdout.strip()


def issue_key(namespace: str, user: str) -> str:
    """``stan apikey create`` as an admin runs it; the key is the last line it prints."""
    created = run(
        [sys.executable, "-m", "stan_cli", "apikey", "create", "--user", user, "--scopes", "stan:execute"],
        env={**os.environ, "STAN_NAMESPACE": namespace},
    )
    return created.splitlines()[-1]


def check_webhook_refuses(kubectl: str, tenant: str) -> None:
    invalid = {
        "apiVersion": "stan.dev/v1alpha1",
        "kind": "StanTask",
        "metadata": {"name": "smoke-refused", "namespace": tenant},
        "spec": {"name": "Refused", "action": "audit_workflows", "schedule": "61 * * * *", "modelId": "model_smoke"},
    }
    applied = subprocess.run([kubectl, "apply", "-f", "-"], input=json.dumps(invalid), capture_output=True, text=True)
    if applied.returncode == 0:
        subprocess.run([kubectl, "delete", "stantask", "smoke-refused", "-n", tenant], capture_output=True)
        raise Failed("kubectl apply of an invalid StanTask was accepted: the webhook was not reached")
    if WEBHOOK_REFUSAL not in applied.stderr:
        raise Failed(f"kubectl apply of an invalid StanTask was refused, but not by the webhook: {applied.stderr}")
    say(f"the webhook refused it: {applied.stderr.strip()}")


def smoke(namespace: str, api_service: str, user: str, kubectl: str) -> None:
    with port_forward(kubectl, namespace, api_service) as url:
        say(f"the facade through kubectl port-forward at {url}")
        eventually(lambda: Facade(url).answering("/readyz"), 60, "the facade ready")

        say(f"an API key for {user}, issued with the kubeconfig's credentials")
        facade = Facade(url, issue_key(namespace, user))
        tenant = f"stan-{user}"
        eventually(lambda: facade.answering(f"{API}/tasks"), 30, "the facade accepting the new key")
        Facade(url, "stan_wrong_key").expect("GET", f"{API}/tasks", 401)

        say(f"kubectl apply of an invalid StanTask in {tenant}")
        check_webhook_refuses(kubectl, tenant)

        say(f"a task on {TASK_SCHEDULE!r} through the REST API")
        task = facade.expect(
            "POST",
            f"{API}/tasks",
            201,
            {"name": "smoke", "schedule": TASK_SCHEDULE, "action": "audit_workflows", "modelId": "model_smoke"},
        )
        path = f"{API}/tasks/{task['id']}"
        fired = eventually(lambda: facade.expect("GET", path, 200)["lastRunAt"], 60, f"task {task['id']} firing")
        say(f"task {task['id']} ran at {fired}")

        say("an on-demand heartbeat run")
        checks = facade.expect("GET", f"{API}/heartbeat", 200)["checks"]
        heartbeat = facade.expect("POST", f"{API}/heartbeat/run", 200)
        if sorted(result["check"] for result in heartbeat["results"]) != sorted(checks) or not heartbeat["healthy"]:
            raise Failed(f"the heartbeat run answered {heartbeat}, expected the checks {checks}, all healthy")

        facade.expect("DELETE", path, 204)
        say(f"task {task['id']} deleted")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", required=True, help="the release's namespace (Stan's own: keys, Lease)")
    parser.add_argument("--api-service", required=True, help="the facade's Service, e.g. stan-api")
    parser.add_argument("--user", default="smoke", help="the API key's user; the tenant is stan-USER")
    parser.add_argument("--kubectl", default="kubectl")
    arguments = parser.parse_args()
    try:
        smoke(arguments.namespace, arguments.api_service, arguments.user, arguments.kubectl)
    except (Failed, OSError) as failure:  # OSError: the facade or the port-forward went away
        print(f"FAIL: {failure}", file=sys.stderr, flush=True)
        return 1
    say("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
