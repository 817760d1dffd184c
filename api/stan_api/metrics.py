"""Prometheus metrics and structured access logs for every request.

Routes are labelled by their template (``/api/v1/stan/tasks/{id}``), never by
the concrete path, so ids do not explode the label space; logs carry the user
and tenant of the key, never the key. A plain ASGI middleware: it sees each
request once, without the per-request task and body stream that Starlette's
``BaseHTTPMiddleware`` adds.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("stan_api.access")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stan_api_requests",
            "Requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stan_api_request_duration_seconds",
            "Request latency by route and method",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                self._record(scope, status, time.perf_counter() - started)

        return observed

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        template = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        self.requests.labels(template, method, str(status)).inc()
        self.latency.labels(template, method).observe(elapsed)
        principal = scope.get("state", {}).get("principal")
        access_log.info(
            json.dumps(
                {
                    "method": method,
                    "route": template,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "user": principal.user if principal else None,
                    "tenant": principal.namespace if principal else None,
                }
            )
        )

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
