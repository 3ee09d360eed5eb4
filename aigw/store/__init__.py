"""Stores: the response cache and rate-limit counters, embedded or shared through Redis."""

from __future__ import annotations

from aigw.config import StoreSpec
from aigw.store.base import Store


def make_store(spec: StoreSpec, *, prefix: str = "aigw:") -> Store:
    """The backend named by `store.backend`; redis is imported only when chosen."""
    if spec.backend == "redis":
        from aigw.store.redis import RedisStore  # optional extra: aigw[redis]

        return RedisStore(spec.redis_url, prefix=prefix, cache_max_bytes=spec.cache_max_bytes)
    from aigw.store.memory import MemoryStore

    return MemoryStore(spec.cache_max_bytes)
