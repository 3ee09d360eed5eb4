"""The models `GET /compat/models` lists, with prices in USD per million tokens, taken from
the gateway's price table (`aigw/data/prices.json` with the config's `[prices]` applied).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aigw import _json


def models_body(providers: Collection[str], prices: Any) -> bytes:
    """The OpenAI `list` of priced models of `providers` (those the compat endpoint
    serves), as JSON bytes."""
    data = []
    for owner, models in sorted(prices.providers().items()):
        if owner not in providers:
            continue
        for name, p in sorted(models.items()):
            pricing: dict[str, float] = {"input": p.input, "output": p.output}
            if p.cache_read is not None:
                pricing["cache_read"] = p.cache_read
            if p.cache_write is not None:
                pricing["cache_write"] = p.cache_write
            data.append({"id": f"{owner}/{name}", "object": "model", "created": 0,
                         "owned_by": owner, "pricing": pricing})
    return _json.dumps({"object": "list", "data": data})
