"""The console at ``/ui`` and the API docs at ``/docs``: files shipped in the package, served without a key.

Both are static: everything they show comes from ``/api/v1/stan`` through the
guard, with the key the browser holds, so they add no way past its
authentication, scopes or tenant checks. Nothing is loaded from another origin
(Swagger UI comes from the ``swagger-ui-bundle-v2`` package), so both work in an
air-gapped cluster, and each answer's Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

PACKAGE = Path(str(importlib.resources.files("stan_api")))
CONSOLE_DIR = PACKAGE / "console"
DOCS_DIR = PACKAGE / "apidocs"

_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidated by ETag: a new release is picked up at the next load
}
_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; {style}; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
CONSOLE_HEADERS = {**_COMMON, "Content-Security-Policy": _POLICY.format(style="style-src 'self'")}
DOCS_HEADERS = {**_COMMON, "Content-Security-Policy": _POLICY.format(style="style-src 'self' 'unsafe-inline'")}
"""Swagger UI sets style attributes in its markup; its scripts are still only this origin's."""


def with_headers(app: ASGIApp, headers: Mapping[str, str]) -> ASGIApp:
    """``app`` with ``headers`` added to every response it starts."""
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def headed(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *raw]}
            await send(message)

        await app(scope, receive, sending)

    return headed


def mount(app: FastAPI) -> None:
    """Serve the console at ``/ui/`` (``/ui`` redirects there: its page links its files relatively) and Swagger
    UI at ``/docs``, whose page links its files by absolute path."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(DOCS_DIR / "index.html", headers=DOCS_HEADERS)

    app.mount("/docs/swagger-ui", with_headers(StaticFiles(directory=swagger_ui_path), DOCS_HEADERS))
    app.mount("/docs", with_headers(StaticFiles(directory=DOCS_DIR, html=True), DOCS_HEADERS), name="docs")
    app.mount("/ui", with_headers(StaticFiles(directory=CONSOLE_DIR, html=True), CONSOLE_HEADERS), name="console")
