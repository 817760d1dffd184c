"""The facade's application: routers, health, metrics, and one mapping from domain errors to HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from stan_api import guard, metrics, schemas
from stan_api.facade import Conflict, Facade, Invalid, NotFound, QuotaExceeded, TimedOut, Unavailable
from stan_api.routes import console, heartbeat, overview, tasks
from stan_core import config, validation

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.Error, "description": "Malformed request"},
    401: {"model": schemas.Error, "description": "Missing or unknown X-API-Key"},
    403: {
        "model": schemas.Error,
        "description": "The key lacks the stan:execute scope, or the tenant is at its task quota",
    },
    413: {"model": schemas.Error, "description": "The body is larger than 64 KiB"},
    422: {"model": schemas.Error, "description": "Invalid input: the field and the reason"},
    429: {
        "model": schemas.Error,
        "description": "Too many requests for this key, or too many failed "
        "authentications from this address; see Retry-After",
    },
    503: {"model": schemas.Error, "description": "The cluster cannot be reached, or the facade is at capacity"},
}


def _location(field: str) -> list[str | int]:
    """A field path as FastAPI's own 422s write it: list indexes as numbers (``notify.0.url``)."""
    return [int(part) if part.isdigit() else part for part in field.split(".")]


def _error(code: int, detail: object) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code)


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.facade = await Facade.start()
        yield
        await app.state.facade.stop()

    app = FastAPI(
        title="Stan Tasks & Heartbeat API",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # served from the package's assets by console.mount
        description="Scheduled tasks and the heartbeat of your Stan tenant. Every /api/v1/stan "
        "endpoint needs an X-API-Key with the stan:execute scope.",
    )
    app.add_middleware(guard.Guard, limits=config.load().limits)
    observed = metrics.Metrics()
    app.add_middleware(observed.middleware)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound) -> JSONResponse:
        return _error(status.HTTP_404_NOT_FOUND, "task not found")

    @app.exception_handler(Invalid)
    async def invalid(request: Request, error: Invalid) -> JSONResponse:
        return _error(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", *_location(e.field)], "msg": e.reason, "type": "value_error"} for e in error.errors],
        )

    @app.exception_handler(QuotaExceeded)
    async def quota_exceeded(request: Request, error: QuotaExceeded) -> JSONResponse:
        return _error(status.HTTP_403_FORBIDDEN, str(error))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, error: Conflict) -> JSONResponse:
        return _error(status.HTTP_409_CONFLICT, str(error))

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> JSONResponse:
        return _error(status.HTTP_503_SERVICE_UNAVAILABLE, str(error))

    @app.exception_handler(TimedOut)
    async def timed_out(request: Request, error: TimedOut) -> JSONResponse:
        return _error(status.HTTP_504_GATEWAY_TIMEOUT, str(error))

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, error: RecursionError) -> JSONResponse:
        return _error(status.HTTP_400_BAD_REQUEST, "the body is nested too deeply")

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(e["loc"]), "msg": e["msg"].removeprefix(validation.PYDANTIC_VALUE_ERROR), "type": e["type"]}
            for e in error.errors()
        ]
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)

    for router in (tasks.router, heartbeat.router, overview.router):
        app.include_router(router, responses=ERRORS)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        ready = request.app.state.facade.ready
        return JSONResponse(
            {"status": "ready" if ready else "not ready"},
            status_code=status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> object:
        return observed.exposition()

    console.mount(app)
    return app
