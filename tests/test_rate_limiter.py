"""The facade's token buckets as plain objects, on a clock the test sets."""

from __future__ import annotations

import pytest

from stan_api import guard


def test_a_burst_then_the_sustained_rate() -> None:
    limiter = guard.RateLimiter(rate=2.0, capacity=3)
    assert [limiter.take("key", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("key", 0.0) == pytest.approx(0.5), "one token comes back after half a second"
    assert limiter.take("key", 0.5) == 0.0
    assert limiter.take("other", 0.5) == 0.0, "each client has its own bucket"


def test_waiting_takes_nothing() -> None:
    limiter = guard.RateLimiter(rate=1.0, capacity=1)
    assert limiter.wait("address", 0.0) == 0.0
    assert limiter.wait("address", 0.0) == 0.0
    assert limiter.take("address", 0.0) == 0.0
    assert limiter.wait("address", 0.25) == pytest.approx(0.75)


def test_memory_stays_bounded_under_a_flood_of_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "MAX_TRACKED", 100)
    limiter = guard.RateLimiter(rate=0.01, capacity=2)
    for client in range(10_000):
        limiter.take(f"address-{client}", 0.0)
        limiter.take(f"address-{client}", 0.0)
        assert len(limiter) <= 100
    assert limiter.take("address-9999", 0.0) > 0, "the latest clients are still held to their debt"
