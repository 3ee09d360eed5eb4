"""The models `GET /compat/models` lists, with prices in USD per million tokens.

A small bundled catalog until the shared price table (`aigw/data/prices.json`, read by
`aigw/cost.py`) lands; switching means replacing `entries()` and nothing else. Prices are
the providers' public list prices for standard (uncached, non-batch) tokens.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from aigw import _json


class ModelPrice(NamedTuple):
    """One listed model: `{provider}/{model}` id and per-million-token prices."""

    id: str
    input: float
    output: float


_BUNDLED = (
    ModelPrice("openai/gpt-4o-mini", 0.15, 0.60),
    ModelPrice("openai/gpt-4o", 2.50, 10.00),
    ModelPrice("openai/gpt-4.1-mini", 0.40, 1.60),
    ModelPrice("anthropic/claude-sonnet-4-5", 3.00, 15.00),
    ModelPrice("anthropic/claude-haiku-4-5", 1.00, 5.00),
    ModelPrice("google-ai-studio/gemini-2.5-flash", 0.30, 2.50),
    ModelPrice("google-ai-studio/gemini-2.5-pro", 1.25, 10.00),
    ModelPrice("workers-ai/@cf/meta/llama-3.1-8b-instruct", 0.282, 0.827),
    ModelPrice("groq/llama-3.1-8b-instant", 0.05, 0.08),
    ModelPrice("mistral/mistral-small-latest", 0.10, 0.30),
    ModelPrice("deepseek/deepseek-chat", 0.27, 1.10),
)


def entries() -> tuple[ModelPrice, ...]:
    """Every known model with its price: the one place to point at the shared price table."""
    return _BUNDLED


def models_body(providers: Collection[str]) -> bytes:
    """The OpenAI `list` of models whose provider is configured, as JSON bytes (built once)."""
    data = []
    for m in entries():
        owner = m.id.split("/", 1)[0]
        if owner in providers:
            data.append({"id": m.id, "object": "model", "created": 0, "owned_by": owner,
                         "pricing": {"input": m.input, "output": m.output}})
    return _json.dumps({"object": "list", "data": data})
