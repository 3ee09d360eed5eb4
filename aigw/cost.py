"""Cost of a reply: the bundled, dated price table, config overrides, `cf-aig-custom-cost`.

Prices are USD per 1M tokens. `Usage.tokens_in` includes cached input (see aigw.usage), so
cached tokens are subtracted from the input count and priced at their own rate: nothing is
counted twice whether or not the provider counts cache tokens as input (reference 6.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aigw import _json
from aigw.errors import ConfigError, InvalidHeader
from aigw.usage import Usage

__all__ = ["Price", "PriceTable", "CustomCost", "load_bundled", "parse_prices",
           "parse_custom_cost", "compute_cost"]

_PER = 1_000_000.0
_FIELDS = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens; a missing cache rate is the input rate."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


class PriceTable:
    """provider -> model -> Price, with a prefix fallback for dated model names."""

    __slots__ = ("updated", "_table", "_by_len", "_memo")

    def __init__(self, table: dict[str, dict[str, Price]], updated: str = "") -> None:
        self.updated = updated
        self._table = table
        # Longest names first, so "gpt-4o-mini-2024-07-18" matches gpt-4o-mini, not gpt-4o.
        self._by_len = {p: sorted(models, key=len, reverse=True) for p, models in table.items()}
        self._memo: dict[tuple[str, str], Price | None] = {}

    def __repr__(self) -> str:
        n = sum(len(m) for m in self._table.values())
        return f"<PriceTable updated={self.updated} providers={len(self._table)} models={n}>"

    def providers(self) -> dict[str, dict[str, Price]]:
        """A copy of the table (for merging and display)."""
        return {p: dict(m) for p, m in self._table.items()}

    def lookup(self, provider: str, model: str | None) -> Price | None:
        """The price of `model` at `provider`: exact name, then the longest known prefix."""
        if not model:
            return None
        key = (provider, model)
        memo = self._memo
        if key in memo:
            return memo[key]
        found = self._find(provider, model)
        if found is None and "/" in model and not model.startswith("@"):
            head, _, tail = model.partition("/")  # "openai/gpt-4o" from the compat route
            found = self._find(head, tail) or self._find(provider, tail)
        if len(memo) < 4096:  # bounded: model names come from clients
            memo[key] = found
        return found

    def _find(self, provider: str, model: str) -> Price | None:
        models = self._table.get(provider)
        if not models:
            return None
        exact = models.get(model)
        if exact is not None:
            return exact
        for name in self._by_len[provider]:
            if model.startswith(name) and model[len(name):len(name) + 1] in ("-", "@", ":", "."):
                return models[name]
        return None


def _price(path: str, raw: Any) -> Price:
    if not isinstance(raw, dict):
        raise ConfigError(path, "must be a table with input and output")
    for key in raw:
        if key not in _FIELDS:
            raise ConfigError(f"{path}.{key}", "unknown key")
    vals: dict[str, float | None] = {}
    for key in _FIELDS:
        value = raw.get(key)
        if value is None:
            if key in ("input", "output"):
                raise ConfigError(f"{path}.{key}", "required (USD per 1M tokens)")
            vals[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{path}.{key}", "must be a number >= 0 (USD per 1M tokens)")
        vals[key] = float(value)
    return Price(vals["input"] or 0.0, vals["output"] or 0.0, vals["cache_read"],
                 vals["cache_write"])


def load_bundled() -> PriceTable:
    """The price table shipped in aigw/data/prices.json."""
    raw = _json.loads(resources.files("aigw").joinpath("data/prices.json").read_bytes())
    table = {prov: {model: _price(f"prices.json:{prov}.{model}", p) for model, p in models.items()}
             for prov, models in raw["providers"].items()}
    return PriceTable(table, raw.get("updated", ""))


def parse_prices(raw: Any, base: PriceTable | None = None) -> PriceTable:
    """The `[prices]` config section merged over the bundled table.

    `[prices.openai."gpt-4o"] input = 2.5  output = 10  cache_read = 1.25`
    """
    base = load_bundled() if base is None else base
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise ConfigError("prices", "must be a table")
    merged = base.providers()
    for prov, models in raw.items():
        if not isinstance(models, dict):
            raise ConfigError(f"prices.{prov}", "must be a table of models")
        into = merged.setdefault(prov, {})
        for model, price in models.items():
            into[model] = _price(f'prices.{prov}."{model}"', price)
    return PriceTable(merged, base.updated + "+config")


@dataclass(frozen=True, slots=True)
class CustomCost:
    """A parsed `cf-aig-custom-cost`: USD per token, or a flat total."""

    per_token_in: float = 0.0
    per_token_out: float = 0.0
    per_cache_read_token: float | None = None
    per_cache_write_token: float | None = None
    total_cost: float | None = None


_CUSTOM_KEYS = ("per_token_in", "per_token_out", "per_cache_read_token",
                "per_cache_write_token", "total_cost")


def parse_custom_cost(header: str) -> CustomCost:
    """Parse `cf-aig-custom-cost`; a bad value is a 400 naming what is wrong."""
    name = "cf-aig-custom-cost"
    try:
        obj = _json.loads(header)
    except ValueError:
        raise InvalidHeader(f"{name}: not valid JSON") from None
    if not isinstance(obj, dict):
        raise InvalidHeader(f"{name}: must be a JSON object")
    vals: dict[str, float] = {}
    for key, value in obj.items():
        if key not in _CUSTOM_KEYS:
            raise InvalidHeader(f"{name}: unknown key {key!r} (allowed: {', '.join(_CUSTOM_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise InvalidHeader(f"{name}: {key} must be a number >= 0")
        vals[key] = float(value)
    if "total_cost" in vals:
        if len(vals) > 1:
            raise InvalidHeader(f"{name}: total_cost cannot be combined with per-token rates")
        return CustomCost(total_cost=vals["total_cost"])
    if "per_token_in" not in vals and "per_token_out" not in vals:
        raise InvalidHeader(f"{name}: needs per_token_in and per_token_out, or total_cost")
    return CustomCost(vals.get("per_token_in", 0.0), vals.get("per_token_out", 0.0),
                      vals.get("per_cache_read_token"), vals.get("per_cache_write_token"))


def compute_cost(usage: Usage | None, price: Price | None,
                 custom: CustomCost | None = None) -> tuple[float | None, bool]:
    """(cost in USD or None when unknown, whether it came from `cf-aig-custom-cost`)."""
    if custom is not None:
        if custom.total_cost is not None:
            return custom.total_cost, True
        if usage is None:
            return None, True
        if custom.per_cache_read_token is None and custom.per_cache_write_token is None:
            # Without cache rates every input token is priced as input (reference 6.5).
            return (usage.tokens_in * custom.per_token_in
                    + usage.tokens_out * custom.per_token_out), True
        cr_rate = custom.per_cache_read_token
        cw_rate = custom.per_cache_write_token
        return _split(usage, custom.per_token_in, custom.per_token_out,
                      custom.per_token_in if cr_rate is None else cr_rate,
                      custom.per_token_in if cw_rate is None else cw_rate), True
    if usage is None or price is None:
        return None, False
    cr = price.input if price.cache_read is None else price.cache_read
    cw = price.input if price.cache_write is None else price.cache_write
    return _split(usage, price.input / _PER, price.output / _PER, cr / _PER, cw / _PER), False


def _split(u: Usage, rin: float, rout: float, rcr: float, rcw: float) -> float:
    uncached = max(u.tokens_in - u.cache_read - u.cache_write, 0)
    return uncached * rin + u.cache_read * rcr + u.cache_write * rcw + u.tokens_out * rout
