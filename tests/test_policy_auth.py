import logging

import pytest

from aigw import config as cfg
from aigw.errors import Unauthorized
from aigw.policy.auth import AuthCheck, check_auth, is_loopback, warn_exposed


def gw(**kw):
    raw = {"gateways": {"g": kw}}
    return cfg.from_dict(raw, env={"TOK": "from-env"}).gateways["g"]


AUTH = gw(authentication=True, tokens=["tok-one", "env:TOK"])
OPEN = gw()


@pytest.mark.parametrize("header", ["Bearer tok-one", "bearer tok-one", "Bearer from-env",
                                    "Bearer  tok-one "])
def test_valid_token_passes(header):
    check_auth(AUTH, header)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Bearer undefined",
                                    "Bearer tok-on", "Bearer tok-one2", "tok-one",
                                    "Basic tok-one", "Bearer t\u00f6k"])
def test_missing_or_wrong_token_is_401_2009(header):
    with pytest.raises(Unauthorized) as info:
        check_auth(AUTH, header)
    assert info.value.status == 401 and info.value.code == 2009
    assert b'"internalCode":2009' in info.value.body()


@pytest.mark.parametrize("header", [None, "Bearer undefined", "Bearer whatever"])
def test_open_gateway_ignores_header(header):
    check_auth(OPEN, header)


def test_auth_check_repr_hides_tokens():
    r = repr(AuthCheck(AUTH))
    assert "tok-one" not in r and "tokens=2" in r


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("::1", True), ("[::1]", True),
                                       ("localhost", True), ("0.0.0.0", False), ("", False),
                                       ("10.0.0.5", False), ("example.org", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_warns_on_exposed_unauthenticated_gateway(caplog):
    conf = cfg.from_dict({"gateways": {"open": {}, "safe": {"authentication": True,
                                                            "tokens": ["t"]}}})
    with caplog.at_level(logging.WARNING, "aigw.policy"):
        assert warn_exposed(conf, "0.0.0.0") is True
    assert "open" in caplog.text and "safe" not in caplog.text.split("gateway(s)")[1].split(":")[0]
    caplog.clear()
    assert warn_exposed(conf, "127.0.0.1") is False
    assert caplog.text == ""


def test_default_gateway_counts_as_exposed():
    assert warn_exposed(cfg.from_dict({}), "0.0.0.0") is True
