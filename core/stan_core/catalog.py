"""The names a spec may use: actions and heartbeat checks.

Validation (in the facade, the admission webhook and the operator) needs the
names, not the code behind them. The operator's registries bind each name to
its implementation, and a test holds both to the same built-in names.
"""

from __future__ import annotations

import importlib.metadata

from stan_core import config

BUILTIN_ACTIONS = ("audit_workflows", "run_heartbeat")
BUILTIN_CHECKS = ("workflows", "deployments", "credits", "models")
CHECKS_ENTRY_POINT_GROUP = "stan.checks"
"""Other packages add heartbeat checks under this entry-point group."""


def action_names(configuration: config.OperatorConfig) -> list[str]:
    return sorted({*BUILTIN_ACTIONS, *configuration.jobActions})


def check_names() -> list[str]:
    """The checks a heartbeat may name: the built-ins in their documented order, then the plugins'.
    A plugin cannot take a built-in's name, so a check's meaning never changes silently."""
    plugins = {entry_point.name for entry_point in importlib.metadata.entry_points(group=CHECKS_ENTRY_POINT_GROUP)}
    return [*BUILTIN_CHECKS, *sorted(plugins - set(BUILTIN_CHECKS))]
