"""Watch-backed read caches, so that GET and list never call the API server per request.

Each cache lists once, then follows a watch from the list's resourceVersion;
an expired watch (410 Gone) re-lists, a broken connection retries with
backoff. Writes made through this facade are put into the cache at once
(``remember``), so a GET right after a POST or PUT returns the new state; an
older watch event never overwrites a newer object (resourceVersions compare
as integers on etcd-backed API servers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from stan_core import kube
from stan_core.index import Key, NamespacedIndex

WATCH_SECONDS = 300
RETRY_SECONDS = (0.5, 1, 2, 5)
STALE_AFTER_SECONDS = 5.0
log = logging.getLogger(__name__)


def _version(body: dict) -> int:
    return int(body["metadata"].get("resourceVersion") or 0)


def key_of(body: dict) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


class ObjectCache:
    """The objects of one kind (in all namespaces, or one), as the API server last told."""

    def __init__(
        self, objects: kube.Objects, namespace: str | None = None, render: Callable[[dict], bytes] | None = None
    ) -> None:
        """The objects in ``namespace``, or in all; ``render`` turns an object into the JSON a list answer
        shows of it, once per change."""
        self.name = objects.resource.plural
        self._list_call, self._list_arguments = objects.listing(namespace)
        self._objects: NamespacedIndex[dict] = NamespacedIndex()
        self._render = render
        self._rendered: NamespacedIndex[tuple[str, str, bytes]] = NamespacedIndex()
        self._changed = asyncio.Condition()
        self.synced = asyncio.Event()
        self._broken_since: float | None = None
        self._listeners: list[Callable[[dict | None, Key], None]] = []

    # Reading.

    def get(self, namespace: str, name: str) -> dict | None:
        return self._objects.get((namespace, name))

    def in_namespace(self, namespace: str) -> list[dict]:
        return list(self._objects.in_namespace(namespace).values())

    def count(self, namespace: str) -> int:
        return len(self._objects.in_namespace(namespace))

    def rendered(self, namespace: str) -> bytes:
        """The namespace's rendered objects as a JSON array, oldest first (then by name)."""
        return b"[" + b",".join(json for *_, json in sorted(self._rendered.in_namespace(namespace).values())) + b"]"

    @property
    def available(self) -> bool:
        """Synced, and not cut off from the API server for long."""
        broken = self._broken_since is not None and time.monotonic() - self._broken_since > STALE_AFTER_SECONDS
        return self.synced.is_set() and not broken

    def listen(self, listener: Callable[[dict | None, Key], None]) -> None:
        """Call ``listener(body or None when deleted, key)`` on every change."""
        self._listeners.append(listener)

    async def wait_for(
        self, namespace: str, name: str, predicate: Callable[[dict | None], bool], timeout: float
    ) -> dict | None:
        """The object once ``predicate`` holds for it; raises TimeoutError after ``timeout``."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self.get(namespace, name))), timeout)
        return self.get(namespace, name)

    # Writing.

    async def remember(self, body: dict) -> None:
        """Take in an object this facade just wrote, unless the cache already has it newer."""
        await self._apply(body)

    async def forget(self, namespace: str, name: str) -> None:
        await self._delete((namespace, name))

    async def _apply(self, body: dict) -> None:
        key = key_of(body)
        current = self._objects.get(key)
        if current is not None and _version(current) >= _version(body):
            return
        self._objects.put(key, body)
        if self._render is not None:
            self._rendered.put(key, (body["metadata"].get("creationTimestamp", ""), key[1], self._render(body)))
        await self._notify(body, key)

    async def _delete(self, key: Key) -> None:
        if self._objects.pop(key) is not None:
            self._rendered.pop(key)
            await self._notify(None, key)

    async def _notify(self, body: dict | None, key: Key) -> None:
        for listener in self._listeners:
            listener(body, key)
        async with self._changed:
            self._changed.notify_all()

    # Following the API server.

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                version = await self._relist()
                attempt = 0
                while True:
                    version = await self._watch(version)
            except ApiException as error:
                if error.status == 410:
                    log.info("%s: watch expired; listing again", self.name)
                    continue
                self._broken(error)
            except (TimeoutError, OSError, client.exceptions.ApiValueError) as error:
                self._broken(error)
            except Exception as error:  # aiohttp and the client raise a zoo of types on a lost connection
                self._broken(error)
            await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            attempt += 1

    def _broken(self, error: BaseException) -> None:
        if self._broken_since is None:
            self._broken_since = time.monotonic()
            log.warning("%s: lost the API server (%s: %s); retrying", self.name, type(error).__name__, error)

    async def _relist(self) -> str:
        body = await kube.raw(self._list_call, **self._list_arguments)
        fresh = {key_of(item): item for item in body["items"]}
        for key in set(self._objects.keys()) - set(fresh):
            await self._delete(key)
        for item in fresh.values():
            item.setdefault("metadata", {}).setdefault("namespace", "")
            await self._apply(item)
        self._broken_since = None
        self.synced.set()
        return body["metadata"]["resourceVersion"]

    async def _watch(self, version: str) -> str:
        """Follow one watch request; return the resourceVersion to resume from."""
        async with watch.Watch(return_type="object") as stream:
            async for event in stream.stream(
                self._list_call,
                **self._list_arguments,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
            ):
                body = event["raw_object"]
                version = body["metadata"].get("resourceVersion", version)
                if event["type"] == "BOOKMARK":
                    continue
                if event["type"] == "DELETED":
                    await self._delete(key_of(body))
                else:
                    await self._apply(body)
        return version
