"""The translating relay: commits a foreign-wire response to an OpenAI client.

It sits next to `proxy.commit` and keeps its rules: nothing is sent before the attempt is
ready; each upstream chunk is translated and written as soon as it arrives; a stream that
breaks (or ends without a finish reason, or carries an error event) gets an OpenAI-style
error event and then no clean terminator, so no client can take it for complete.
"""

from __future__ import annotations

import logging
from types import ModuleType

from typing import Any, Callable

from aiohttp import web

from aigw.compat._openai import DONE, error_body
from aigw.compat.sse import SSESplitter
from aigw.h1 import UpstreamCut
from aigw.proxy import Failure, Ready, down_headers

logger = logging.getLogger("aigw.compat.relay")

_JSON = "application/json"
_SSE_HEADERS = (("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache"),
                ("X-Accel-Buffering", "no"))
_CUT = (UpstreamCut, TimeoutError)
# An in-band error (a 2xx stream whose first event is an error, or a 2xx body that is not
# the provider's reply) has no HTTP status of its own.
IN_BAND_STATUS = 502
# The most of a translated provider's JSON reply read (it is parsed and translated whole); a
# chat completion is far smaller.
MAX_REPLY = 16 << 20


class TranslatingRelay:
    """Per-target: the translator module and what the client asked for."""

    __slots__ = ("module", "model", "include_usage", "_vetted")

    def __init__(self, module: ModuleType, model: str, include_usage: bool) -> None:
        self.module = module
        # (body, its translation, the parsed body) from `vet`, for `commit`
        self._vetted: tuple[bytes, bytes, Any] | None = None
        self.model = model  # the bare model (the client's without `{provider}/`), echoed in every reply
        self.include_usage = include_usage

    def __repr__(self) -> str:
        return f"<TranslatingRelay {self.module.PROVIDER} {self.model}>"

    def vet(self, ready: Ready) -> Ready | Failure:
        """Before the commit point: a 2xx JSON body read whole that is not the provider's
        reply (an HTML page, JSON of another shape) is a failed attempt, retried or followed
        by the next step like an in-band error, not a reply. Its translation is kept for
        `commit`."""
        if ready.is_sse or not ready.complete:
            return ready
        parsed: list[Any] = []
        out = self._translate(ready.resp.status, ready.head, parsed.append)
        if out is None:
            return Failure(ready.resp.status, "in-band error", down_headers(ready.resp), ready.head)
        self._vetted = (ready.head, out, parsed[0] if parsed else None)
        return ready

    def _translate(self, status: int, body: bytes,
                   on_parsed: Callable[[Any], None] | None = None) -> bytes | None:
        """The OpenAI reply for a 2xx body, or None when it is not the provider's reply (one
        that cannot be translated at all, e.g. nested deeper than JSON can be written,
        included)."""
        try:
            return self.module.translate_response(status, body, self.model, on_parsed=on_parsed)
        except Exception as exc:
            logger.warning("%s reply could not be translated (%s)", self.module.PROVIDER,
                           type(exc).__name__)
            return None

    async def commit(self, request: web.BaseRequest, ready: Ready,
                     extra: tuple[tuple[str, str], ...], obs: Any = None) -> web.StreamResponse:
        """Send a ready upstream response to the client in OpenAI's shape."""
        resp = ready.resp
        if not ready.is_sse:
            try:
                body = ready.head if ready.complete else await resp.read(MAX_REPLY + 1)
                if obs is not None and not ready.complete:
                    obs.feed(body)
                if len(body) > MAX_REPLY:  # read no further (the connection is dropped)
                    if obs is not None:
                        obs.mark_failed()
                    return self._json(IN_BAND_STATUS, error_body(
                        f"upstream reply over {MAX_REPLY} bytes: too large to translate", "api_error",
                        None, "reply_too_large"), extra)
            except _CUT as exc:
                resp.close()
                logger.warning("upstream body cut (%s)", type(exc).__name__)
                if obs is not None:
                    obs.mark_failed()
                return self._json(IN_BAND_STATUS, error_body(
                    "upstream response interrupted", "api_error", None, "stream_interrupted"), extra)
            vetted = self._vetted
            out: bytes | None
            if vetted is not None and vetted[0] is body:
                out = vetted[1]
                if obs is not None and vetted[2] is not None:  # parsed once, for both
                    obs.usage_from(vetted[2])
            else:
                out = self._translate(resp.status, body)
            if out is None:
                # A 2xx that is not the provider's reply (an HTML page, an error object) is
                # no success: an error in OpenAI's shape, as for an in-band error.
                if obs is not None:
                    obs.mark_failed()
                return self._json(IN_BAND_STATUS, self.module.translate_error(resp.status, body), extra)
            return self._json(200, out, extra)
        return await self._stream(request, ready, extra, obs)

    async def _stream(self, request: web.BaseRequest, ready: Ready,
                      extra: tuple[tuple[str, str], ...], obs: Any) -> web.StreamResponse:
        resp = ready.resp
        tr = self.module.StreamTranslator(self.model, self.include_usage)
        if obs is not None:  # the log row's usage comes from the events the translator parses
            tr.on_usage = obs.usage_sink()
        if ready.complete:
            # The whole stream came with its head (the attempt already released the
            # connection): translated at once and sent as one response, in one write; in
            # one pass where it has the usual shape.
            whole = tr.whole(ready.head)
            if whole is not None:
                return web.Response(status=200, body=whole, headers=_SSE_HEADERS + extra)
        try:
            data = tr.feed(ready.head)
        except Exception as exc:  # an event of the wrong shape: the stream ends in an error
            data = _unreadable(tr, exc)
        if ready.complete:
            tail = _finish(tr)
            if tr.finished and not tr.failed:
                return web.Response(status=200, body=data + tail, headers=_SSE_HEADERS + extra)
            if obs is not None:  # an error event, or no finish reason: not a success
                obs.mark_failed()
            out = web.StreamResponse(status=200, headers=_SSE_HEADERS + extra)
            try:
                await out.prepare(request)
            except ConnectionError:
                return out
            await _cut(request, out, data + tail[: -len(DONE)])
            return out
        out = web.StreamResponse(status=200, headers=_SSE_HEADERS + extra)
        try:
            await out.prepare(request)
            if data:
                await out.write(data)
            if not tr.failed:
                read = resp.read_chunk
                while chunk := await read():
                    if obs is not None:  # the log capture sees the upstream's own bytes
                        obs.feed(chunk)
                    try:
                        data = tr.feed(chunk)
                    except Exception as exc:
                        data = _unreadable(tr, exc)
                    if data:
                        await out.write(data)
                    if tr.failed:
                        break  # the provider sent an error event: nothing valid follows
        except _CUT as exc:
            resp.close()
            logger.warning("upstream stream cut mid-way (%s)", type(exc).__name__)
            if obs is not None:
                obs.mark_failed()
            await _cut(request, out, tr.error_event("upstream stream interrupted"))
            return out
        except ConnectionError:  # the client went away: drop the upstream, end quietly
            resp.close()
            return out
        except BaseException:
            resp.close()  # client gone or handler cancelled: drop the upstream at once
            raise
        if tr.failed:
            resp.close()
        else:
            resp.release()
        tail = _finish(tr)  # ends in [DONE]; an incomplete stream must not
        if tr.finished and not tr.failed:
            await out.write_eof(tail)  # the last chunks and the terminator in one write
            return out
        if obs is not None:  # an error event, or no finish reason: not a success
            obs.mark_failed()
        await _cut(request, out, tail[: -len(DONE)])
        return out

    def failure(self, f: Failure, extra: tuple[tuple[str, str], ...]) -> web.Response:
        """The provider's error before any byte was sent: its status, OpenAI's error shape."""
        if f.outcome == "in-band error":
            events = SSESplitter().feed(f.body + b"\n\n")
            payload = events[0].data if events else f.body
            # 502 to the client; the message quotes what the upstream sent, with its status
            return self._json(IN_BAND_STATUS, self.module.translate_error(f.status or IN_BAND_STATUS, payload),
                              extra)
        status = f.status or IN_BAND_STATUS
        headers = extra
        retry_after = next((v for k, v in f.headers or () if k.lower() == "retry-after"), None)
        if retry_after is not None:
            headers = (*extra, ("Retry-After", retry_after))
        return self._json(status, self.module.translate_error(status, f.body), headers)

    @staticmethod
    def _json(status: int, body: bytes, extra: tuple[tuple[str, str], ...]) -> web.Response:
        resp = web.Response(status=status, body=body, content_type=_JSON)
        for k, v in extra:
            resp.headers[k] = v
        return resp


def _unreadable(tr: Any, exc: Exception) -> bytes:
    """A 2xx stream event the translator could not read (a member of the wrong type): an
    error event for the client, and the stream is failed from there on (no traceback: the
    fault is the upstream's)."""
    logger.warning("%s stream: an event could not be translated (%s)", tr.provider,
                   type(exc).__name__)
    return tr.error_event(f"{tr.provider} sent a stream event of an unexpected shape", "api_error",
                          "bad_upstream_event")


def _finish(tr: Any) -> bytes:
    """`tr.finish()`, an unreadable last event included."""
    try:
        return tr.finish()
    except Exception as exc:
        return _unreadable(tr, exc) + DONE


async def _cut(request: web.BaseRequest, out: web.StreamResponse, last: bytes) -> None:
    """Write the final error event, then close without the chunked terminator."""
    if last:
        try:
            await out.write(last)
        except ConnectionError:
            pass
    transport = request.transport
    if transport is not None:
        transport.close()
