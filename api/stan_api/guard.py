"""The door of every request, an ASGI middleware: nothing behind it runs for a request it refuses.

For the API, in order: a place among the requests served at once (503 after
a wait), the client address's failed authentications, the key (401, 403),
the key's rate (429 with Retry-After); then the body, read here and never past its cap
whatever its framing (413), so a stranger can neither make the facade buffer
an upload nor make it parse one. Only then does FastAPI see the request.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import math
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stan_api import keys
from stan_core import config

API_PREFIX = "/api/v1/stan"
MAX_BODY_BYTES = 64 * 1024
PLACE_WAIT_SECONDS = 5.0
FAILURE_WINDOW_SECONDS = 60.0
MAX_TRACKED = 100_000


class TokenBucket:
    """``rate`` tokens a second up to ``capacity``; a request takes one."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, capacity: float, now: float) -> None:
        self.tokens = capacity
        self.stamp = now

    def refill(self, rate: float, capacity: float, now: float) -> None:
        self.tokens = min(capacity, self.tokens + (now - self.stamp) * rate)
        self.stamp = now


class RateLimiter:
    """One token bucket per client (a key id, an address), forgotten once full again."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        """How many clients are tracked."""
        return len(self._buckets)

    def _bucket(self, who: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(who)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_full(now)
            bucket = self._buckets[who] = TokenBucket(self.capacity, now)
        else:
            bucket.refill(self.rate, self.capacity, now)
        return bucket

    def _forget_full(self, now: float) -> None:
        """Forget the clients that are back to a full bucket, and if that is not enough (a flood of
        addresses), the longest known: a bound on memory matters more than their remaining debt."""
        for who, bucket in list(self._buckets.items()):
            bucket.refill(self.rate, self.capacity, now)
            if bucket.tokens >= self.capacity:
                del self._buckets[who]
        for who in list(itertools.islice(self._buckets, max(0, len(self._buckets) - MAX_TRACKED // 2))):
            del self._buckets[who]

    def wait(self, who: str, now: float) -> float:
        """Seconds until ``who`` may go on (0 when it may now), taking nothing."""
        bucket = self._bucket(who, now)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.rate

    def take(self, who: str, now: float) -> float:
        """Take a token if there is one; the seconds to wait when there is none."""
        waiting = self.wait(who, now)
        if waiting == 0:
            self._buckets[who].tokens -= 1
        return waiting


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """A refusal. A body the client is still sending is discarded by the server as it arrives, never
    kept; closing instead would reset the connection and lose this answer before the client reads it."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class Guard:
    def __init__(self, app: ASGIApp, limits: config.Limits) -> None:
        self.app = app
        self._places = asyncio.Semaphore(limits.maxConcurrentRequests)
        self._per_key = RateLimiter(limits.requestsPerSecondPerKey, limits.burstPerKey)
        self._failures = RateLimiter(
            limits.failedAuthenticationsPerMinute / FAILURE_WINDOW_SECONDS, limits.failedAuthenticationsPerMinute
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)  # probes, metrics and docs: no body, no key, never waiting
            return
        try:
            await asyncio.wait_for(self._places.acquire(), PLACE_WAIT_SECONDS)
        except TimeoutError:
            await _answer(send, 503, "the facade is serving as many requests as it can; try again", _retry_after(1))
            return
        try:
            if not await self._admitted(scope, send):
                return
            body = await self._body(scope, receive, send)
            if body is not None:
                await self.app(scope, _replaying(body, receive), send)
        finally:
            self._places.release()

    async def _admitted(self, scope: Scope, send: Send) -> bool:
        """Authenticate and rate-limit an API request; answer it here when it is refused."""
        now = time.monotonic()
        address = (scope.get("client") or ("unknown",))[0]
        waiting = self._failures.wait(address, now)
        if waiting:
            await _answer(send, 429, "too many failed authentications from this address", _retry_after(waiting))
            return False
        facade = scope["app"].state.facade
        wall_clock = datetime.datetime.now(datetime.UTC)
        principal = facade.keys.authenticate(_header(scope, b"x-api-key"), wall_clock)
        if principal is None:
            self._failures.take(address, now)
            await _answer(send, 401, "missing or unknown API key", {"WWW-Authenticate": "X-API-Key"})
            return False
        if keys.EXECUTE_SCOPE not in principal.scopes:
            await _answer(send, 403, f"the API key lacks the {keys.EXECUTE_SCOPE} scope")
            return False
        waiting = self._per_key.take(principal.key_id, now)
        if waiting:
            await _answer(send, 429, "too many requests for this API key", _retry_after(waiting))
            return False
        facade.uses.used(principal, wall_clock)
        scope.setdefault("state", {})["principal"] = principal
        return True

    @staticmethod
    async def _body(scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once it has passed the cap (answered 413 here)."""
        declared = _header(scope, b"content-length")
        too_large = f"the body exceeds {MAX_BODY_BYTES} bytes"
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await _answer(send, 413, too_large)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _answer(send, 413, too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then waits for what comes next (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
