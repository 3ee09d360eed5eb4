"""Body-head redaction: what is masked where, and the marker-driven token scan."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aigw.logstore.row import (REDACTED, LogRow, _mask_tokens, _token_sub, _TOKEN_SHAPES, redact_body,
                               stream_members)

R = REDACTED.encode()
KEY = b"sk-proj-abcdefghijklmnop1234"
PIECES = [b"sk-", b"pk-", b"rk-", b"k-", b"ask-", b"task-", b"_sk-", b"Bearer ", b"Bearer\t", b"bearer ",
          b"abcdefghijklmnopqrstuvwxyz", b"0123456789", b"-_", b"mock-model", b" ", b'"', b"\n", b"=/+.~"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_marker_scan_masks_exactly_what_the_token_regex_masks(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert _mask_tokens(body) == _TOKEN_SHAPES.sub(_token_sub, body)


def _row(ctype: str, status: int, response: bytes, wire: str = "openai") -> LogRow:
    row = LogRow()
    row.status_code = status
    row.success = 200 <= status < 300
    row.response_content_type = ctype
    row.response_members = stream_members(wire, status, ctype)
    row.path = "/v1/chat/completions?key=AIzaQUERYSECRET"
    row.set_bodies(b'{"api_key":"body-secret-1","messages":[{"content":"' + KEY + b'"}]}', response, 4096)
    row.secrets = ("client-header-secret",)
    row.redact()
    return row


def test_request_bodies_lose_members_tokens_and_known_secrets() -> None:
    row = _row("application/json", 200, b"{}")
    assert row.request_body == b'{"api_key":"' + R + b'","messages":[{"content":"' + R + b'"}]}'
    assert "AIzaQUERYSECRET" not in row.path


def test_json_responses_lose_credential_members() -> None:
    row = _row("application/json", 200, b'{"access_token":"oauth-secret-99","token_type":"bearer"}')
    assert row.response_body == b'{"access_token":"' + R + b'","token_type":"bearer"}'


def test_stream_responses_lose_known_secrets_and_token_shapes_only() -> None:
    """An OpenAI or Anthropic 2xx event stream is not searched for credential-named members
    (what the model writes, tool arguments included, is inside JSON strings there);
    everything else applies, and other wires and error streams get every pass."""
    stream = (b'data: {"delta":{"content":"echo client-header-secret and AIzaQUERYSECRET and '
              + KEY + b'"},"password":"schema-free"}\n\n')
    for wire in ("openai", "anthropic"):
        row = _row("text/event-stream", 200, stream, wire)
        assert row.response_body == (b'data: {"delta":{"content":"echo ' + R + b" and " + R + b" and "
                                     + R + b'"},"password":"schema-free"}\n\n')
    failed = _row("text/event-stream", 500, stream)
    assert b'"password":"' + R + b'"' in failed.response_body
    gemini = (b'data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":"login",'
              b'"args":{"user":"ann","password":"hunter2"}}}]}}]}\n\n')
    row = _row("text/event-stream", 200, gemini, "google-ai-studio")  # args are objects there
    assert b'"password":"' + R + b'"' in row.response_body and b"hunter2" not in row.response_body


def test_redact_body_without_members_still_masks_tokens() -> None:
    body = b'{"password":"p","auth":"Bearer abcdefghijkl"}'
    assert redact_body(body, (), members=False) == b'{"password":"p","auth":"Bearer ' + R + b'"}'
    assert redact_body(body) == b'{"password":"' + R + b'","auth":"Bearer ' + R + b'"}'
