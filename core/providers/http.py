"""The HTTP client every provider adapter calls through (httpx).

What it does for each request, so adapters only describe endpoints and payloads:

* waits for the integration's rate limiter (`ratelimit.RateLimiter`) and feeds it the
  response's rate-limit headers;
* signs the request through an `Authenticator`; a 401 makes the authenticator renew its
  credential once (OAuth refresh, or a fresh secret read) and the request is retried;
* retries network errors, timeouts, 408, 429 and 5xx with exponential backoff and jitter
  (1 s, 2 s, 4 s, ... capped), honouring `Retry-After` (seconds or an HTTP date); a 429
  pauses the whole integration through the limiter. A `Retry-After` longer than
  `RetryPolicy.max_wait` is not waited here: the TransientError carries it so the caller
  can reschedule;
* classifies what is left into the port errors (ARCHITECTURE.md failure model):
  TransientError when the retry budget is spent, AuthError for 401/403,
  `DailyLimitReached` when the provider says the day's allowance is spent (Salesforce
  `REQUEST_LIMIT_EXCEEDED` "TotalRequests", HubSpot `policyName: DAILY`), NotFoundError for
  404, PermanentError for other 4xx and for a body that is not JSON.

Messages name the provider, the method and the endpoint path and carry the provider's own
error code and message; never a header, a query string or a token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import httpx

from core.errors import AuthError, NotFoundError, PermanentError, PortError, TransientError
from core.logging import redact
from core.providers.base import DailyLimitReached
from core.providers.ratelimit import SYSTEM_TIMING, RateLimiter, Timing, retry_after_seconds

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
DETAIL_LIMIT = 300


class Authenticator(Protocol):
    def authorization(self) -> str:
        """The `Authorization` header value for the next request."""
        ...

    def renew(self, rejected: str) -> None:
        """The provider refused `rejected` (a 401): get a fresh credential, or raise
        AuthError when there is none to get."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    """Tries per request, the first included."""
    base_delay: float = 1.0
    max_delay: float = 8.0
    max_wait: float = 60.0
    """The longest Retry-After waited in process."""

    def backoff(self, attempt: int, jitter: float) -> float:
        """Delay after failed try number `attempt` (1-based): the exponential step, with
        its upper half randomised so that callers retrying together spread out."""
        step = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return step / 2 + step / 2 * jitter


class ErrorDetail(NamedTuple):
    code: str | None
    message: str | None

    def describe(self) -> str:
        parts = [part for part in (self.code, self.message) if part]
        return redact(": ".join(parts))[:DETAIL_LIMIT] if parts else ""


def error_detail(response: httpx.Response) -> ErrorDetail:
    """The provider's error code and message from the documented error bodies: Salesforce
    `[{"message", "errorCode"}]`, OData `{"error": {"code", "message"}}`, OAuth
    `{"error", "error_description"}`, HubSpot `{"status": "error", "message", "category"
    | "errorType", "policyName"}`."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text.strip()
        return ErrorDetail(None, text[:DETAIL_LIMIT] or None)
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        first = body[0]
        return ErrorDetail(_text(first.get("errorCode")), _text(first.get("message")))
    if not isinstance(body, Mapping):
        return ErrorDetail(None, None)
    error = body.get("error")
    if isinstance(error, Mapping):
        return ErrorDetail(_text(error.get("code")), _text(error.get("message")))
    if isinstance(error, str):
        return ErrorDetail(error, _text(body.get("error_description")))
    code = body.get("policyName") or body.get("errorType") or body.get("category")
    if code is None and body.get("status") not in (None, "error"):
        code = body.get("status")
    return ErrorDetail(_text(code), _text(body.get("message")))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def is_daily_limit(status: int, detail: ErrorDetail) -> bool:
    """The provider's own "your day's allowance is spent" answers."""
    if status == 403 and detail.code == "REQUEST_LIMIT_EXCEEDED":
        return "totalrequests" in (detail.message or "").replace(" ", "").lower()
    return status == 429 and (detail.code or "").upper() == "DAILY"


class ProviderHttp:
    """One provider's HTTP client for one integration (not shared between integrations:
    it holds their credential)."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        auth: Authenticator | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        timing: Timing = SYSTEM_TIMING,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        base = httpx.URL(base_url)
        if base.scheme not in ("http", "https") or not base.host:
            raise PermanentError(
                f"{provider}: base URL {base_url!r} is not an absolute http(s) URL",
                resource=provider,
            )
        self.base_url = base.copy_with(
            path=base.path if base.path.endswith("/") else base.path + "/"
        )
        self._auth = auth
        self._limiter = limiter
        self._retry = retry or RetryPolicy()
        self._timing = timing
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS)),
            headers={"Accept": "application/json", **(headers or {})},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def url(self, path_or_url: str) -> httpx.URL:
        """An absolute URL on this provider's origin. A next-page link that points at
        another origin is refused: the request would carry the integration's token there."""
        target = self.base_url.join(path_or_url)
        if (target.scheme, target.host, target.port) != (
            self.base_url.scheme,
            self.base_url.host,
            self.base_url.port,
        ):
            raise PermanentError(
                f"{self.provider}: refusing to follow {target.scheme}://{target.host} "
                f"(not the configured {self.base_url.scheme}://{self.base_url.host})",
                resource=f"{self.provider}:{target.path}",
            )
        return target

    def json(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The JSON body of a successful response; every failure as a port error."""
        response = self.send(
            method, path_or_url, params=params, json_body=json_body, headers=headers
        )
        if response.is_success:
            return self.parse_json(response)
        raise self.error_for(response)

    def send(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The response once it is neither retryable nor a first 401. Raises
        TransientError when the retry budget is spent, DailyLimitReached when the
        provider's daily allowance is, AuthError when a renewed credential is refused."""
        url = self.url(path_or_url)
        endpoint = f"{method.upper()} {url.path}"
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            if self._limiter is not None:
                self._limiter.acquire()
            request_headers = dict(headers or {})
            credential = None
            if self._auth is not None:
                credential = self._auth.authorization()
                request_headers["Authorization"] = credential
            try:
                response = self._client.request(
                    method, url, params=params, data=data, json=json_body, headers=request_headers
                )
            except httpx.TransportError as exc:
                failure = TransientError(
                    f"{self.provider}: {endpoint} failed: {type(exc).__name__}: {redact(str(exc))}",
                    resource=f"{self.provider}:{url.path}",
                )
                delay = self._retry.backoff(attempt, self._timing.jitter())
            else:
                if self._limiter is not None:
                    self._limiter.observe(response.headers)
                status = response.status_code
                if status == 401 and credential is not None and self._auth is not None:
                    if renewed:
                        raise self.error_for(response)
                    renewed = True
                    attempt -= 1
                    log.info(
                        "%s: %s answered 401; renewing the credential", self.provider, endpoint
                    )
                    self._auth.renew(credential)
                    continue
                daily = self._daily_limit(response)
                if daily is not None:
                    raise daily
                if status not in RETRYABLE_STATUSES:
                    return response
                retry_after = retry_after_seconds(
                    response.headers.get("Retry-After"), self._timing.utcnow()
                )
                detail = error_detail(response).describe()
                failure = TransientError(
                    f"{self.provider}: {endpoint} answered {status}"
                    + (f" ({detail})" if detail else ""),
                    resource=f"{self.provider}:{url.path}",
                    retry_after=retry_after,
                )
                if retry_after is not None and retry_after > self._retry.max_wait:
                    if self._limiter is not None:
                        self._limiter.pause(retry_after)
                    raise failure
                delay = (
                    retry_after
                    if retry_after is not None
                    else self._retry.backoff(attempt, self._timing.jitter())
                )
                if status == 429 and self._limiter is not None:
                    self._limiter.pause(delay)
                    delay = 0.0
            if attempt >= self._retry.max_attempts:
                raise TransientError(
                    f"{failure} (gave up after {attempt} attempts)",
                    resource=failure.resource,
                    retry_after=failure.retry_after,
                ) from failure
            log.info(
                "%s: %s attempt %d failed; retrying",
                self.provider,
                endpoint,
                attempt,
                extra={"delaySeconds": round(delay, 3)},
            )
            if delay > 0:
                self._timing.sleep(delay)

    def parse_json(self, response: httpx.Response) -> Any:
        """The body as JSON; PermanentError naming the provider and endpoint when it is not."""
        try:
            return json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = (
                f" at line {exc.lineno} column {exc.colno}"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else exc.reason
            raise PermanentError(
                f"{self.provider}: {response.request.method} {response.request.url.path} "
                f"returned malformed JSON ({reason}{where})",
                resource=f"{self.provider}:{response.request.url.path}",
            ) from None

    def error_for(self, response: httpx.Response) -> PortError:
        """The port error for a final non-success response."""
        status = response.status_code
        path = response.request.url.path
        endpoint = f"{response.request.method} {path}"
        resource = f"{self.provider}:{path}"
        detail = error_detail(response).describe()
        said = f" ({detail})" if detail else ""
        if status == 401:
            return AuthError(
                f"{self.provider}: {endpoint} refused the credentials (401){said}; "
                "reconnect the integration",
                resource=resource,
            )
        if status == 403:
            return AuthError(
                f"{self.provider}: {endpoint} is not allowed for this connection (403){said}",
                resource=resource,
            )
        if status == 404:
            return NotFoundError(
                f"{self.provider}: {endpoint} was not found (404){said}", resource=resource
            )
        if status in RETRYABLE_STATUSES:
            return TransientError(
                f"{self.provider}: {endpoint} answered {status}{said}", resource=resource
            )
        return PermanentError(
            f"{self.provider}: {endpoint} answered {status}{said}", resource=resource
        )

    def _daily_limit(self, response: httpx.Response) -> DailyLimitReached | None:
        if response.status_code not in (403, 429):
            return None
        detail = error_detail(response)
        if not is_daily_limit(response.status_code, detail):
            return None
        retry_after = retry_after_seconds(
            response.headers.get("Retry-After"), self._timing.utcnow()
        )
        if self._limiter is not None:
            return self._limiter.daily_limit_reached(retry_after)
        return DailyLimitReached(
            f"{self.provider}: the daily API allowance is used up ({detail.describe()}); "
            "the sync resumes from its cursor next time",
            resource=self.provider,
            retry_after=retry_after,
        )
