"""Task ids and object names map one to one."""

from __future__ import annotations

import pytest

from stan_core import ids


@pytest.mark.parametrize("name", ["abc001", "nightly-report", "a.b-c", "x"])
def test_ids_round_trip(name: str) -> None:
    identifier = ids.task_id(name)
    assert identifier.startswith("task_")
    assert ids.object_name(identifier) == name


@pytest.mark.parametrize("identifier", ["abc", "task_", "task_-x", "task_X", "task_a/b", "task_a_", "TASK_a"])
def test_ids_that_name_no_object(identifier: str) -> None:
    assert ids.object_name(identifier) is None


def test_new_names_are_valid_and_distinct() -> None:
    names = {ids.new_object_name() for _ in range(1000)}
    assert len(names) == 1000
    assert all(ids.object_name(ids.task_id(name)) == name for name in names)
