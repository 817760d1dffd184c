"""API keys: long random secrets with a recognisable prefix, stored only as a hash.

A key reads ``stan_<key id>_<secret>``. The key id is public and names the
Secret that holds the key's SHA-256 hash, its user, tenant namespace and
scopes; the secret part is compared in constant time against the hash. The
Secrets live in Stan's own namespace, labelled so the facade can watch them.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import base64
import hmac
import re
import secrets
import string

from stan_operator import models

PREFIX = "stan_"
LABEL = "stan.dev/api-key"
SECRET_PREFIX = "stan-apikey-"
EXECUTE_SCOPE = "stan:execute"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY = re.compile(r"^stan_([a-z0-9]{10})_([A-Za-z0-9_-]{43})$")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a key speaks for."""

    key_id: str
    user: str
    namespace: str
    scopes: frozenset[str]
    created_at: str


@dataclasses.dataclass(frozen=True)
class StoredKey:
    principal: Principal
    digest: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str, str]:
    """A fresh key: (the key to hand out once, its id, the hash to store)."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}{key_id}_{secret}", key_id, _digest(secret)


def secret_manifest(key_id: str, digest: str, user: str, namespace: str, scopes: list[str]) -> dict:
    now = models.format_timestamp(datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0))
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": SECRET_PREFIX + key_id, "labels": {LABEL: "true"}},
        "stringData": {"keyId": key_id, "sha256": digest, "user": user, "namespace": namespace,
                       "scopes": " ".join(scopes), "createdAt": now},
    }


def parse_secret(secret: dict) -> StoredKey | None:
    """The key a Secret stores, or None when it is not a well-formed key Secret."""
    data = {name: base64.b64decode(value).decode() for name, value in (secret.get("data") or {}).items()}
    if not {"keyId", "sha256", "user", "namespace", "scopes"} <= data.keys():
        return None
    principal = Principal(key_id=data["keyId"], user=data["user"], namespace=data["namespace"],
                          scopes=frozenset(data["scopes"].split()), created_at=data.get("createdAt", ""))
    return StoredKey(principal=principal, digest=data["sha256"])


def split(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _KEY.match(key)
    return (match.group(1), match.group(2)) if match else None


def matches(stored: StoredKey, secret: str) -> bool:
    return hmac.compare_digest(stored.digest, _digest(secret))


def tenant_namespace(user: str) -> str:
    """The namespace a user's tenant gets by default: ``stan-`` and the user, as a DNS label."""
    label = re.sub(r"[^a-z0-9-]+", "-", user.lower()).strip("-")
    return ("stan-" + label)[:63].rstrip("-")
