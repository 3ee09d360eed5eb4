"""Gateway rate limits: one check-and-increment per request that reaches the upstream.

Called after the cache lookup, so cache hits never count. The counting itself lives in
the store (exact in memory; one Lua script in Redis).
"""

from __future__ import annotations

import math

from aigw.errors import RateLimited
from aigw.policy.gateway import GatewayPolicy
from aigw.store.base import Store


def rate_limited(retry_after: float) -> RateLimited:
    """The 429 / 2003 error with a Retry-After in whole seconds (at least 1)."""
    err = RateLimited()
    err.headers = (("retry-after", str(max(1, math.ceil(retry_after)))),)
    return err


async def enforce_rate_limit(store: Store, gp: GatewayPolicy, bucket: str) -> None:
    """Count one request against the gateway's limit; raise RateLimited when over it."""
    if not gp.limit:
        return
    decision = await store.rate_hit(bucket, gp.limit, gp.interval, gp.technique)
    if not decision.allowed:
        raise rate_limited(decision.retry_after)
