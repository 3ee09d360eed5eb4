"""One error tree; every error knows its HTTP status, its Cloudflare-style code and
whether an attempt that failed with it may be retried.

    AigwError                      (gateway-side; rendered in the AiGatewayError envelope)
    ├── BadRequest                 400, client input the gateway refuses
    │   ├── InvalidProvider        400 / 2008
    │   ├── ChatCompletionBadFormat 400 / 2019 (compat model without a provider prefix)
    │   ├── UnknownGateway         400 / 2001
    │   ├── InvalidJSON            400 / 2900 ... (private codes, README lists them)
    │   ├── InvalidHeader          400 / 2902
    │   │   └── InvalidCacheHeader 400 / 2902, a cf-aig-cache-* value out of range
    │   ├── ByokAliasUnknown       400 / 2040
    │   ├── LogsBadRequest         400 / 2914, a Logs API query, filter or PATCH body refused
    │   └── ...
    ├── PayloadTooLarge            413 / 2906
    ├── Unauthorized               401 / 2009
    ├── RateLimited                429 / 2003
    ├── NotFound / MethodNotAllowed
    ├── Overloaded                 503 / 2911 (shed: over server.max_concurrent_requests)
    ├── LoopDetected               508 / 2912 (x-aigw-hop: this gateway already saw it)
    ├── ClientTimeout              408 / 2913 (body slower than server.client_timeout)
    ├── LogStoreUnavailable        503 / 2915 (the Logs API's store failed)
    └── UpstreamFailure            502 / 504: every attempt ended without a response

Cloudflare's envelope (reference section 9):
    {"success":false,"result":[],"messages":[],"error":[{"code":..,"message":..}],
     "name":"AiGatewayError","httpCode":..,"internalCode":..,"message":..}
"""

from __future__ import annotations

from typing import Any

from aigw import _json


class AigwError(Exception):
    """Base of every error the gateway answers itself."""

    status: int = 500
    code: int = 2999
    message: str = "Internal gateway error"
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, message: str | None = None, *, extra: dict[str, Any] | None = None) -> None:
        if message is not None:
            # A message may quote client input, and aiohttp decodes undecodable header
            # bytes to lone surrogates, which JSON cannot carry: each becomes '?'.
            message = message.encode("utf-8", "replace").decode("utf-8")
        super().__init__(message or self.message)
        if message is not None:
            self.message = message
        self.extra = extra

    def envelope(self) -> dict[str, Any]:
        """The AiGatewayError body as a dict."""
        body: dict[str, Any] = {
            "success": False,
            "result": [],
            "messages": [],
            "error": [{"code": self.code, "message": self.message}],
            "name": "AiGatewayError",
            "httpCode": self.status,
            "internalCode": self.code,
            "message": self.message,
        }
        if self.extra:
            body.update(self.extra)
        return body

    def body(self) -> bytes:
        """The envelope as JSON bytes."""
        return _json.dumps(self.envelope())


class BadRequest(AigwError):
    status = 400
    code = 2900
    message = "Bad request"


class UnknownGateway(BadRequest):
    code = 2001
    message = "Please configure AI Gateway in the Cloudflare dashboard"


class InvalidProvider(BadRequest):
    code = 2008
    message = "Invalid provider"


class ChatCompletionBadFormat(BadRequest):
    """A compat request whose `model` is not `{provider}/{model}`."""

    code = 2019
    message = "Chat completion bad format"


class InvalidJSON(BadRequest):
    code = 2900
    message = "Request body is not valid JSON"


class InvalidBody(BadRequest):
    """Universal body of the wrong shape: not array/object, empty, too many steps, bad step."""

    code = 2901
    message = "Invalid universal request body"


class InvalidHeader(BadRequest):
    """A header value the gateway cannot forward or a cf-aig-* value out of range."""

    code = 2902
    message = "Invalid header value"


class InvalidCacheHeader(InvalidHeader):
    """cf-aig-cache-ttl / cf-aig-skip-cache with a value the gateway refuses."""

    message = "Invalid cache header"


class ByokAliasUnknown(BadRequest):
    """cf-aig-byok-alias names no stored key; there is no fallback to another key."""

    code = 2040
    message = "Unknown BYOK alias"


class InvalidPath(BadRequest):
    """An endpoint or path that could leave the provider's base URL."""

    code = 2903
    message = "Invalid endpoint: the path must stay under the provider's base URL"


class InvalidAccount(BadRequest):
    code = 2904
    message = "Invalid account or gateway id"


class LogsBadRequest(BadRequest):
    """A Logs API or analytics request refused: a query parameter, a filter, a log id or a
    PATCH field (a PATCH body that is not JSON stays InvalidJSON, 2900)."""

    code = 2914
    message = "Invalid logs API request"


class LogStoreUnavailable(AigwError):
    """The Logs API's store failed (the client's request was fine)."""

    status = 503
    code = 2915
    message = "Log store unavailable"


class PayloadTooLarge(AigwError):
    status = 413
    code = 2906
    message = "Request body too large"


class NotFound(AigwError):
    status = 404
    code = 2907
    message = "Not found"


class MethodNotAllowed(AigwError):
    status = 405
    code = 2908
    message = "Method not allowed"


class Unauthorized(AigwError):
    status = 401
    code = 2009
    message = "Unauthorized"


class RateLimited(AigwError):
    status = 429
    code = 2003
    message = "Rate limited"


class Overloaded(AigwError):
    """More requests in flight than `server.max_concurrent_requests`: shed, not queued."""

    status = 503
    code = 2911
    message = "Gateway overloaded, try again"
    headers = (("Retry-After", "1"),)


class LoopDetected(AigwError):
    """The request already went through this gateway, or through too many gateways."""

    status = 508
    code = 2912
    message = "Loop detected: the request already passed through this gateway"


class ClientTimeout(AigwError):
    """The client did not send its request body within `server.client_timeout`."""

    status = 408
    code = 2913
    message = "Request body not received in time"


class UpstreamFailure(AigwError):
    """Every attempt ended without an upstream response (network errors, timeouts)."""

    status = 502
    code = 2909
    message = "All upstream attempts failed"


class UpstreamTimeout(UpstreamFailure):
    status = 504
    code = 2910
    message = "All upstream attempts timed out"


class ConfigError(Exception):
    """A config file that cannot be used; `path` names the offending key."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem
