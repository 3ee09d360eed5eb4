"""The compat endpoint: `/compat/chat/completions`, `/compat/embeddings`, `/compat/models`.

A request names `model: "{provider}/{model}"`. The body is parsed once; the provider's
`Route` (resolved at start-up) says whether it is forwarded as is after the model rewrite
(OpenAI-wire providers: bytes relayed by `proxy.commit`) or translated (Anthropic, Gemini,
Workers AI `ai/run`: request built by `aigw.compat.openai_*`, reply through `TranslatingRelay`).
The result is a `proxy.Target`, so fallback, retries and the commit point are the proxy's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aigw import _json, proxy
from aigw.compat import TRANSLATORS, catalog
from aigw.compat._openai import CompatError
from aigw.compat.relay import TranslatingRelay
from aigw.config import GatewaySpec, ProviderConfig
from aigw.errors import ByokAliasUnknown, ChatCompletionBadFormat, InvalidBody, InvalidJSON, InvalidProvider, MethodNotAllowed, NotFound
from aigw.headers import upstream_headers
from aigw.paths import check_path, check_query
from aigw.policy.keys import DEFAULT_ALIAS, unknown_alias_message
from aigw.retry import RetryPolicy

if TYPE_CHECKING:
    from aigw.app import Provider
    from aigw.universal import Step

Pairs = list[tuple[bytes, bytes]]

CHAT = "chat/completions"
EMBEDDINGS = "embeddings"
# OpenAI-wire bases without a trailing /v1 whose documented routes sit at the root anyway.
_ROOT_OPENAI = frozenset({"perplexity-ai", "deepseek"})
# Registered but unreachable from a bare model name (Vertex needs a project and a region).
_NO_COMPAT = frozenset({"google-vertex-ai"})
# Translated replies are parsed, so they must arrive uncompressed (pools keep gzip as is).
_TRANSLATED_BASE = ((b"Content-Type", b"application/json"), (b"Accept-Encoding", b"identity"))
_MODEL_KEY = re.compile(rb'"model"\s*:\s*"')
_BAD_MODEL = "Chat completion bad format: 'model' must be '{provider}/{model}'"
_JSON_HEADERS = {"Content-Type": "application/json"}


def _too_deep() -> CompatError:
    """orjson writes at most 254 levels (and reads 1024): a deeper request cannot be sent."""
    return CompatError("the request is nested too deeply to forward (at most 254 levels)")
# Translated request paths that passed check_path (bounded: the model name is in some).
_CHECKED: set[str] = set()
_CHECKED_MAX = 4096


def stored_key(gw: GatewaySpec, provider: str, alias: str | None) -> str | None:
    """The BYOK hook: the gateway's stored key for `provider`, used when the client sends none.

    An alias that names no key is a 400 / 2040, as on every other route (aigw.policy.keys).
    """
    key = gw.key_for(provider, alias or DEFAULT_ALIAS)
    if key is None and alias:
        raise ByokAliasUnknown(unknown_alias_message(gw, provider, alias))
    return key


class Route:
    """How the compat endpoint reaches one provider, resolved once at start-up, with the
    header bytes every request to it needs."""

    __slots__ = ("provider", "translator", "paths", "auth_name", "auth_scheme",
                 "translated_base", "translated_defaults")

    def __init__(self, provider: Provider, translator: ModuleType | None,
                 paths: dict[str, str]) -> None:
        self.provider = provider
        pc: ProviderConfig = provider.base.provider
        self.translator = translator  # for chat completions; None: OpenAI wire, pass-through
        self.paths = paths  # OpenAI-wire endpoint -> path under the provider's base
        self.auth_name = pc.auth_header.lower().encode("latin-1")
        self.auth_scheme = pc.auth_scheme.encode("latin-1")
        self.translated_base = _TRANSLATED_BASE if translator is None else (
            *_TRANSLATED_BASE, *_encode(translator.HEADERS))
        # the defaults a translated request adds: those its base and credential do not set
        taken = {n.lower() for n, _ in self.translated_base} | {self.auth_name}
        self.translated_defaults = tuple(kv for kv in provider.default_headers if kv[0] not in taken)

    def __repr__(self) -> str:
        how = self.translator.PROVIDER if self.translator is not None else "pass-through"
        return f"<Route {self.provider.slug} [{how} | {', '.join(self.paths) or 'no openai paths'}]>"


def _encode(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.encode("latin-1"), v.encode("utf-8")) for k, v in headers.items())


def _route(p: Provider) -> Route | None:
    pc: ProviderConfig = p.base.provider
    if p.slug in _NO_COMPAT or pc.path_params:
        return None
    if p.wire == "workers-ai":
        # Chat goes to `ai/run/{model}` (every model); embeddings to the OpenAI-compatible route.
        return Route(p, TRANSLATORS["workers-ai"], {EMBEDDINGS: "v1/embeddings"})
    if p.wire in TRANSLATORS:
        return Route(p, TRANSLATORS[p.wire], {})
    if p.wire != "openai":
        return None
    prefix = "" if pc.base_url.endswith("/v1") or p.slug in _ROOT_OPENAI else "v1/"
    return Route(p, None, {CHAT: prefix + CHAT, EMBEDDINGS: prefix + EMBEDDINGS})


def rewrite_model(raw: bytes, doc: dict[str, Any], full: str, model: str) -> bytes:
    """`raw` with `model` changed from `full` to `model`, by a byte splice when it is unambiguous.

    The splice needs exactly one `"model": "<full>"` spelt as orjson would; otherwise (escaped
    slashes, duplicates) the body is serialised once.
    """
    encoded = _json.dumps(full)[1:]  # the value and its closing quote
    hits = [m.end() for m in _MODEL_KEY.finditer(raw) if raw.startswith(encoded, m.end())]
    if len(hits) == 1:
        i = hits[0]
        return raw[:i] + raw[i + len(full) - len(model):]
    return _json.dumps({**doc, "model": model})


def provider_headers(route: Route, pairs: Iterable[tuple[bytes, bytes]],
                     base: Iterable[tuple[bytes, bytes]], gw: GatewaySpec,
                     alias: str | None, defaults: Pairs | tuple[tuple[bytes, bytes], ...] | None = None
                     ) -> Pairs:
    """`base`, the provider's credential and its default headers (`defaults`: the ones
    known to be missing from `base`, precomputed; None: worked out here).

    The credential is the provider's own header if the client sent it, else the client's
    `Authorization: Bearer` token moved into the provider's header, else the stored key.
    """
    out = list(base)
    auth_name = route.auth_name
    native = bearer = None
    for name, value in pairs:
        low = name.lower()
        if low == b"authorization":
            bearer = value[7:].strip() if value[:7].lower() == b"bearer " else value
        elif low == auth_name:
            native = value
    if native is not None:
        out.append((auth_name, native))
    else:
        key = bearer
        if not key:
            stored = stored_key(gw, route.provider.slug, alias)
            key = stored.encode("utf-8") if stored else None
        if key:
            out.append((auth_name, route.auth_scheme + key))
    if defaults is not None:
        out.extend(defaults)
    else:
        route.provider.add_defaults(out)
    return out


class CompatRoutes:
    """The compat endpoint for one worker: a `Route` per provider and the models list."""

    def __init__(self, providers: dict[str, Provider], prices: Any) -> None:
        self.known = frozenset(providers)
        self.routes = {slug: _route(p) for slug, p in providers.items()}
        # only models this endpoint can serve are listed (not cohere's, say: no route)
        self.models = catalog.models_body(frozenset(s for s, r in self.routes.items() if r is not None), prices)

    def __repr__(self) -> str:
        live = sum(r is not None for r in self.routes.values())
        return f"<CompatRoutes [providers {live}/{len(self.routes)}]>"

    def models_response(self, method: str) -> web.Response:
        """`GET /compat/models`: the catalog, prebuilt."""
        if method != "GET":
            raise MethodNotAllowed("The models list takes GET")
        return web.Response(body=self.models, headers=_JSON_HEADERS)

    def target(self, endpoint: str, method: str, body: bytes, account: str, gw: GatewaySpec,
               headers: Any, raw_headers: Any, policy: RetryPolicy) -> proxy.Target:
        """The one upstream request for a direct `/compat/{endpoint}` call."""
        if endpoint not in (CHAT, EMBEDDINGS):
            raise NotFound()
        if method != "POST":
            raise MethodNotAllowed(f"/compat/{endpoint} takes POST")
        try:
            doc = _json.loads(body)
        except ValueError:
            raise InvalidJSON() from None
        if not isinstance(doc, dict):
            raise ChatCompletionBadFormat("Chat completion bad format: the body must be a JSON object")
        return self._build(endpoint, doc, body, account, gw, raw_headers,
                           headers.get("cf-aig-byok-alias"), policy, 0, True)

    def step_target(self, step: Step, account: str, gw: GatewaySpec) -> proxy.Target:
        """The upstream request for a universal step with `provider: "compat"`."""
        where = f"steps[{step.index}]"
        if step.path not in (CHAT, EMBEDDINGS) or step.query:
            raise InvalidBody(f"{where}.endpoint: compat takes 'chat/completions' or 'embeddings'")
        doc = step.raw.get("query")
        if not isinstance(doc, dict):
            raise InvalidBody(f"{where}.query: must be an OpenAI request object")
        return self._build(step.path, doc, None, account, gw, step.headers,
                           step.cf_headers.get("cf-aig-byok-alias"), step.policy, step.index, False)

    def _build(self, endpoint: str, doc: dict[str, Any], raw: bytes | None, account: str,
               gw: GatewaySpec, pairs: Any, alias: str | None, policy: RetryPolicy,
               step: int, client: bool) -> proxy.Target:
        # `pairs`: the client's raw headers (client=True: filtered here, only when they are
        # forwarded) or a universal step's own headers.
        full = doc.get("model")
        if not isinstance(full, str):
            raise ChatCompletionBadFormat(_BAD_MODEL)
        slug, sep, model = full.partition("/")
        if not sep or not slug or not model:
            raise ChatCompletionBadFormat(_BAD_MODEL)
        if slug not in self.known:
            raise InvalidProvider()
        route = self.routes[slug]
        if route is None:
            raise CompatError(f"provider {slug!r} is not available on the compat endpoint", param="model")
        translator = route.translator if endpoint == CHAT else None
        relay: TranslatingRelay | None = None
        query = ""
        if translator is None:
            path = route.paths.get(endpoint)
            if path is None:
                raise CompatError(f"{endpoint} is not available for {slug} on the compat endpoint",
                                  param="model")
            try:
                body = rewrite_model(raw, doc, full, model) if raw is not None else _json.dumps(
                    {**doc, "model": model})
            except _json.JSONEncodeError:
                raise _too_deep() from None
            if client:
                pairs = upstream_headers(pairs)
            drop = (b"authorization", route.auth_name)
            base = [(n, v) for n, v in pairs if n.lower() not in drop]
            headers = provider_headers(route, pairs, base, gw, alias)
        else:
            stream = doc.get("stream") is True
            try:
                path, extra, body = translator.build_request(doc, model, stream)
            except _json.JSONEncodeError:
                raise _too_deep() from None
            path, _, query = path.partition("?")
            if path not in _CHECKED:  # a translator's paths repeat: each is checked once
                check_path(path)
                if len(_CHECKED) < _CHECKED_MAX:
                    _CHECKED.add(path)
            if query:
                check_query(query)
            if extra is translator.HEADERS:
                headers = provider_headers(route, pairs, route.translated_base, gw, alias,
                                           route.translated_defaults)
            else:
                headers = provider_headers(route, pairs, (*_TRANSLATED_BASE, *_encode(extra)),
                                           gw, alias)
            options = doc.get("stream_options")
            include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
            relay = TranslatingRelay(translator, model, include_usage)
        p = route.provider
        pool, target = p.base.resolve(account, path, query)
        return proxy.Target(p.slug, p.wire, pool, "POST", target, headers, body, policy, step,
                            relay)
