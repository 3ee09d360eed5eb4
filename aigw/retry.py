"""Retries, backoff and timeouts: resolved from gateway defaults, request headers, step
headers and step `config`, in that order of increasing precedence. The decision "retry,
or move on to the next step?" is a pure function of the attempt's outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aigw.config import BACKOFFS, GatewaySpec
from aigw.errors import InvalidBody, InvalidHeader

RETRY_AFTER_CAP = 5.0  # seconds: a Retry-After is honoured up to this
RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 1
    delay_ms: int = 0
    backoff: str = "constant"
    timeout_ms: int = 0  # to the first byte, every attempt; 0 = none

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        d = self.delay_ms / 1000.0
        if self.backoff == "linear":
            d *= retry
        elif self.backoff == "exponential":
            d *= 2 ** (retry - 1)
        if retry_after is not None:
            d = max(d, min(retry_after, RETRY_AFTER_CAP))
        return d


def gateway_policy(gw: GatewaySpec) -> RetryPolicy:
    """The gateway's defaults as a policy (built once per gateway at start-up)."""
    return RetryPolicy(gw.retry_max_attempts, gw.retry_delay, gw.retry_backoff,
                       gw.request_timeout)


def is_retryable(status: int | None) -> bool:
    """An attempt that ended with this status (None: no response) may be retried."""
    return status is None or status in RETRYABLE_STATUS or status >= 500


def _int_header(name: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise InvalidHeader(f"{name}: must be an integer") from None
    if not lo <= n <= hi:
        raise InvalidHeader(f"{name}: must be between {lo} and {hi}")
    return n


_HEADER_FIELDS = (
    ("cf-aig-max-attempts", "max_attempts", 1, 5),
    ("cf-aig-retry-delay", "delay_ms", 0, 5000),
    ("cf-aig-request-timeout", "timeout_ms", 0, 3_600_000),
)


def from_headers(base: RetryPolicy, get: Callable[[str], str | None]) -> RetryPolicy:
    """Apply `cf-aig-*` retry headers (`get` is a case-insensitive lookup)."""
    kw: dict[str, Any] = {}
    for header, attr, lo, hi in _HEADER_FIELDS:
        value = get(header)
        if value is not None:
            kw[attr] = _int_header(header, value, lo, hi)
    backoff = get("cf-aig-backoff")
    if backoff is not None:
        backoff = backoff.strip().lower()
        if backoff not in BACKOFFS:
            raise InvalidHeader(f"cf-aig-backoff: must be one of {', '.join(BACKOFFS)}")
        kw["backoff"] = backoff
    return replace(base, **kw) if kw else base


_CONFIG_FIELDS = (
    ("maxAttempts", "max_attempts", 1, 5),
    ("retryDelay", "delay_ms", 0, 5000),
    ("requestTimeout", "timeout_ms", 0, 3_600_000),
)


def from_step_config(base: RetryPolicy, path: str, config: Any) -> RetryPolicy:
    """Apply a universal step's `config` object."""
    if config is None:
        return base
    if not isinstance(config, Mapping):
        raise InvalidBody(f"{path}: must be an object")
    kw: dict[str, Any] = {}
    for key, attr, lo, hi in _CONFIG_FIELDS:
        if key in config:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise InvalidBody(f"{path}.{key}: must be an integer between {lo} and {hi}")
            kw[attr] = value
    if "backoff" in config:
        if config["backoff"] not in BACKOFFS:
            raise InvalidBody(f"{path}.backoff: must be one of {', '.join(BACKOFFS)}")
        kw["backoff"] = config["backoff"]
    return replace(base, **kw) if kw else base


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; dates are ignored)."""
    if not value:
        return None
    try:
        secs = float(value.strip())
    except ValueError:
        return None
    return secs if secs >= 0 else None
