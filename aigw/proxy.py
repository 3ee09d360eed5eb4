"""The hot path: send one attempt, decide before the first byte, then pipe bytes.

An attempt either fails (no response, timeout to first byte, non-2xx, or an SSE stream
whose first event is an error) or is *ready*: its status is 2xx and, for a stream, its first
event is content. Only a ready attempt is committed to the client; after that nothing falls
back, and a stream that breaks is ended with an error event and no clean terminator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from aigw import sse
from aigw.errors import UpstreamFailure, UpstreamTimeout
from aigw.h1 import OriginPool, Response, UpstreamCut, UpstreamError, UpstreamIdle, encode_headers
from aigw.headers import DROP_DOWN_B
from aigw.policy.tee import Capture
from aigw.retry import RetryPolicy, is_retryable, parse_retry_after

logger = logging.getLogger("aigw.proxy")

SMALL_BODY = 1 << 20  # a body of known length up to this is read whole before committing
ERROR_BODY_LIMIT = 1 << 20  # an upstream error body is kept up to this many bytes
_SSE = "text/event-stream"
_SSE_EXTRA = (("X-Accel-Buffering", "no"), ("Cache-Control", "no-cache"))
_SSE_EXTRA_NAMES = frozenset({b"x-accel-buffering", b"cache-control"})


class Relay(Protocol):
    """A target's own commit and failure rendering (the compat route's translating relay),
    and its say on whether a ready response is a reply at all (`vet`)."""

    def vet(self, ready: Ready) -> Ready | Failure: ...
    async def commit(self, request: web.BaseRequest, ready: Ready,
                     extra: tuple[tuple[str, str], ...], obs: Any = None
                     ) -> web.StreamResponse: ...
    def failure(self, f: Failure, extra: tuple[tuple[str, str], ...]) -> web.Response: ...


class Target:
    """One upstream request, fully resolved before any I/O."""

    __slots__ = ("slug", "wire", "pool", "method", "target", "headers", "body", "policy",
                 "step", "relay")

    def __init__(self, slug: str, wire: str, pool: OriginPool, method: str, target: str,
                 headers: list[tuple[bytes, bytes]], body: bytes | None,
                 policy: RetryPolicy, step: int, relay: Relay | None = None) -> None:
        self.slug = slug
        self.wire = wire
        self.pool = pool
        self.method = method
        self.target = target  # path and query, as sent
        self.headers = headers
        self.body = body
        self.policy = policy
        self.step = step
        self.relay = relay  # None: bytes are relayed as they come (`commit`)

    @property
    def url(self) -> str:
        """The full upstream URL (for logs; may carry secrets in its query: redact first)."""
        p = self.pool
        return f"{p.scheme}://{p.host}:{p.port}{self.target}"


@dataclass(slots=True)
class Failure:
    """An attempt that did not produce a committable response."""

    status: int | None  # None: no response at all
    outcome: str  # "status", "in-band error", "timeout", "connection error"
    headers: list[tuple[str, str]] | None = None
    body: bytes = b""
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.outcome == "in-band error" or is_retryable(self.status)


@dataclass(slots=True)
class Ready:
    """A 2xx response, not yet committed; `head` holds bytes already read from it."""

    resp: Response
    head: bytes
    complete: bool  # head is the whole body
    is_sse: bool


def down_headers(resp: Response, drop: frozenset[bytes] = DROP_DOWN_B) -> list[tuple[str, str]]:
    """The upstream's response headers as the client gets them (hop-by-hop removed)."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers
            if k.lower() not in drop]


async def _peek_first_event(resp: Response) -> bytes:
    """Read until the first data-bearing SSE event is complete (or EOF / the peek limit)."""
    buf = b""
    while len(buf) < sse.PEEK_LIMIT:
        chunk = await resp.read_chunk()
        if not chunk:
            break
        buf += chunk
        if sse.first_event_end(buf) >= 0:
            break
    return buf


async def _attempt(t: Target, hop: bytes) -> Ready | Failure:
    resp = await t.pool.request(t.method, t.target, encode_headers(t.headers) + hop, t.body)
    try:
        status = resp.status
        if status < 200 or status >= 300:
            body = await resp.read(ERROR_BODY_LIMIT)
            resp.release()
            return Failure(status, "status", down_headers(resp), body,
                           parse_retry_after(resp.retry_after))
        is_sse = resp.content_type.startswith(_SSE)
        if is_sse and resp.content_encoding is None:
            head = await _peek_first_event(resp)
            end = sse.first_event_end(head)
            if end >= 0 and sse.is_error_event(head[:end]):
                resp.close()
                return Failure(status, "in-band error", down_headers(resp), head)
            if resp.exhausted:
                resp.release()
                return Ready(resp, head, True, True)
            return Ready(resp, head, False, True)
        length = resp.content_length
        if resp.done or (length is not None and length <= SMALL_BODY):
            body = await resp.read()
            resp.release()
            return Ready(resp, body, True, is_sse)
        return Ready(resp, b"", False, is_sse)
    except BaseException:
        resp.close()
        raise


async def attempt(t: Target, hop: bytes = b"") -> Ready | Failure:
    """One try of a target, bounded by its time-to-first-byte limit.

    `hop` is the loop guard's `x-aigw-hop` header line (aigw.guard), sent on every attempt.
    """
    timeout = t.policy.timeout_ms / 1000.0 if t.policy.timeout_ms else None
    try:
        if timeout is None:
            return await _attempt(t, hop)
        async with asyncio.timeout(timeout):
            return await _attempt(t, hop)
    except (TimeoutError, UpstreamIdle):
        # stream_idle_timeout before the commit point is a timeout: it falls back
        return Failure(None, "timeout")
    except (UpstreamError, OSError) as exc:
        # Only the class name is kept: a message may quote the URL (and its ?key=).
        logger.debug("upstream %s: %s", t.slug, type(exc).__name__)
        return Failure(None, "connection error")


async def commit(request: web.BaseRequest, ready: Ready, wire: str,
                 extra: tuple[tuple[str, str], ...], obs: Any = None,
                 capture: Capture | None = None, step: int = 0) -> web.StreamResponse:
    """Send a ready response to the client, piping the rest of the body as it arrives.

    With a `capture`, the bytes sent are also kept (bounded) for the cache; it is marked
    complete only when the whole body went out.
    """
    resp = ready.resp
    attempt = obs  # the log capture's Attempt, before the cache capture joins it
    if ready.is_sse:
        headers = down_headers(resp, DROP_DOWN_B | _SSE_EXTRA_NAMES)
        headers.extend(_SSE_EXTRA)
    else:
        headers = down_headers(resp)
    if extra:
        headers.extend(extra)
    if capture is not None:
        capture.start(resp.status, headers, step, ready.is_sse)
        capture.feed(ready.head)
        if obs is None:
            obs = capture
        else:
            obs = _Both(obs, capture)
    if ready.complete:
        if capture is not None:
            capture.complete = True
        return web.Response(status=resp.status, reason=resp.reason, headers=headers,
                            body=ready.head)
    out = web.StreamResponse(status=resp.status, reason=resp.reason, headers=headers)
    if resp.content_length is not None and not ready.is_sse:
        out.content_length = resp.content_length
    try:
        await out.prepare(request)
        if ready.head:
            await out.write(ready.head)
        read = resp.read_chunk
        if obs is None:
            while chunk := await read():
                await out.write(chunk)
        else:  # the log capture watches each chunk on the side; the bytes go out unchanged
            feed = obs.feed
            while chunk := await read():
                await out.write(chunk)
                feed(chunk)
    except UpstreamCut as exc:
        resp.close()
        logger.warning("upstream stream cut mid-way (%s)", type(exc).__name__)
        if attempt is not None:
            attempt.mark_failed()
        await _cut(request, out, wire if ready.is_sse else "")
        return out
    except ConnectionError:
        # The client went away mid-body: drop the upstream, end quietly (aiohttp answers a
        # write to a closed transport with ClientConnectionResetError; it is not a fault).
        resp.close()
        logger.debug("client disconnected mid-response")
        return out
    except BaseException:
        resp.close()  # client gone or handler cancelled: drop the upstream at once
        raise
    resp.release()
    await out.write_eof()
    if capture is not None:
        capture.complete = True
    return out


class _Both:
    """Two chunk observers (the log capture and the cache capture) behind one `feed`."""

    __slots__ = ("feed",)

    def __init__(self, a: Any, b: Capture) -> None:
        fa, fb = a.feed, b.feed

        def feed(chunk: bytes) -> None:
            fa(chunk)
            fb(chunk)

        self.feed = feed


async def _cut(request: web.BaseRequest, out: web.StreamResponse, wire: str) -> None:
    """End a committed response so no client can take it for complete."""
    if wire:
        try:
            await out.write(sse.cut_event(wire, "upstream stream interrupted"))
        except ConnectionError:
            pass
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes the error event, then closes without a terminator


def failure_response(f: Failure, extra: tuple[tuple[str, str], ...]) -> web.Response:
    """The upstream's own error response, passed back as it came."""
    headers = list(f.headers or ())
    headers.extend(extra)
    return web.Response(status=f.status or 502, headers=headers, body=f.body)


def all_failed(outcomes: list[dict[str, Any]], last: Failure) -> UpstreamFailure:
    """The envelope error when the last attempt had no response at all."""
    cls = UpstreamTimeout if last.outcome == "timeout" else UpstreamFailure
    return cls(extra={"attempts": outcomes})


async def run(request: web.BaseRequest, targets: list[Target],
              universal: bool, rec: Any = None, extra: tuple[tuple[str, str], ...] = (),
              capture: Capture | None = None, hop: bytes = b"") -> web.StreamResponse:
    """Try each target in order, with its retries; commit the first ready response.

    `rec` (an aigw.logstore.capture.Recorder) gets one report per attempt. `extra` headers
    go on whatever is answered (cf-aig-cache-status); `capture` keeps the committed
    response for the cache (not for targets with their own relay: those are not cached).
    """
    base_extra = extra
    outcomes: list[dict[str, Any]] = []
    last: Failure | None = None
    clock = time.monotonic
    for i, t in enumerate(targets):
        if i and rec is not None:
            rec.fallback()
        policy = t.policy
        for n in range(1, policy.max_attempts + 1):
            started = clock()
            res = await attempt(t, hop)
            if t.relay is not None and isinstance(res, Ready):
                res = t.relay.vet(res)  # a 2xx that is not the provider's reply fails here
            if isinstance(res, Ready):
                extra = base_extra + (("cf-aig-step", str(t.step)),) if universal else base_extra
                if rec is None:
                    if t.relay is not None:
                        return await t.relay.commit(request, res, extra)
                    return await commit(request, res, t.wire, extra, None, capture, t.step)
                obs = rec.ready(t, res.resp.status, res.resp.content_type, res.head,
                                res.complete, started, res.resp.content_encoding)
                try:
                    extra = extra + rec.response_headers()
                    if t.relay is not None:
                        return await t.relay.commit(request, res, extra, obs)
                    return await commit(request, res, t.wire, extra, obs, capture, t.step)
                finally:
                    obs.finish()
            last = res
            if rec is not None:
                rec.failed(t, res.status, res.headers, res.body, started)
            outcomes.append({"step": t.step, "attempt": n, "provider": t.slug,
                             "status": res.status, "outcome": res.outcome})
            if not res.retryable or n == policy.max_attempts:
                break
            await asyncio.sleep(policy.delay(n, res.retry_after))
    assert last is not None
    extra = base_extra + (("cf-aig-step", str(targets[-1].step)),) if universal else base_extra
    if rec is not None:  # the last attempt's row (cf-aig-log-id)
        extra = extra + rec.response_headers()
    if last.status is not None:
        relay = targets[-1].relay
        return relay.failure(last, extra) if relay is not None else failure_response(last, extra)
    exc = all_failed(outcomes, last)
    if rec is not None:
        exc.headers = exc.headers + rec.response_headers()
    raise exc
