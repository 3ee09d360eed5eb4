import pytest
from multidict import CIMultiDict

from aigw import config as cfg
from aigw.errors import ByokAliasUnknown, ConfigError
from aigw.policy.keys import ANONYMOUS, inject_key

KEY = "sk-stored-default-0123456789"
ALT = "sk-stored-alt-9876543210"
CONF = cfg.from_dict({"gateways": {"g": {
    "authentication": True, "tokens": ["t"],
    "keys": {"openai": {"default": KEY, "alt": ALT},
             "anthropic": {"default": "ant-key-xxxxxxxxxxxx"},
             "google-ai-studio": {"team": "goog-key-xxxxxxxxxx"},
             "azure-openai": {"default": "azure-key-xxxxxxxxx"},
             "fal": {"default": "fal-key-xxxxxxxxxxxx"}}}}})
GW = CONF.gateways["g"]
P = CONF.providers


@pytest.mark.parametrize("provider,header,value", [
    ("openai", "authorization", "Bearer " + KEY),
    ("anthropic", "x-api-key", "ant-key-xxxxxxxxxxxx"),
    ("azure-openai", "api-key", "azure-key-xxxxxxxxx"),
    ("fal", "authorization", "Key fal-key-xxxxxxxxxxxx"),
])
def test_injects_stored_key_in_registry_header(provider, header, value):
    headers = [("content-type", "application/json")]
    fp = inject_key(GW, P[provider], None, headers)
    assert (header, value) in headers
    assert fp != ANONYMOUS and len(fp) == 32
    assert value not in fp and KEY not in fp


def test_alias_picks_other_key():
    headers = {}
    fp_alt = inject_key(GW, P["openai"], "alt", headers)
    assert headers == {"authorization": "Bearer " + ALT}
    assert fp_alt != inject_key(GW, P["openai"], None, [])


def test_alias_for_provider_without_default():
    headers = []
    inject_key(GW, P["google-ai-studio"], "team", headers)
    assert headers == [("x-goog-api-key", "goog-key-xxxxxxxxxx")]
    assert inject_key(GW, P["google-ai-studio"], None, []) == ANONYMOUS


def test_unknown_alias_is_400_2040_without_fallback():
    headers = []
    with pytest.raises(ByokAliasUnknown) as info:
        inject_key(GW, P["openai"], "nope", headers)
    err = info.value
    assert (err.status, err.code) == (400, 2040)
    assert err.message == ("Provider 'openai' has no BYOK credential named 'nope'. "
                           "Configured aliases: 'default', 'alt'")
    assert headers == []
    assert KEY not in err.message and ALT not in err.message


def test_alias_on_provider_without_keys():
    with pytest.raises(ByokAliasUnknown, match="Configured aliases: none"):
        inject_key(GW, P["groq"], "x", [])


@pytest.mark.parametrize("name", ["Authorization", "x-api-key", "X-Goog-Api-Key", "api-key",
                                  "xi-api-key"])
def test_client_key_wins(name):
    headers = CIMultiDict([(name, "client-secret")])
    fp = inject_key(GW, P["openai"], "alt", headers)
    assert list(headers.items()) == [(name, "client-secret")]
    assert fp not in (ANONYMOUS, inject_key(GW, P["openai"], None, []))


def test_fingerprint_identifies_credential_not_request():
    a = inject_key(GW, P["openai"], None, [("authorization", "Bearer tenant-a")])
    b = inject_key(GW, P["openai"], None, [("authorization", "Bearer tenant-b")])
    a2 = inject_key(GW, P["openai"], None, [("Authorization", "Bearer tenant-a")])
    assert a != b and a == a2


def test_same_key_stored_or_sent_has_same_fingerprint():
    assert (inject_key(GW, P["openai"], None, [])
            == inject_key(GW, P["openai"], None, [("authorization", "Bearer " + KEY)]))


def test_no_keys_configured_passes_through():
    open_gw = cfg.from_dict({"gateways": {"o": {}}}).gateways["o"]
    headers = []
    assert inject_key(open_gw, P["openai"], None, headers) == ANONYMOUS and headers == []


def test_keys_refused_on_unauthenticated_gateway():
    with pytest.raises(ConfigError, match="authentication"):
        cfg.from_dict({"gateways": {"g": {"keys": {"openai": {"default": KEY}}}}})


def test_masked_config_hides_keys():
    text = repr(cfg.masked(CONF)) + repr(GW)
    assert KEY not in text and ALT not in text
    assert cfg.masked(CONF)["gateways"]["g"]["keys"]["openai"]["default"] == "sk-…6789"


def test_raw_bytes_header_lists():
    headers = []
    fp = inject_key(GW, P["openai"], None, headers, raw=True)
    assert headers == [(b"authorization", f"Bearer {KEY}".encode())]
    assert fp == inject_key(GW, P["openai"], None, [(b"Authorization", f"Bearer {KEY}".encode())])
    client = [(b"X-Api-Key", b"mine")]
    inject_key(GW, P["anthropic"], None, client, raw=True)
    assert client == [(b"X-Api-Key", b"mine")]
