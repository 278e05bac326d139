"""One rate limiter per integration, shared by every call the process makes to its provider.

Three things slow or stop calls (seeds 001 "Rate Limiting and Backpressure", 004 Task 8):

* Token buckets from the integration's `rateLimits` (requests per second, minute, hour),
  or the provider's documented defaults. A caller reserves a token and sleeps for its
  share, so concurrent callers are spaced out instead of bursting.
* Pauses the provider asks for: `Retry-After` on a 429 (`pause`), and exhausted-window
  headers read from every response (`observe`): `X-RateLimit-Remaining: 0` with
  `X-RateLimit-Reset` (or the `RateLimit-*` names), HubSpot's
  `X-HubSpot-RateLimit-Remaining` with `-Interval-Milliseconds`.
* A daily allowance: our own cap (`dailyRequestLimit`, counted per UTC day) or the
  provider's, when its headers (`X-HubSpot-RateLimit-Daily-Remaining: 0`, Salesforce's
  `Sforce-Limit-Info: api-usage=15000/15000`) or its error say it is spent. Then
  `acquire` raises `DailyLimitReached` and the sync ends `partial`, to resume from its
  cursor next time; it is not a failure.

State lives in this process only: each Functions instance keeps its own buckets, so the
configured rates are per instance. The provider's own headers and 429s are what keep a
fleet of instances honest.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from core.errors import TransientError
from core.providers.base import DailyLimitReached

PROVIDER_DAILY_RECHECK_SECONDS = 3600.0
"""How long a provider-reported daily exhaustion blocks calls when the provider does not
say when it resets (HubSpot resets at midnight in the account's time zone, Salesforce's
allowance is a rolling 24 hours): the next sync after this finds out again."""
DEFAULT_MAX_WAIT_SECONDS = 120.0
EPOCH_THRESHOLD = 1_000_000_000
"""A reset header above this is an epoch timestamp, below it a number of seconds."""


@dataclass(frozen=True)
class Timing:
    """Clocks and sleep, injectable so tests never really wait."""

    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    utcnow: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    jitter: Callable[[], float] = random.random
    """A number in [0, 1) that spreads retry delays."""


SYSTEM_TIMING = Timing()


@dataclass(frozen=True)
class RateLimitSettings:
    requests_per_second: float | None = None
    requests_per_minute: int | None = None
    requests_per_hour: int | None = None
    daily_request_limit: int | None = None
    """Our own allowance per UTC day, below the provider's when other apps share it."""


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float

    def reserve(self, now: float) -> float:
        """Take one token (possibly on credit); the seconds until it is really there."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def _buckets(settings: RateLimitSettings, now: float) -> list[_Bucket]:
    windows = (
        (settings.requests_per_second, 1.0),
        (settings.requests_per_minute, 60.0),
        (settings.requests_per_hour, 3600.0),
    )
    return [
        _Bucket(
            rate=float(limit) / seconds, capacity=float(limit), tokens=float(limit), updated=now
        )
        for limit, seconds in windows
        if limit
    ]


class RateLimiter:
    def __init__(
        self,
        name: str,
        settings: RateLimitSettings | None = None,
        *,
        timing: Timing = SYSTEM_TIMING,
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
    ) -> None:
        self.name = name
        self._timing = timing
        self._max_wait = max_wait
        self._lock = threading.Lock()
        self._settings = settings or RateLimitSettings()
        self._buckets = _buckets(self._settings, timing.monotonic())
        self._paused_until = 0.0
        self._daily_blocked_until = 0.0
        self._day = timing.utcnow().date()
        self._used_today = 0

    @property
    def settings(self) -> RateLimitSettings:
        return self._settings

    @property
    def used_today(self) -> int:
        return self._used_today

    def reconfigure(self, settings: RateLimitSettings) -> None:
        """New limits from a changed integration config; daily counts and pauses stay."""
        with self._lock:
            if settings != self._settings:
                self._settings = settings
                self._buckets = _buckets(settings, self._timing.monotonic())

    def acquire(self) -> None:
        """Wait for a slot. DailyLimitReached when the day's allowance is spent;
        TransientError (with `retry_after`) when the provider asked for a longer pause
        than is worth blocking a function for."""
        with self._lock:
            now = self._timing.monotonic()
            self._check_daily(now)
            paused = max(0.0, self._paused_until - now)
            if paused > self._max_wait:
                raise TransientError(
                    f"{self.name}: the provider asked to pause for {paused:.0f} s",
                    resource=self.name,
                    retry_after=paused,
                )
            wait = paused
            for bucket in self._buckets:
                wait = max(wait, bucket.reserve(now))
            self._used_today += 1
        if wait > 0:
            self._timing.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (a 429's Retry-After, an exhausted window)."""
        if seconds <= 0:
            return
        with self._lock:
            self._paused_until = max(self._paused_until, self._timing.monotonic() + seconds)

    def daily_limit_reached(self, retry_after: float | None = None) -> DailyLimitReached:
        """Block calls until the allowance is back (or for an hour when unknown) and return
        the error to raise."""
        seconds = retry_after if retry_after and retry_after > 0 else None
        with self._lock:
            block = seconds if seconds is not None else PROVIDER_DAILY_RECHECK_SECONDS
            self._daily_blocked_until = max(
                self._daily_blocked_until, self._timing.monotonic() + block
            )
        return self._daily_error(seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read the provider's rate-limit headers from a response."""
        lowered = {key.lower(): value for key, value in headers.items()}
        if _number(lowered.get("x-hubspot-ratelimit-daily-remaining")) == 0:
            self.daily_limit_reached()
        usage = _salesforce_usage(lowered.get("sforce-limit-info"))
        if usage is not None and usage[0] >= usage[1]:
            self.daily_limit_reached()
        hubspot_remaining = _number(lowered.get("x-hubspot-ratelimit-remaining"))
        interval_ms = _number(lowered.get("x-hubspot-ratelimit-interval-milliseconds"))
        if hubspot_remaining == 0 and interval_ms:
            self.pause(interval_ms / 1000.0)
        for prefix in ("x-ratelimit-", "ratelimit-"):
            if _number(lowered.get(prefix + "remaining")) == 0:
                reset = self._seconds_until(lowered.get(prefix + "reset"))
                if reset is not None:
                    self.pause(reset)

    # -- internals -------------------------------------------------------------------------

    def _check_daily(self, now: float) -> None:
        if self._daily_blocked_until > now:
            raise self._daily_error(self._daily_blocked_until - now)
        today = self._timing.utcnow()
        if today.date() != self._day:
            self._day = today.date()
            self._used_today = 0
        limit = self._settings.daily_request_limit
        if limit is not None and self._used_today >= limit:
            midnight = datetime.combine(today.date() + timedelta(days=1), datetime.min.time(), UTC)
            until_midnight = (midnight - today).total_seconds()
            self._daily_blocked_until = now + until_midnight
            raise self._daily_error(until_midnight, own_limit=limit)

    def _daily_error(
        self, retry_after: float | None, *, own_limit: int | None = None
    ) -> DailyLimitReached:
        which = (
            f"the configured dailyRequestLimit of {own_limit} request(s) is used up"
            if own_limit is not None
            else "the provider's daily API allowance is used up"
        )
        when = f"; calls resume in about {retry_after:.0f} s" if retry_after else ""
        return DailyLimitReached(
            f"{self.name}: {which}{when}; the sync resumes from its cursor next time",
            resource=self.name,
            retry_after=retry_after,
        )

    def _seconds_until(self, value: str | None) -> float | None:
        number = _number(value)
        if number is None:
            return None
        if number > EPOCH_THRESHOLD:
            return max(0.0, number - self._timing.utcnow().timestamp())
        return max(0.0, number)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from `now`."""
    if value is None or not value.strip():
        return None
    number = _number(value)
    if number is not None:
        return max(0.0, number)
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _salesforce_usage(value: str | None) -> tuple[int, int] | None:
    """`api-usage=25/15000` (possibly among other comma-separated entries)."""
    if not value:
        return None
    for part in value.split(","):
        name, _, usage = part.strip().partition("=")
        if name.strip().lower() == "api-usage":
            used, _, limit = usage.partition("/")
            if used.strip().isdigit() and limit.strip().isdigit() and int(limit) > 0:
                return int(used), int(limit)
    return None


class RateLimiters:
    """The process's limiters by integration, so every adapter built for one integration
    shares one budget."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limiters: dict[str, RateLimiter] = {}

    def get(self, key: str, settings: RateLimitSettings, *, timing: Timing) -> RateLimiter:
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = RateLimiter(key, settings, timing=timing)
                self._limiters[key] = limiter
                return limiter
        limiter.reconfigure(settings)
        return limiter


PROCESS_LIMITERS = RateLimiters()
