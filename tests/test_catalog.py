"""The names a spec may use (stan_core.catalog) are the names the operator has code for."""

from __future__ import annotations

from stan_core import catalog, config
from stan_operator.actions import builtin as builtin_actions
from stan_operator.actions import registry as action_registry
from stan_operator.actions.jobs import JobTracker
from stan_operator.checks import builtin as builtin_checks
from stan_operator.checks import registry as check_registry


def test_the_built_in_names_are_the_operators_built_ins() -> None:
    assert set(catalog.BUILTIN_ACTIONS) == set(builtin_actions.BUILTIN)
    assert list(catalog.BUILTIN_CHECKS) == list(builtin_checks.BUILTIN), "the documented order is the catalog's"


def test_every_name_a_spec_may_use_has_code_behind_it() -> None:
    configuration = config.OperatorConfig.model_validate({"jobActions": {"render_report": {"image": "report:1"}}})
    actions = action_registry.build(configuration, JobTracker())
    assert catalog.action_names(configuration) == sorted(actions)
    assert set(catalog.check_names()) == set(check_registry.checks())
