"""The little SSE the relay needs: find where the first event ends, tell whether it is an
error event, and write an error event in a provider's own format after a mid-stream cut.
Relayed chunks are never parsed; only the first event of a stream is looked at.
"""

from __future__ import annotations

from aigw import _json

PEEK_LIMIT = 65536  # bytes: past this, the first event is not inspected


def first_event_end(buf: bytes) -> int:
    """Offset just past the first complete event that carries a field, or -1."""
    pos = 0
    while True:
        a = buf.find(b"\n\n", pos)
        b = buf.find(b"\r\n\r\n", pos)
        if a < 0 and b < 0:
            return -1
        end = (b + 4) if a < 0 or (b >= 0 and b < a) else (a + 2)
        event = buf[pos:end]
        # An event of only comments (": ping") or blank lines is skipped.
        for line in event.splitlines():
            if line and not line.startswith(b":"):
                return end
        pos = end


def is_error_event(event: bytes) -> bool:
    """True for `event: error` or a `data:` JSON object with an `error` (or type error)."""
    data: list[bytes] = []
    for line in event.splitlines():
        if line.startswith(b"event:") and line[6:].strip() == b"error":
            return True
        if line.startswith(b"data:"):
            data.append(line[5:].strip())
    payload = b"\n".join(data)
    if not payload.startswith(b"{") or b"error" not in payload:
        return False
    try:
        obj = _json.loads(payload)
    except ValueError:
        return False
    return isinstance(obj, dict) and ("error" in obj or obj.get("type") == "error")


def cut_event(wire: str, message: str) -> bytes:
    """An error event in the provider's SSE dialect, sent before cutting a broken stream."""
    if wire == "anthropic":
        body = _json.dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + body + b"\n\n"
    err = {"message": message, "type": "upstream_error", "code": "stream_interrupted"}
    return b"data: " + _json.dumps({"error": err}) + b"\n\n"
