"""The `aigw` command: serve, check-config, providers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import free_port


def wait_healthy(proc, port, within=15.0):
    """Poll /healthz until it answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                assert r.status == 200
                return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)


def run(*args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "aigw", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_check_config_masks_secrets(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("""
[providers.openai]
base_url = "http://127.0.0.1:9999/v1"
[gateways.prod]
authentication = true
tokens = ["env:GW_TOKEN_X", "literal-token-abcdefgh"]
[gateways.prod.keys.openai]
default = "env:OPENAI_KEY_X"
""")
    r = run("check-config", str(cfg), env={"GW_TOKEN_X": "tok-SECRET-1234567890",
                                           "OPENAI_KEY_X": "sk-SECRET-abcdefghijkl"})
    assert r.returncode == 0, r.stderr
    assert "SECRET" not in r.stdout and "literal-token-abcdefgh" not in r.stdout
    assert "http://127.0.0.1:9999/v1" in r.stdout
    assert '"default": "sk-' in r.stdout


@pytest.mark.parametrize("text,message", [
    ('[providers.openai]\nbase_url = "nope"\n', "providers.openai.base_url: not a URL"),
    ('[server]\nport = "x"\n', "server.port: must be an integer"),
    ('[server]\nbogus = 1\n', "server.bogus: unknown key"),
    ('[gateways.prod]\nretry_max_attempts = 9\n',
     "gateways.prod.retry_max_attempts: must be between 1 and 5"),
    ('[gateways.prod]\nretry_backoff = "random"\n', "gateways.prod.retry_backoff: must be one of"),
    ('[providers.custom-x]\nwire = "openai"\n', "providers.custom-x.base_url: required"),
    ('[gateways.prod.keys.openai]\ndefault = "k"\n', "gateways.prod.keys: stored keys need"),
    ('[gateways.prod]\ntokens = ["env:NOT_SET_ANYWHERE_X"]\n',
     "gateways.prod.tokens[0]: environment variable NOT_SET_ANYWHERE_X is not set"),
    ("not toml [", "not valid TOML"),
])
def test_check_config_errors_name_their_path(tmp_path, text, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    r = run("check-config", str(cfg))
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_check_config_missing_file(tmp_path):
    r = run("check-config", str(tmp_path / "missing.toml"))
    assert r.returncode != 0 and "cannot read" in r.stderr


def test_providers_lists_the_registry():
    r = run("providers")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    slugs = {line.split()[0] for line in lines}
    for slug in ("openai", "anthropic", "workers-ai", "google-ai-studio", "groq", "mistral",
                 "aws-bedrock", "azure-openai", "deepseek", "openrouter", "cerebras", "grok"):
        assert slug in slugs
    anthropic = next(line for line in lines if line.startswith("anthropic "))
    assert "https://api.anthropic.com" in anthropic and "x-api-key" in anthropic


def test_serve_on_defaults_and_stop_on_sigterm(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aigw", "serve", "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={k: v for k, v in os.environ.items()
                                            if k != "AIGW_CONFIG"})
    try:
        wait_healthy(proc, port)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert "<defaults>" in out


def test_serve_reads_aigw_config(tmp_path):
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nport = {port}\n[logs]\nbackend = "off"\n')
    proc = subprocess.Popen([sys.executable, "-m", "aigw", "serve"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "AIGW_CONFIG": str(cfg)})
    try:
        wait_healthy(proc, port)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert str(cfg) in out


def test_serve_refuses_a_bad_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nport = -1\n')
    r = run("serve", "--config", str(cfg))
    assert r.returncode == 2 and "server.port" in r.stderr


def test_serve_refuses_a_log_store_it_cannot_open(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nport = {free_port()}\n[logs]\npath = "{tmp_path}/missing/x.sqlite"\n')
    r = run("serve", "--config", str(cfg))
    assert r.returncode == 2 and "logs.path: folder" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_refuses_an_unreachable_postgres_without_quoting_the_dsn(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nport = {free_port()}\n[logs]\nbackend = "postgres"\n'
                   f'dsn = "postgresql://u:pw-CANARY-123@127.0.0.1:{free_port()}/db"\n')
    r = run("serve", "--config", str(cfg))
    assert r.returncode == 2 and "logs.dsn: cannot connect" in r.stderr
    assert "CANARY" not in r.stderr and "Traceback" not in r.stderr
