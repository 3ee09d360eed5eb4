"""The request pipeline: route, validate, resolve targets, hand them to the proxy.

One `Gateway` per worker holds everything long-lived (config, pools, per-provider URL
bases, per-gateway retry defaults), built once at start-up; the handler only reads it.
Routing is a string split, not a router: the whole wire API is four path shapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
import sys
import traceback

from aiohttp import web

from aigw import proxy
from aigw.api import handle_api, metrics_response, split_api_path
from aigw.logstore import LogWriter, open_store
from aigw.logstore.capture import Recorder, secret_header_names
from aigw.metrics import GatewayMetrics, MetricsShare
from aigw.compat import CompatError
from aigw.compat.route import CompatRoutes
from aigw.config import Config, GatewaySpec, ProviderConfig
from aigw.errors import (
    AigwError, ClientTimeout, InvalidProvider, MethodNotAllowed, NotFound, Overloaded,
    PayloadTooLarge, UnknownGateway,
)
from aigw.guard import HOP_HEADER, HopGuard
from aigw.headers import upstream_headers
from aigw.paths import UpstreamBase, check_id, check_path, check_query
from aigw.policy.auth import AUTH_HEADER
from aigw.policy.cachepolicy import cache_key, parse_cache_headers
from aigw.policy.gateway import GatewayPolicy
from aigw.policy.keys import ALIAS_HEADER, client_credentials, fingerprint, inject_key
from aigw.policy.runtime import CacheStep, Extra, PolicyRuntime
from aigw.policy.tee import Capture
from aigw.store.base import CachedEntry
from aigw.retry import RetryPolicy, from_headers, gateway_policy
from aigw.universal import build_step, parse_steps
from aigw.upstream import Pools

logger = logging.getLogger("aigw.app")

_JSON_HEADERS = {"Content-Type": "application/json"}
_HEALTH_OK = b'{"status":"ok"}'


def error_response(exc: AigwError) -> web.Response:
    """An AigwError in Cloudflare's envelope."""
    headers = dict(_JSON_HEADERS)
    headers.update(exc.headers)
    # A compat parameter refusal is read by OpenAI clients: it takes OpenAI's error shape.
    body = exc.openai_body() if isinstance(exc, CompatError) else exc.body()
    resp = web.Response(status=exc.status, body=body, headers=headers)
    if exc.status in (408, 413):
        resp.force_close()  # no keep-alive: the unread body is drained (bounded), then closed
    return resp


class Provider:
    """A configured provider at run time: its URL base and its pool."""

    __slots__ = ("slug", "wire", "base", "default_headers", "cfg")

    def __init__(self, slug: str, wire: str, base: UpstreamBase,
                 default_headers: tuple[tuple[str, str], ...], cfg: ProviderConfig) -> None:
        self.cfg = cfg
        self.slug = slug
        self.wire = wire
        self.base = base
        self.default_headers = tuple((k.encode("latin-1"), v.encode("utf-8"))
                                     for k, v in default_headers)

    def add_defaults(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Append the provider's default headers the client did not send."""
        if self.default_headers:
            present = {n.lower() for n, _ in headers}
            headers.extend((k, v) for k, v in self.default_headers if k not in present)
        return headers


class Gateway:
    """Per-worker state and the request handler."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pools = Pools(config)
        self.providers: dict[str, Provider] = {}
        self.policies: dict[str, RetryPolicy] = {}
        self.draining = False
        self.max_body = config.server.max_body_bytes
        self.max_steps = config.server.max_steps
        self.hop = HopGuard(config.instance)
        # Shedding: more than this many /v1 requests in flight get 503 at once (per worker).
        self.max_inflight = config.server.max_concurrent_requests or sys.maxsize
        self.inflight = 0
        self.client_timeout = config.server.client_timeout or None
        self.metrics = GatewayMetrics()
        self.share: MetricsShare | None = None  # a worker's: /metrics shows all workers' totals
        self.runtime = PolicyRuntime(config, key_prefix=config.store.key_prefix,
                                     metrics=self.metrics)
        self.prices = config.prices
        # credentials in log rows: the usual header names and each provider's auth header
        self.secret_headers = secret_header_names(p.auth_header for p in config.providers.values())
        self.log_store = open_store(config.logs)
        ls = config.logs
        self.log_writer = None if self.log_store is None else LogWriter(
            self.log_store, queue_max=ls.queue_max, batch_size=ls.batch_size)

    async def start(self) -> None:
        """Open the pools and precompute every per-provider and per-gateway object."""
        if self.log_writer is not None:
            await self.log_writer.start()
            self.metrics.watch_writer(self.log_writer, self.log_store)
        await self.pools.start()
        await self.runtime.start()
        for slug, p in self.config.providers.items():
            self.providers[slug] = Provider(slug, p.wire, UpstreamBase(p, self.pools),
                                            p.default_headers, p)
        for gid, gw in self.config.gateways.items():
            self.policies[gid] = gateway_policy(gw)
        self.default_policy = gateway_policy(self.config.default_gateway)
        self.compat = CompatRoutes(self.providers, self.prices)

    async def close(self) -> None:
        await self.pools.close()
        await self.runtime.close()
        if self.log_writer is not None:
            await self.log_writer.close()

    def _recorder(self, request: web.BaseRequest, account: str, gateway_id: str,
                  gw: GatewaySpec, request_type: str | None) -> Recorder:
        return Recorder(self.log_writer, self.metrics, self.prices, account, gateway_id, gw,
                        request.headers, self.config.logs.head_bytes, request_type,
                        self.secret_headers)

    # ------------------------------------------------------------ entry point

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """The low-level server's handler: every request comes through here."""
        path = request.raw_path
        try:
            if path.startswith("/v1/"):
                if self.inflight >= self.max_inflight:
                    raise Overloaded()
                self.inflight += 1
                try:
                    return await self._v1(request, path)
                finally:
                    self.inflight -= 1
            if path.startswith("/client/v4/accounts/"):
                parts = split_api_path(path.partition("?")[0])
                if parts is None:
                    raise NotFound()
                return await handle_api(request, self.log_store, self.config.admin.tokens,
                                        *parts)
            if path == "/metrics":
                return metrics_response(self.metrics, self.share)
            if path == "/healthz":
                return web.Response(body=_HEALTH_OK, headers=_JSON_HEADERS)
            if path == "/readyz":
                status = 503 if self.draining else 200
                body = b'{"status":"draining"}' if self.draining else b'{"status":"ready"}'
                return web.Response(status=status, body=body, headers=_JSON_HEADERS)
            raise NotFound()
        except AigwError as exc:
            return error_response(exc)
        except Exception as exc:  # the one boundary: an envelope, never a traceback out
            # Frames only, no message: a message may quote a header value or a URL's ?key=.
            logger.error("internal error %s at\n%s", type(exc).__name__,
                         "".join(traceback.format_tb(exc.__traceback__)))
            return error_response(AigwError())

    # ------------------------------------------------------------ /v1/{account}/{gateway}/...

    async def _v1(self, request: web.BaseRequest, raw: str) -> web.StreamResponse:
        path, _, query = raw.partition("?")
        parts = path[4:].split("/", 3)
        if len(parts) < 2:
            raise NotFound()
        account, gateway_id = check_id(parts[0]), check_id(parts[1])
        gw = self.config.gateway(gateway_id)
        if gw is None:
            raise UnknownGateway()
        gp = self.runtime.policy(gw)
        if gp.auth is not None:  # before anything else: nothing goes upstream unauthenticated
            gp.auth(request.headers.get(AUTH_HEADER))
        seen = request.headers.get(HOP_HEADER)
        if seen is not None:
            seen = ",".join(request.headers.getall(HOP_HEADER))
        hop = self.hop.outgoing(seen)
        # The cache is scoped by account and gateway; the rate limit by gateway alone (the
        # account segment is free text: varying it must not buy a fresh limit).
        scope = f"{account}/{gateway_id}"
        if len(parts) == 2 or (len(parts) == 3 and parts[2] == ""):
            if request.method != "POST":
                raise MethodNotAllowed("The universal endpoint takes POST")
            return await self._universal(request, account, gateway_id, gw, gp, scope, hop)
        if parts[2] == "compat":
            return await self._compat(request, account, gateway_id, gw, gp, scope,
                                      parts[3] if len(parts) == 4 else "", hop)
        provider = self.providers.get(parts[2])
        if provider is None:
            raise InvalidProvider()
        rest = check_path(parts[3]) if len(parts) == 4 else ""
        return await self._passthrough(request, account, gateway_id, gw, gp, scope, provider,
                                       rest, check_query(query), hop)

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_body:
            raise PayloadTooLarge()
        if not request.body_exists:
            return b""
        content = request.content
        if content.is_eof():
            # The whole body came with the head (the usual small JSON request): take it
            # without a timer or an await (~3 µs a request)
            data = content.read_nowait()
            if len(data) > self.max_body:
                raise PayloadTooLarge()
            return data
        if self.client_timeout is None:
            return await self._read_chunks(request)
        try:
            async with asyncio.timeout(self.client_timeout):
                return await self._read_chunks(request)
        except TimeoutError:
            raise ClientTimeout() from None

    async def _read_chunks(self, request: web.BaseRequest) -> bytes:
        chunks = []
        size = 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge()
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _policy(self, gw: GatewaySpec) -> RetryPolicy:
        return self.policies.get(gw.id, self.default_policy)

    async def _passthrough(self, request: web.BaseRequest, account: str, gateway_id: str,
                           gw: GatewaySpec, gp: GatewayPolicy, scope: str, provider: Provider,
                           rest: str, query: str, hop: bytes) -> web.StreamResponse:
        headers = request.headers
        policy = from_headers(self._policy(gw), headers.get)
        cache = parse_cache_headers(headers.get, gw)
        rec = self._recorder(request, account, gateway_id, gw, None)
        pool, path = provider.base.resolve(account, rest, query)
        body = await self._read_body(request)
        up = upstream_headers(request.raw_headers)
        alias = headers.get(ALIAS_HEADER)
        cred_fp = None
        if gp.has_keys or alias is not None:
            cred_fp = inject_key(gw, provider.cfg, alias, up, raw=True)
        up = provider.add_defaults(up)
        target = proxy.Target(provider.slug, provider.wire, pool, request.method, path, up,
                              body or None, policy, 0)

        async def go(extra: Extra, capture: Capture | None) -> web.StreamResponse:
            return await proxy.run(request, [target], False, rec, extra, capture, hop)

        if cache is None:
            if not gp.limit:  # nothing to do: no closure call, no store
                return await proxy.run(request, [target], False, rec, hop=hop)
            return await self.runtime.limited(gp, gateway_id, go)
        key = None
        if not cache.skip:
            if cred_fp is None:
                cred_fp = fingerprint(client_credentials(provider.cfg, up))
            key = cache_key(scope, provider.slug, request.method, rest, query, body, cred_fp,
                            cache.custom_key)
        return await self.runtime.cached(request, gp, gateway_id, [CacheStep(0, key, cache)], go,
                                         False, _hit_logger(rec, [target]))

    async def _compat(self, request: web.BaseRequest, account: str, gateway_id: str,
                      gw: GatewaySpec, gp: GatewayPolicy, scope: str,
                      endpoint: str, hop: bytes) -> web.StreamResponse:
        if endpoint == "models":
            return self.compat.models_response(request.method)
        rec = self._recorder(request, account, gateway_id, gw, "compat")
        body = await self._read_body(request)
        policy = from_headers(self._policy(gw), request.headers.get)
        target = self.compat.target(endpoint, request.method, body, account, gw,
                                    request.headers, request.raw_headers, policy)

        async def go(extra: Extra, capture: Capture | None) -> web.StreamResponse:
            return await proxy.run(request, [target], False, rec, extra, capture, hop)

        # Compat answers are translated by their own relay and not cached.
        return await self.runtime.limited(gp, gateway_id, go)


    def _step_provider(self, slug: str) -> bool:
        return slug == "compat" or slug in self.providers

    async def _universal(self, request: web.BaseRequest, account: str, gateway_id: str,
                         gw: GatewaySpec, gp: GatewayPolicy, scope: str,
                         hop: bytes) -> web.StreamResponse:
        rec = self._recorder(request, account, gateway_id, gw, "universal")
        body = await self._read_body(request)
        raw_steps = parse_steps(body, self.max_steps)
        base = self._policy(gw)
        outer = request.headers.get
        steps = [build_step(i, s, base, outer, self._step_provider) for i, s in enumerate(raw_steps)]
        targets = []
        cache_steps: list[CacheStep] = []
        for s in steps:
            if s.provider == "compat":  # BYOK done by the compat route; not cached
                targets.append(self.compat.step_target(s, account, gw))
                continue
            lookup = _step_lookup(s.cf_headers, outer)
            alias = lookup(ALIAS_HEADER)
            provider = self.providers[s.provider]
            cache = parse_cache_headers(lookup, gw)
            cred_fp = None
            if gp.has_keys or alias is not None:  # a step without a key gets its provider's
                cred_fp = inject_key(gw, provider.cfg, alias, s.headers, raw=True)
            if cache is not None:
                key = None
                if not cache.skip:
                    if cred_fp is None:
                        cred_fp = fingerprint(client_credentials(provider.cfg, s.headers))
                    key = cache_key(scope, s.provider, "POST", s.path, s.query, s.body, cred_fp,
                                    cache.custom_key)
                cache_steps.append(CacheStep(s.index, key, cache))
            pool, path = provider.base.resolve(account, s.path, s.query)
            targets.append(proxy.Target(provider.slug, provider.wire, pool, "POST", path,
                                        provider.add_defaults(s.headers), s.body, s.policy,
                                        s.index))
        async def go(extra: Extra, capture: Capture | None) -> web.StreamResponse:
            return await proxy.run(request, targets, True, rec, extra, capture, hop)

        try:
            if not cache_steps and not gp.limit:
                return await proxy.run(request, targets, True, rec, hop=hop)
            if cache_steps:
                return await self.runtime.cached(request, gp, gateway_id, cache_steps, go, True,
                                                 _hit_logger(rec, targets))
            return await self.runtime.limited(gp, gateway_id, go)
        except AigwError as exc:
            exc.headers = tuple(exc.headers) + (("cf-aig-step", str(targets[-1].step)),)
            raise


def _hit_logger(rec: Recorder, targets: list[proxy.Target]) -> Callable[[CachedEntry], Extra]:
    """Log a cache hit against the target of the step that produced it."""

    def on_hit(entry: CachedEntry) -> Extra:
        t = next((t for t in targets if t.step == entry.step), targets[0])
        rec.hit(t, entry.status, entry.headers, entry.body)
        return rec.response_headers()

    return on_hit


def _step_lookup(cf: dict[str, str],
                 outer: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """A step's cf-aig-* header lookup: its own headers first, then the request's."""
    if not cf:
        return outer

    def lookup(name: str) -> str | None:
        value = cf.get(name)
        return value if value is not None else outer(name)

    return lookup
