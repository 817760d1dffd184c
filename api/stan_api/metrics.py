"""Prometheus metrics and structured access logs for every request.

Routes are labelled by their template (``/api/v1/stan/tasks/{id}``), never by
the concrete path, so ids do not explode the label space; logs carry the user
and tenant of the key, never the key.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

access_log = logging.getLogger("stan_api.access")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("stan_api_requests", "Requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("stan_api_request_duration_seconds", "Request latency by route and method",
                                 ["route", "method"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        self.requests.labels(template, request.method, str(response.status_code)).inc()
        self.latency.labels(template, request.method).observe(elapsed)
        principal = getattr(request.state, "principal", None)
        access_log.info(json.dumps({
            "method": request.method, "route": template, "status": response.status_code,
            "ms": round(elapsed * 1000, 2), "user": principal.user if principal else None,
            "tenant": principal.namespace if principal else None,
        }))
        return response

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
