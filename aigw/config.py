"""TOML config → frozen specs, validated once at start-up.

Every error names its path (`providers.openai.base_url: not a URL`). The hot path only
reads attributes of the frozen objects built here; nothing is merged or looked up from the
environment per request.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from aigw.errors import ConfigError
from aigw.providers import BUILTIN, ProviderSpec

BACKOFFS = ("constant", "linear", "exponential")
WIRES = ("openai", "anthropic", "google", "workers-ai", "cohere", "other")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_GATEWAY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Secret(str):
    """A string that never shows itself in repr() or config dumps."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"

    def masked(self) -> str:
        """`sk-…abcd`-style preview: enough to tell keys apart, not enough to use one."""
        return "***" if len(self) < 12 else f"{self[:3]}…{self[-4:]}"


@dataclass(frozen=True, slots=True)
class ServerSpec:
    host: str = "127.0.0.1"
    port: int = 8787
    max_body_bytes: int = 33554432
    max_steps: int = 16
    shutdown_timeout: float = 30.0
    max_concurrent_requests: int = 0  # 0 = unbounded
    stream_idle_timeout: float = 0.0  # seconds, 0 = none
    pool_limit: int = 0  # connections per provider pool, 0 = unbounded
    keepalive_timeout: float = 30.0  # idle upstream connections are closed after this
    connect_timeout: float = 10.0
    max_line_size: int = 8190
    max_field_size: int = 16384
    max_headers: int = 128
    client_timeout: float = 60.0  # headers+body of a client request must arrive in this
    workers: int = 1


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A provider as configured: the registry row with overrides applied."""

    slug: str
    base_url: str
    auth_header: str
    auth_scheme: str
    wire: str
    prefix_bases: tuple[tuple[str, str], ...]
    dup_segment: str
    default_headers: tuple[tuple[str, str], ...]
    path_params: tuple[tuple[str, str], ...]
    builtin: bool


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    id: str = "*"
    retry_max_attempts: int = 1
    retry_delay: int = 0  # ms
    retry_backoff: str = "constant"
    request_timeout: int = 0  # ms to first byte, 0 = none
    authentication: bool = False
    tokens: tuple[Secret, ...] = ()
    cache_ttl: int = 0
    rate_limiting_limit: int = 0
    rate_limiting_interval: int = 0
    rate_limiting_technique: str = "fixed"
    # provider slug -> alias -> key
    keys: tuple[tuple[str, tuple[tuple[str, Secret], ...]], ...] = ()
    collect_logs: bool = True
    collect_log_payload: bool = True

    def key_for(self, provider: str, alias: str) -> Secret | None:
        """The stored key of `provider` under `alias`, if any."""
        for slug, aliases in self.keys:
            if slug == provider:
                for name, key in aliases:
                    if name == alias:
                        return key
        return None

    def aliases_for(self, provider: str) -> tuple[str, ...]:
        """The aliases stored for `provider`."""
        for slug, aliases in self.keys:
            if slug == provider:
                return tuple(name for name, _ in aliases)
        return ()


@dataclass(frozen=True, slots=True)
class StoreSpec:
    backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    cache_max_bytes: int = 268435456
    key_prefix: str = "aigw:"  # prefix of every Redis key, so several deployments can share one


@dataclass(frozen=True, slots=True)
class LogsSpec:
    backend: str = "sqlite"  # sqlite | postgres | off
    path: str = "aigw-logs.sqlite"
    dsn: str = field(default="", repr=False)  # holds a password: never in repr(config)
    max_rows: int = 10_000_000
    max_age_days: int = 0  # 0 = keep
    log_management_strategy: str = "DELETE_OLDEST"
    queue_max: int = 2_000  # ~0.3 s of rows at full speed; bounds RSS (bench/README.md soak)
    batch_size: int = 500
    head_bytes: int = 4096


@dataclass(frozen=True, slots=True)
class AdminSpec:
    tokens: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class LogSpec:
    """The process's own log (access log and messages)."""

    level: str = "info"
    format: str = "json"  # json | text
    access_log: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerSpec = field(default_factory=ServerSpec)
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    gateways: dict[str, GatewaySpec] = field(default_factory=dict)  # empty: any id accepted
    default_gateway: GatewaySpec = field(default_factory=GatewaySpec)
    store: StoreSpec = field(default_factory=StoreSpec)
    logs: LogsSpec = field(default_factory=LogsSpec)
    admin: AdminSpec = field(default_factory=AdminSpec)
    log: LogSpec = field(default_factory=LogSpec)
    prices: Any = None  # aigw.cost.PriceTable: the bundled table with [prices] applied
    source: str = "<defaults>"
    # Random per loaded config, so forked workers share it: the loop guard's `x-aigw-hop` id.
    instance: str = field(default_factory=lambda: secrets.token_hex(8))

    def gateway(self, gateway_id: str) -> GatewaySpec | None:
        """The spec for a gateway id, or None when gateways are configured and it is unknown."""
        if not self.gateways:
            return self.default_gateway
        return self.gateways.get(gateway_id)


# ---------------------------------------------------------------- validation helpers

def _table(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, "must be a table")
    return value


def _check_keys(path: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}" if path else key, "unknown key")


def _int(path: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, "must be an integer")
    if not lo <= value <= hi:
        raise ConfigError(path, f"must be between {lo} and {hi}")
    return value


def _num(path: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, "must be a number")
    if not lo <= value <= hi:
        raise ConfigError(path, f"must be between {lo} and {hi}")
    return float(value)


def _bool(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, "must be true or false")
    return value


def _str(path: str, value: Any, choices: tuple[str, ...] = ()) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, "must be a string")
    if choices and value not in choices:
        raise ConfigError(path, f"must be one of {', '.join(choices)}")
    return value


def _secret(path: str, value: Any, env: dict[str, str]) -> Secret:
    """A literal secret, or "env:NAME" read from the environment once, here."""
    text = _str(path, value)
    if text.startswith("env:"):
        name = text[4:]
        if not name:
            raise ConfigError(path, "env: needs a variable name")
        if name not in env or not env[name]:
            raise ConfigError(path, f"environment variable {name} is not set")
        text = env[name]
    if not text or any(c in text for c in "\r\n\0"):
        raise ConfigError(path, "empty or has control characters")
    return Secret(text)


def _url(path: str, value: Any) -> str:
    text = _str(path, value)
    probe = re.sub(r"\{[a-z]+\}", "x", text)
    parts = urlsplit(probe)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(path, "not a URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(path, "must not carry a query, fragment or credentials")
    return text.rstrip("/")


# ---------------------------------------------------------------- sections

def _server(raw: dict[str, Any]) -> ServerSpec:
    t = _table("server", raw)
    names = {f.name for f in fields(ServerSpec)}
    _check_keys("server", t, names)
    d = ServerSpec()
    kw: dict[str, Any] = {}
    if "host" in t:
        kw["host"] = _str("server.host", t["host"])
    ints = {"port": (0, 65535), "max_body_bytes": (1, 2**34), "max_steps": (1, 1024),
            "max_concurrent_requests": (0, 10**7), "pool_limit": (0, 10**6),
            "max_line_size": (256, 2**20), "max_field_size": (256, 2**20),
            "max_headers": (8, 10000), "workers": (1, 1024)}
    for name, (lo, hi) in ints.items():
        if name in t:
            kw[name] = _int(f"server.{name}", t[name], lo, hi)
    for name in ("shutdown_timeout", "stream_idle_timeout", "keepalive_timeout",
                 "connect_timeout", "client_timeout"):
        if name in t:
            kw[name] = _num(f"server.{name}", t[name], 0, 86400)
    return replace(d, **kw)


def _providers(raw: dict[str, Any]) -> dict[str, ProviderConfig]:
    out: dict[str, ProviderConfig] = {}
    table = _table("providers", raw)
    for slug, spec in BUILTIN.items():
        out[slug] = _provider_config(spec, True)
    for slug, entry in table.items():
        path = f"providers.{slug}"
        if not _SLUG.match(slug):
            raise ConfigError(path, "provider slug must be lowercase letters, digits and '-'")
        if slug == "compat":
            raise ConfigError(path, "'compat' is reserved")
        e = _table(path, entry)
        _check_keys(path, e, {"base_url", "auth_header", "auth_scheme", "wire", "headers"})
        base = out.get(slug)
        if base is None and "base_url" not in e:
            raise ConfigError(f"{path}.base_url", "required for a provider that is not built in")
        kw: dict[str, Any] = {}
        if "base_url" in e:
            kw["base_url"] = _url(f"{path}.base_url", e["base_url"])
        if "auth_header" in e:
            kw["auth_header"] = _str(f"{path}.auth_header", e["auth_header"]).lower()
        if "auth_scheme" in e:
            kw["auth_scheme"] = _str(f"{path}.auth_scheme", e["auth_scheme"])
        if "wire" in e:
            kw["wire"] = _str(f"{path}.wire", e["wire"], WIRES)
        if "headers" in e:
            hdrs = _table(f"{path}.headers", e["headers"])
            kw["default_headers"] = tuple(
                (k.lower(), _str(f"{path}.headers.{k}", v)) for k, v in hdrs.items()
            )
        if base is None:
            spec = ProviderSpec(slug, kw.pop("base_url"))
            out[slug] = replace(_provider_config(spec, False), **kw)
        else:
            out[slug] = replace(base, **kw)
    return out


def _provider_config(spec: ProviderSpec, builtin: bool) -> ProviderConfig:
    return ProviderConfig(
        slug=spec.slug, base_url=spec.base_url, auth_header=spec.auth_header,
        auth_scheme=spec.auth_scheme, wire=spec.wire, prefix_bases=spec.prefix_bases,
        dup_segment=spec.dup_segment or ("v1" if spec.base_url.endswith("/v1") else ""),
        default_headers=spec.default_headers, path_params=spec.path_params, builtin=builtin,
    )


_GATEWAY_KEYS = {f.name for f in fields(GatewaySpec)} - {"id"}


def _gateway(gid: str, raw: Any, env: dict[str, str], providers: dict[str, Any]) -> GatewaySpec:
    path = f"gateways.{gid}"
    if not _GATEWAY_ID.match(gid):
        raise ConfigError(path, "gateway id must be 1-64 letters, digits, '-' or '_'")
    t = _table(path, raw)
    _check_keys(path, t, _GATEWAY_KEYS)
    kw: dict[str, Any] = {"id": gid}
    if "retry_max_attempts" in t:
        kw["retry_max_attempts"] = _int(f"{path}.retry_max_attempts", t["retry_max_attempts"], 1, 5)
    if "retry_delay" in t:
        kw["retry_delay"] = _int(f"{path}.retry_delay", t["retry_delay"], 0, 5000)
    if "retry_backoff" in t:
        kw["retry_backoff"] = _str(f"{path}.retry_backoff", t["retry_backoff"], BACKOFFS)
    if "request_timeout" in t:
        kw["request_timeout"] = _int(f"{path}.request_timeout", t["request_timeout"], 0, 3_600_000)
    for name in ("authentication", "collect_logs", "collect_log_payload"):
        if name in t:
            kw[name] = _bool(f"{path}.{name}", t[name])
    if "tokens" in t:
        toks = t["tokens"]
        if not isinstance(toks, list):
            raise ConfigError(f"{path}.tokens", "must be a list of strings")
        kw["tokens"] = tuple(_secret(f"{path}.tokens[{i}]", v, env) for i, v in enumerate(toks))
    if "cache_ttl" in t:
        kw["cache_ttl"] = _int(f"{path}.cache_ttl", t["cache_ttl"], 0, 2_678_400)
    if "rate_limiting_limit" in t:
        kw["rate_limiting_limit"] = _int(f"{path}.rate_limiting_limit", t["rate_limiting_limit"],
                                         0, 10**9)
    if "rate_limiting_interval" in t:
        kw["rate_limiting_interval"] = _int(f"{path}.rate_limiting_interval",
                                            t["rate_limiting_interval"], 0, 31_536_000)
    if "rate_limiting_technique" in t:
        kw["rate_limiting_technique"] = _str(f"{path}.rate_limiting_technique",
                                             t["rate_limiting_technique"], ("fixed", "sliding"))
    if "keys" in t:
        keys = _table(f"{path}.keys", t["keys"])
        out = []
        for slug, aliases in keys.items():
            kpath = f"{path}.keys.{slug}"
            if slug not in providers:
                raise ConfigError(kpath, "unknown provider")
            at = _table(kpath, aliases)
            out.append((slug, tuple((alias, _secret(f"{kpath}.{alias}", v, env))
                                    for alias, v in at.items())))
        kw["keys"] = tuple(out)
    spec = GatewaySpec(**kw)
    if spec.keys and not spec.authentication:
        raise ConfigError(f"{path}.keys", "stored keys need authentication = true on the gateway")
    if spec.authentication and not spec.tokens:
        raise ConfigError(f"{path}.tokens", "authentication = true needs at least one token")
    if spec.rate_limiting_limit and not spec.rate_limiting_interval:
        raise ConfigError(f"{path}.rate_limiting_interval", "required with rate_limiting_limit")
    return spec


def _store(raw: Any) -> StoreSpec:
    t = _table("store", raw)
    _check_keys("store", t, {"backend", "redis_url", "cache_max_bytes", "key_prefix"})
    kw: dict[str, Any] = {}
    if "backend" in t:
        kw["backend"] = _str("store.backend", t["backend"], ("memory", "redis"))
    if "redis_url" in t:
        url = _str("store.redis_url", t["redis_url"])
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("store.redis_url", "not a redis:// URL")
        kw["redis_url"] = url
    if "cache_max_bytes" in t:
        kw["cache_max_bytes"] = _int("store.cache_max_bytes", t["cache_max_bytes"], 0, 2**40)
    if "key_prefix" in t:
        prefix = _str("store.key_prefix", t["key_prefix"])
        if not re.match(r"^[A-Za-z0-9:_.-]{0,64}$", prefix):
            raise ConfigError("store.key_prefix", "up to 64 letters, digits, ':', '_', '.', '-'")
        kw["key_prefix"] = prefix
    return StoreSpec(**kw)


def _logs(raw: Any, env: dict[str, str]) -> LogsSpec:
    t = _table("logs", raw)
    _check_keys("logs", t, {f.name for f in fields(LogsSpec)})
    kw: dict[str, Any] = {}
    if "backend" in t:
        kw["backend"] = _str("logs.backend", t["backend"], ("sqlite", "postgres", "off"))
    if "path" in t:
        kw["path"] = _str("logs.path", t["path"])
    if "dsn" in t:
        kw["dsn"] = str(_secret("logs.dsn", t["dsn"], env))
    for name, (lo, hi) in {"max_rows": (1, 10**10), "max_age_days": (0, 36500),
                           "queue_max": (1, 10**7), "batch_size": (1, 100_000),
                           "head_bytes": (0, 10**7)}.items():
        if name in t:
            kw[name] = _int(f"logs.{name}", t[name], lo, hi)
    if "log_management_strategy" in t:
        kw["log_management_strategy"] = _str("logs.log_management_strategy",
                                             t["log_management_strategy"],
                                             ("STOP_INSERTING", "DELETE_OLDEST"))
    spec = LogsSpec(**kw)
    if spec.backend == "sqlite":
        folder = os.path.dirname(os.path.abspath(spec.path))
        if not os.path.isdir(folder):
            raise ConfigError("logs.path", f"folder {folder} does not exist")
    if spec.backend == "postgres" and not spec.dsn:
        raise ConfigError("logs.dsn", "required with backend = \"postgres\"")
    return spec


def _admin(raw: Any, env: dict[str, str]) -> AdminSpec:
    t = _table("admin", raw)
    _check_keys("admin", t, {"tokens"})
    toks = t.get("tokens", [])
    if not isinstance(toks, list):
        raise ConfigError("admin.tokens", "must be a list of strings")
    return AdminSpec(tuple(_secret(f"admin.tokens[{i}]", v, env) for i, v in enumerate(toks)))


def _log(raw: Any) -> LogSpec:
    t = _table("log", raw)
    _check_keys("log", t, {"level", "format", "access_log"})
    kw: dict[str, Any] = {}
    if "level" in t:
        kw["level"] = _str("log.level", t["level"], ("debug", "info", "warning", "error"))
    if "format" in t:
        kw["format"] = _str("log.format", t["format"], ("json", "text"))
    if "access_log" in t:
        kw["access_log"] = _bool("log.access_log", t["access_log"])
    return LogSpec(**kw)


def from_dict(raw: dict[str, Any], env: dict[str, str] | None = None,
              source: str = "<dict>") -> Config:
    """Validate a parsed TOML document into a Config."""
    env = dict(os.environ) if env is None else env
    from aigw.cost import parse_prices  # cost imports config's error type; import late

    _check_keys("", raw, {"server", "providers", "gateways", "store", "logs", "admin", "log",
                          "prices"})
    providers = _providers(raw.get("providers", {}))
    gateways_raw = _table("gateways", raw.get("gateways", {}))
    gateways = {gid: _gateway(gid, g, env, providers) for gid, g in gateways_raw.items()}
    return Config(
        server=_server(raw.get("server", {})),
        providers=providers,
        gateways=gateways,
        store=_store(raw.get("store", {})),
        logs=_logs(raw.get("logs", {}), env),
        admin=_admin(raw.get("admin", {}), env),
        log=_log(raw.get("log", {})),
        prices=parse_prices(raw.get("prices")),
        source=source,
    )


def load(path: str | None, env: dict[str, str] | None = None) -> Config:
    """Read and validate a config file; None means the embedded defaults."""
    if path is None:
        return from_dict({}, env, "<defaults>")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: not valid TOML: {exc}") from exc
    return from_dict(raw, env, path)


def masked(config: Config) -> dict[str, Any]:
    """The resolved config as plain data with every secret masked (for check-config)."""

    def conv(value: Any) -> Any:
        if isinstance(value, Secret):
            return value.masked()
        if hasattr(value, "__dataclass_fields__"):
            return {f.name: conv(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, dict):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, tuple):
            if value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                             for v in value):
                return {k: conv(v) for k, v in value}
            return [conv(v) for v in value]
        return value

    out = conv(replace(config, prices=None))
    out.pop("prices", None)
    if out.get("logs", {}).get("dsn"):
        out["logs"]["dsn"] = re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", out["logs"]["dsn"])
    return out
