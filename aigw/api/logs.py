"""Cloudflare's Logs API and an analytics route, under
`/client/v4/accounts/{account}/ai-gateway/gateways/{gateway}/`.

Paths and shapes follow reference 6.3 and what the official `cloudflare` Python SDK sends
and parses, so the SDK works against aigw with only its base URL changed. Every answer
uses the v4 envelope `{"success", "result", "errors": [{"code", "message"}], "messages"}`.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
import time
from typing import Any, Sequence

from aiohttp import web

from aigw import _json
from aigw.errors import AigwError, BadRequest, InvalidJSON, LogsBadRequest, LogStoreUnavailable
from aigw.logstore.query import parse_analytics, parse_query
from aigw.logstore.row import has_nul

__all__ = ["handle_api", "split_api_path", "API_PREFIX"]

logger = logging.getLogger("aigw.api")

API_PREFIX = "/client/v4/accounts/"
_PATH = re.compile(r"^/client/v4/accounts/([^/]+)/ai-gateway/gateways/([^/]+)/(.*)$")
_LOG_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_JSON = "application/json"

# v4 error codes: Cloudflare's own where one exists (10000 auth, 7003 route, 7001 method);
# aigw's own (README) for a refused request (LogsBadRequest) and a failed store.
_AUTH, _NO_ROUTE, _METHOD, _NOT_FOUND = 10000, 7003, 7001, 1004
_STORE = LogStoreUnavailable.code


def split_api_path(path: str) -> tuple[str, str, str] | None:
    """(account, gateway, rest) of a Logs API path, or None when it is not one."""
    m = _PATH.match(path)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _envelope(result: Any, status: int = 200, **extra: Any) -> web.Response:
    body = {"success": True, "result": result, "errors": [], "messages": [], **extra}
    return web.Response(body=_json.dumps(body), status=status, content_type=_JSON)


def _error(status: int, code: int, message: str) -> web.Response:
    body = {"success": False, "result": None, "errors": [{"code": code, "message": message}],
            "messages": []}
    return web.Response(body=_json.dumps(body), status=status, content_type=_JSON)


def _authorized(request: web.BaseRequest, tokens: Sequence[str]) -> bool:
    header = request.headers.get("Authorization", "")
    if not header[:7].lower() == "bearer ":
        return False
    # surrogateescape: a byte that is not UTF-8 (a lone surrogate here) is just no match
    given = header[7:].strip().encode("utf-8", "surrogateescape")
    ok = False
    for token in tokens:  # check every token, so timing does not tell which one matched
        ok |= hmac.compare_digest(given, str(token).encode())
    return ok


async def handle_api(request: web.BaseRequest, store: Any, admin_tokens: Sequence[str],
                     account: str, gateway: str, rest: str) -> web.Response:
    """Answer one Logs API or analytics request; `rest` is the path after the gateway."""
    if not admin_tokens:
        return _error(403, _AUTH, "The logs API is disabled: set [admin] tokens")
    if not _authorized(request, admin_tokens):
        return _error(401, _AUTH, "Authentication error")
    if store is None:
        return _error(404, _NO_ROUTE, "Logging is off on this gateway ([logs] backend = off)")
    try:
        return await _route(request, store, account, gateway, rest.strip("/"))
    except BadRequest as exc:
        return _error(400, exc.code, exc.message)
    except AigwError as exc:
        return _error(exc.status, exc.code, exc.message)
    except Exception:  # the handler boundary: the store failed, not the client
        logger.exception("logs API: %s %s failed", request.method, request.path)
        return _error(LogStoreUnavailable.status, _STORE, LogStoreUnavailable.message)


async def _route(request: web.BaseRequest, store: Any, account: str, gateway: str,
                 rest: str) -> web.Response:
    method = request.method
    parts = rest.split("/")
    if parts[0] == "analytics" and len(parts) == 1:
        if method != "GET":
            return _error(405, _METHOD, "Method not allowed")
        a = parse_analytics(request.query, time.time_ns() // 1_000_000)
        return _envelope(await store.analytics(account, gateway, a))
    if parts[0] != "logs" or len(parts) > 3:
        return _error(404, _NO_ROUTE, "No route for that URI")
    if len(parts) == 1:
        if method == "GET":
            rows, info = await store.list(account, gateway, parse_query(request.query))
            return _envelope(rows, result_info=info)
        if method == "DELETE":
            n = await store.delete(account, gateway, parse_query(request.query, delete=True))
            return _envelope({"deleted": n})
        return _error(405, _METHOD, "Method not allowed")
    log_id = parts[1]
    if not _LOG_ID.match(log_id):
        raise LogsBadRequest("Invalid log id")
    if len(parts) == 3:
        if parts[2] not in ("request", "response"):
            return _error(404, _NO_ROUTE, "No route for that URI")
        if method != "GET":
            return _error(405, _METHOD, "Method not allowed")
        return await _body(store, account, gateway, log_id, parts[2])
    if method == "GET":
        row = await store.get(account, gateway, log_id)
        if row is None:
            return _error(404, _NOT_FOUND, "Log not found")
        return _envelope(row)
    if method == "PATCH":
        fields = _patch_fields(await request.read())
        if not await store.patch(account, gateway, log_id, fields):
            return _error(404, _NOT_FOUND, "Log not found")
        return _envelope(await store.get(account, gateway, log_id))
    return _error(405, _METHOD, "Method not allowed")


async def _body(store: Any, account: str, gateway: str, log_id: str,
                which: str) -> web.Response:
    found = await store.get_body(account, gateway, log_id, which)
    if found is None:
        return _error(404, _NOT_FOUND, "Log not found")
    body, ctype, complete = found
    if body is None:
        return _error(404, _NOT_FOUND, f"No {which} body stored for this log "
                                       "(collect_log_payload was off)")
    headers = {"cf-aig-body-complete": "true" if complete else "false"}
    if complete and ctype and "json" in ctype:
        return web.Response(body=body, content_type=_JSON, headers=headers)
    # A truncated head is not valid JSON; hand it back as text.
    return web.Response(body=body, content_type="text/plain", charset="utf-8", headers=headers)


def _patch_fields(raw: bytes) -> dict[str, Any]:
    """Validate a PATCH body: `feedback` -1|1|null, `score` 0..100|null, `metadata`."""
    try:
        body = _json.loads(raw or b"{}")
    except ValueError:
        raise InvalidJSON("Body is not valid JSON") from None
    if not isinstance(body, dict):
        raise LogsBadRequest("Body must be a JSON object")
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key == "feedback":
            # -1 thumbs down, 1 up (reference 6.3); the list filter's feedback=0 finds -1.
            # The numbers -1 and 1 (1.0 too: the SDK types feedback as a float), never 0
            # or true (bool is an int in Python).
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float))
                                      or value not in (-1, 1)):
                raise LogsBadRequest("feedback must be -1 (thumbs down), 1 (thumbs up) or null")
            fields[key] = None if value is None else int(value)
        elif key == "score":
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or not 0 <= value <= 100):
                raise LogsBadRequest("score must be a number from 0 to 100, or null")
            fields[key] = None if value is None else float(value)
        elif key == "metadata":
            if value is not None:
                if not isinstance(value, dict) or any(isinstance(v, (dict, list))
                                                      for v in value.values()):
                    raise LogsBadRequest("metadata must be an object of string, number or "
                                     "boolean values, or null")
                if len(value) > 5:
                    raise LogsBadRequest("metadata holds at most 5 entries")
                if any(has_nul(k, v) for k, v in value.items()):
                    raise LogsBadRequest("metadata keys and values cannot contain NUL "
                                         "(\\u0000)")
            fields[key] = value
        else:
            raise LogsBadRequest(f"Unknown field {key!r}: expected feedback, score or metadata")
    return fields
