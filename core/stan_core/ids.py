"""The REST API's task ids and the StanTask object names behind them.

Kubernetes names cannot hold ``_``, and the contract's ids look like
``task_abc001``. The mapping is a bijection within a namespace:
``task_`` + the object name with ``-`` written as ``_``. So a task applied
with kubectl as ``nightly-report`` has the id ``task_nightly_report``, and the
facade names the tasks it creates with random lowercase letters and digits.
An id is stable for the object's lifetime; a task deleted and created again
under the same name gets the same id back.
"""

from __future__ import annotations

import re
import secrets
import string

PREFIX = "task_"
_ID = re.compile(r"^task_[a-z0-9]([a-z0-9_.]{0,251}[a-z0-9])?$")
_ALPHABET = string.ascii_lowercase + string.digits


def task_id(name: str) -> str:
    return PREFIX + name.replace("-", "_")


def object_name(identifier: str) -> str | None:
    """The StanTask name behind an id, or None when the id cannot name one."""
    if not _ID.match(identifier):
        return None
    return identifier[len(PREFIX) :].replace("_", "-")


def new_object_name() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(12))
