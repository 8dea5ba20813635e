"""Backoff maths: a pure function, checked with an injected `rand` instead of sleeping."""

from __future__ import annotations

import pytest

from tasks.backoff import backoff_delay


def fixed(value: float):
    return lambda: value


@pytest.mark.parametrize("retry_count, expected", [(0, 2.0), (1, 4.0), (2, 8.0), (5, 64.0)])
def test_grows_exponentially_without_jitter_at_the_midpoint(retry_count, expected):
    # rand 0.5 puts the jitter factor at exactly 1.0
    assert backoff_delay(retry_count, base=2.0, cap=1e9, rand=fixed(0.5)) == pytest.approx(
        expected
    )


@pytest.mark.parametrize("retry_count", [0, 1, 3, 7])
def test_jitter_stays_within_25_percent(retry_count):
    nominal = 1.5 * 2**retry_count
    low = backoff_delay(retry_count, base=1.5, cap=1e9, rand=fixed(0.0))
    high = backoff_delay(retry_count, base=1.5, cap=1e9, rand=fixed(0.999999))
    assert low == pytest.approx(nominal * 0.75)
    assert high == pytest.approx(nominal * 1.25, rel=1e-5)
    assert high < nominal * 1.25
    for r in (0.1, 0.3, 0.7, 0.9):
        assert nominal * 0.75 <= backoff_delay(retry_count, base=1.5, cap=1e9,
                                               rand=fixed(r)) < nominal * 1.25


def test_jitter_uses_rand_so_delays_differ():
    delays = {backoff_delay(3, base=1.0, cap=100, rand=fixed(r)) for r in (0.0, 0.25, 0.5, 0.75)}
    assert len(delays) == 4


def test_the_default_rand_stays_in_bounds():
    for _ in range(200):
        assert 6.0 <= backoff_delay(3, base=1.0, cap=100) < 10.0


def test_cap_bounds_the_nominal_delay():
    # 2**20 seconds nominal, capped at 60: jitter applies around the cap (design: min(...) ±25%)
    assert backoff_delay(20, base=1.0, cap=60.0, rand=fixed(0.5)) == pytest.approx(60.0)
    assert backoff_delay(20, base=1.0, cap=60.0, rand=fixed(0.0)) == pytest.approx(45.0)
    assert backoff_delay(20, base=1.0, cap=60.0, rand=fixed(0.999999)) < 75.0


def test_huge_retry_counts_do_not_overflow():
    assert backoff_delay(10_000, base=1.0, cap=3600.0, rand=fixed(0.5)) == pytest.approx(3600.0)


def test_zero_base_means_no_delay():
    assert backoff_delay(4, base=0.0, cap=3600.0, rand=fixed(0.9)) == 0.0


def test_custom_jitter_width():
    assert backoff_delay(0, base=10.0, cap=100.0, jitter=0.0, rand=fixed(0.9)) == 10.0
    assert backoff_delay(0, base=10.0, cap=100.0, jitter=0.5, rand=fixed(0.0)) == 5.0


def test_negative_retry_count_is_an_error():
    with pytest.raises(ValueError, match="retry_count must be >= 0"):
        backoff_delay(-1, base=1.0, cap=10.0)
