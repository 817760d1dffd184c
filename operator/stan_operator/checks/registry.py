"""The code behind each check name: the built-ins and those registered under ``catalog.CHECKS_ENTRY_POINT_GROUP``."""

from __future__ import annotations

import functools
import importlib.metadata
import logging

from stan_core import catalog
from stan_operator.checks import Check, builtin

log = logging.getLogger(__name__)


@functools.cache
def checks() -> dict[str, Check]:
    """Built-ins first; a plugin cannot replace one, so a check's meaning never changes silently."""
    found: dict[str, Check] = dict(builtin.BUILTIN)
    for entry_point in importlib.metadata.entry_points(group=catalog.CHECKS_ENTRY_POINT_GROUP):
        if entry_point.name in found:
            log.warning("check %r from %s ignored: the name is taken", entry_point.name, entry_point.value)
            continue
        try:
            found[entry_point.name] = entry_point.load()
        except Exception:  # a broken plugin must not take the operator down
            log.exception("check %r from %s could not be loaded", entry_point.name, entry_point.value)
    return found
