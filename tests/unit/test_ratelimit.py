"""The per-integration rate limiter: token buckets, provider pauses and daily allowances,
on a fake clock (nothing really sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import TransientError
from core.providers.base import DailyLimitReached
from core.providers.ratelimit import (
    PROVIDER_DAILY_RECHECK_SECONDS,
    RateLimiter,
    RateLimiters,
    RateLimitSettings,
    retry_after_seconds,
)
from tests.unit.provider_support import FakeClock


def _limiter(clock: FakeClock, **settings: float | int | None) -> RateLimiter:
    return RateLimiter(
        "hubspot integration t1/i1", RateLimitSettings(**settings), timing=clock.timing()
    )  # type: ignore[arg-type]


def test_requests_per_second_spaces_calls_after_the_burst() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, requests_per_second=2)
    for _ in range(5):
        limiter.acquire()
    assert clock.sleeps == pytest.approx([0.5, 0.5, 0.5])
    assert clock.elapsed == pytest.approx(1.5)


def test_the_tightest_window_wins() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, requests_per_second=100, requests_per_minute=2)
    for _ in range(3):
        limiter.acquire()
    assert clock.sleeps == pytest.approx([30.0])


def test_no_limits_means_no_waiting() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    for _ in range(50):
        limiter.acquire()
    assert clock.sleeps == []
    assert limiter.used_today == 50


def test_a_pause_holds_the_next_call() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.pause(7)
    limiter.acquire()
    assert clock.sleeps == [7]
    limiter.acquire()
    assert clock.sleeps == [7]


def test_a_pause_longer_than_worth_blocking_is_a_transient_error_with_retry_after() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.pause(600)
    with pytest.raises(TransientError) as caught:
        limiter.acquire()
    assert not isinstance(caught.value, DailyLimitReached)
    assert caught.value.retry_after == pytest.approx(600)
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"}, 12.0),
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "3"}, 3.0),
        # An epoch reset 20 s after the fake clock's start (2024-05-01T12:00:00Z).
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1714564820"}, 20.0),
        (
            {
                "X-HubSpot-RateLimit-Remaining": "0",
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            },
            10.0,
        ),
    ],
)
def test_exhausted_window_headers_pause_until_the_reset(
    headers: dict[str, str], pause: float
) -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.observe(headers)
    limiter.acquire()
    assert clock.sleeps == pytest.approx([pause])


def test_remaining_requests_do_not_pause() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.observe({"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "30"})
    limiter.acquire()
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "headers",
    [
        {"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "0"},
        {"Sforce-Limit-Info": "api-usage=15000/15000"},
    ],
)
def test_provider_daily_headers_stop_calls_until_rechecked(headers: dict[str, str]) -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.observe(headers)
    with pytest.raises(DailyLimitReached) as caught:
        limiter.acquire()
    assert caught.value.retry_after == pytest.approx(PROVIDER_DAILY_RECHECK_SECONDS)
    assert "resumes from its cursor" in str(caught.value)
    clock.advance(PROVIDER_DAILY_RECHECK_SECONDS + 1)
    limiter.acquire()


def test_salesforce_usage_below_the_limit_is_fine() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    limiter.observe({"Sforce-Limit-Info": "api-usage=14999/15000"})
    limiter.acquire()


def test_own_daily_cap_ends_at_utc_midnight() -> None:
    clock = FakeClock(datetime(2024, 5, 1, 23, 0, tzinfo=UTC))
    limiter = _limiter(clock, daily_request_limit=3)
    for _ in range(3):
        limiter.acquire()
    with pytest.raises(DailyLimitReached) as caught:
        limiter.acquire()
    assert "dailyRequestLimit of 3" in str(caught.value)
    assert caught.value.retry_after == pytest.approx(3600)
    clock.advance(3601)
    limiter.acquire()
    assert limiter.used_today == 1


def test_daily_limit_reached_reports_the_known_reset() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    error = limiter.daily_limit_reached(90)
    assert isinstance(error, DailyLimitReached)
    assert error.retry_after == 90
    with pytest.raises(DailyLimitReached):
        limiter.acquire()
    clock.advance(91)
    limiter.acquire()


def test_registry_shares_one_limiter_per_integration_and_applies_new_limits() -> None:
    clock = FakeClock()
    limiters = RateLimiters()
    first = limiters.get("k", RateLimitSettings(requests_per_second=1), timing=clock.timing())
    second = limiters.get("k", RateLimitSettings(requests_per_second=5), timing=clock.timing())
    assert first is second
    assert second.settings.requests_per_second == 5
    assert limiters.get("other", RateLimitSettings(), timing=clock.timing()) is not first


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_http_date(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) == seconds
