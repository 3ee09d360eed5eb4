from __future__ import annotations

import pytest

from aigw.cost import (CustomCost, Price, compute_cost, load_bundled, parse_custom_cost,
                       parse_prices)
from aigw.errors import BadRequest, ConfigError
from aigw.usage import Usage


def test_bundled_table_is_dated_and_covers_providers():
    table = load_bundled()
    assert table.updated == "2026-11-01"
    for prov, model in [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
                        ("google-ai-studio", "gemini-2.5-flash"), ("groq", "llama-3.1-8b-instant"),
                        ("mistral", "mistral-small-latest"),
                        ("workers-ai", "@cf/meta/llama-3.1-8b-instruct"),
                        ("deepseek", "deepseek-chat"), ("cohere", "command-r-08-2024")]:
        assert table.lookup(prov, model) is not None, (prov, model)


def test_lookup_dated_name_takes_longest_prefix():
    table = load_bundled()
    assert table.lookup("openai", "gpt-4o-mini-2024-07-18") == table.lookup("openai", "gpt-4o-mini")
    assert table.lookup("openai", "gpt-4o-2024-08-06") == table.lookup("openai", "gpt-4o")
    assert table.lookup("openai", "gpt-4ox") is None
    assert table.lookup("openai", None) is None
    assert table.lookup("compat", "openai/gpt-4o") == table.lookup("openai", "gpt-4o")


def test_cost_from_price_uses_cache_rates():
    price = Price(input=2.0, output=8.0, cache_read=0.5, cache_write=None)
    usage = Usage("m", tokens_in=1_000_000, tokens_out=500_000, cache_read=400_000, cache_write=100_000)
    cost, custom = compute_cost(usage, price)
    # 500k uncached * 2 + 400k * 0.5 + 100k * 2 (write defaults to input) + 500k * 8, per 1M
    assert cost == pytest.approx(1.0 + 0.2 + 0.2 + 4.0)
    assert custom is False


def test_cost_unknown_without_usage_or_price():
    assert compute_cost(None, Price(1, 1)) == (None, False)
    assert compute_cost(Usage("m", 1, 1), None) == (None, False)


def test_custom_cost_per_token_without_cache_rates_prices_all_input():
    cc = parse_custom_cost('{"per_token_in":0.000001,"per_token_out":0.000002}')
    usage = Usage("m", 1000, 100, cache_read=600)
    assert compute_cost(usage, None, cc) == (pytest.approx(0.001 + 0.0002), True)


def test_custom_cost_cache_rates_avoid_double_counting():
    cc = parse_custom_cost('{"per_token_in":1,"per_token_out":2,"per_cache_read_token":0.1}')
    usage = Usage("m", 1000, 10, cache_read=600, cache_write=100)
    # 300 uncached * 1 + 600 * 0.1 + 100 * 1 (write defaults to per_token_in) + 10 * 2
    assert compute_cost(usage, None, cc) == (pytest.approx(300 + 60 + 100 + 20), True)


def test_custom_total_cost():
    assert compute_cost(None, None, parse_custom_cost('{"total_cost":0.25}')) == (0.25, True)
    assert parse_custom_cost('{"total_cost":1e-9}') == CustomCost(total_cost=1e-9)


@pytest.mark.parametrize("header,needle", [
    ("nope", "not valid JSON"), ("[1]", "JSON object"), ('{"per_token_in":"1"}', "number"),
    ('{"per_token_in":-1,"per_token_out":1}', "number"), ('{"bogus":1}', "unknown key"),
    ('{"per_cache_read_token":1}', "needs per_token_in"),
    ('{"total_cost":1,"per_token_in":1}', "cannot be combined"),
])
def test_custom_cost_errors_are_clear_400s(header, needle):
    with pytest.raises(BadRequest) as err:
        parse_custom_cost(header)
    assert err.value.status == 400
    assert needle in err.value.message and "cf-aig-custom-cost" in err.value.message


def test_parse_prices_overrides_and_adds():
    table = parse_prices({"openai": {"gpt-4o": {"input": 1, "output": 2}},
                          "my-llm": {"m-1": {"input": 3, "output": 4, "cache_read": 0.3}}})
    assert table.lookup("openai", "gpt-4o") == Price(1.0, 2.0)
    assert table.lookup("my-llm", "m-1") == Price(3.0, 4.0, 0.3)
    assert table.lookup("anthropic", "claude-3-haiku") is not None


@pytest.mark.parametrize("raw,path", [
    ({"openai": {"gpt-4o": {"input": 1}}}, 'prices.openai."gpt-4o".output'),
    ({"openai": {"gpt-4o": {"input": -1, "output": 1}}}, 'prices.openai."gpt-4o".input'),
    ({"openai": {"gpt-4o": {"input": 1, "output": 1, "x": 1}}}, 'prices.openai."gpt-4o".x'),
    ({"openai": 3}, "prices.openai"),
])
def test_parse_prices_errors_name_their_path(raw, path):
    with pytest.raises(ConfigError) as err:
        parse_prices(raw)
    assert err.value.path == path
