import pytest

from aigw import config as cfg
from aigw.errors import InvalidCacheHeader
from aigw.policy.cachepolicy import CachePolicy, cache_key, parse_cache_headers

OFF = cfg.from_dict({"gateways": {"g": {}}}).gateways["g"]
ON = cfg.from_dict({"gateways": {"g": {"cache_ttl": 600}}}).gateways["g"]


def getter(**h):
    d = {k.replace("_", "-"): v for k, v in h.items()}
    return d.get


def test_not_considered_without_headers_or_gateway_ttl():
    assert parse_cache_headers(getter(), OFF) is None
    assert parse_cache_headers(getter(cf_aig_skip_cache="true"), OFF) is None


def test_gateway_ttl():
    assert parse_cache_headers(getter(), ON) == CachePolicy(600, False, None)


def test_header_ttl_opts_in_and_overrides():
    assert parse_cache_headers(getter(cf_aig_cache_ttl="120"), OFF) == CachePolicy(120, False, None)
    assert parse_cache_headers(getter(cf_aig_cache_ttl="60"), ON).ttl == 60
    assert parse_cache_headers(getter(cf_cache_ttl="3600"), OFF).ttl == 3600


def test_custom_key_alone_opts_in_for_five_minutes():
    assert parse_cache_headers(getter(cf_aig_cache_key="k1"), OFF) == CachePolicy(300, False, "k1")
    assert parse_cache_headers(getter(cf_aig_cache_key="k1"), ON).ttl == 600


@pytest.mark.parametrize("value", ["59", "0", "-5", "2678401", "abc", "1.5", ""])
def test_ttl_out_of_range_is_clear_400(value):
    with pytest.raises(InvalidCacheHeader) as info:
        parse_cache_headers(getter(cf_aig_cache_ttl=value), OFF)
    assert info.value.status == 400
    assert "cf-aig-cache-ttl" in info.value.message and "60" in info.value.message


@pytest.mark.parametrize("value,skip", [("true", True), ("TRUE", True), ("1", True),
                                        ("false", False), ("0", False)])
def test_skip(value, skip):
    assert parse_cache_headers(getter(cf_aig_skip_cache=value), ON).skip is skip
    assert parse_cache_headers(getter(cf_skip_cache=value), ON).skip is skip


def test_bad_skip_value_is_400():
    with pytest.raises(InvalidCacheHeader, match="cf-aig-skip-cache"):
        parse_cache_headers(getter(cf_aig_skip_cache="maybe"), ON)
    assert parse_cache_headers(getter(cf_aig_skip_cache="maybe"), OFF) is None


BASE = dict(gateway_id="g", provider="openai", method="POST", path="/v1/chat/completions",
            query="", body=b'{"model":"x"}', cred_fp="fp-a", custom_key=None)


def key(**kw):
    return cache_key(**{**BASE, **kw})


def test_key_is_stable_hex_sha256():
    assert key() == key() and len(key()) == 64
    assert key(method="post") == key()


@pytest.mark.parametrize("field,value", [
    ("gateway_id", "h"), ("provider", "groq"), ("method", "PUT"), ("path", "/v1/embeddings"),
    ("query", "a=1"), ("body", b'{"model":"y"}'), ("body", b'{"model": "x"}'),
    ("cred_fp", "fp-b"), ("custom_key", "k"),
])
def test_every_field_changes_the_key(field, value):
    assert key(**{field: value}) != key()


def test_fields_cannot_be_shifted_into_each_other():
    assert key(path="/a", query="b") != key(path="/ab", query="")
    assert key(gateway_id="ab", provider="c") != key(gateway_id="a", provider="bc")


def test_custom_key_replaces_request_but_keeps_scope():
    k = key(custom_key="mine")
    assert k == key(custom_key="mine", body=b"other", path="/x", query="q=1")
    assert k != key(custom_key="mine", gateway_id="h")
    assert k != key(custom_key="mine", cred_fp="fp-b")
