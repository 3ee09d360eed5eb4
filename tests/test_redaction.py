"""Body-head redaction: what is masked where, and the marker-driven token scan."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aigw.logstore.row import (REDACTED, LogRow, _mask_tokens, _redact, _token_sub, _TOKEN_SHAPES, query_secrets,
                               redact_body, redact_rows, redact_url,
                               response_members)

R = REDACTED.encode()
KEY = b"sk-proj-abcdefghijklmnop1234"
PIECES = [b"sk-", b"pk-", b"rk-", b"k-", b"ask-", b"task-", b"_sk-", b"Bearer ", b"Bearer\t", b"bearer ",
          b"abcdefghijklmnopqrstuvwxyz", b"0123456789", b"-_", b"mock-model", b" ", b'"', b"\n", b"=/+.~"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_marker_scan_masks_exactly_what_the_token_regex_masks(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert _mask_tokens(body) == _TOKEN_SHAPES.sub(_token_sub, body)


def _row(ctype: str, status: int, response: bytes, wire: str = "openai",
         path: str = "/v1/chat/completions") -> LogRow:
    row = LogRow()
    row.status_code = status
    row.success = 200 <= status < 300
    row.response_content_type = ctype
    row.path = path + "?key=AIzaQUERYSECRET"
    row.response_members = response_members(wire, status, ctype, row.path)
    row.set_bodies(b'{"api_key":"body-secret-1","messages":[{"content":"' + KEY + b'"}]}', response, 4096)
    row.secrets = ("client-header-secret",)
    row.redact()
    return row


def test_request_bodies_lose_members_tokens_and_known_secrets() -> None:
    row = _row("application/json", 200, b"{}")
    assert row.request_body == b'{"api_key":"' + R + b'","messages":[{"content":"' + R + b'"}]}'
    assert "AIzaQUERYSECRET" not in row.path


def test_json_responses_lose_credential_members() -> None:
    token = b'{"access_token":"oauth-secret-99","token_type":"bearer"}'
    for wire, path in (("openai", "/v1/oauth/token"), ("openai", "/v1/files"),
                       ("anthropic", "/v1/messages"), ("google-ai-studio", "/v1beta/models/x:generateContent"),
                       ("workers-ai", "/v1/chat/completions")):
        row = _row("application/json", 200, token, wire, path)
        assert row.response_body == b'{"access_token":"' + R + b'","token_type":"bearer"}', (wire, path)


def test_openai_inference_json_keeps_members_but_loses_secrets_and_tokens() -> None:
    """A 2xx JSON reply of OpenAI's chat, completions and embeddings endpoints is not searched
    for credential-named members (the model's text and tool arguments are JSON strings
    there); known secrets and token shapes are still masked, and an error reply, or another
    path, gets every pass."""
    reply = (b'{"choices":[{"message":{"content":"echo client-header-secret ' + KEY
             + b'","tool_calls":[{"function":{"arguments":"{\\"password\\":\\"p\\"}"}}]}}],'
             b'"password":"schema-free"}')
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/openai/v1/chat/completions"):
        row = _row("application/json; charset=utf-8", 200, reply, "openai", path)
        assert row.response_body == reply.replace(b"client-header-secret", R).replace(KEY, R), path
    for status, path in ((400, "/v1/chat/completions"), (200, "/v1/chat/completions/abc/messages")):
        row = _row("application/json", status, reply, "openai", path)
        assert b'"password":"' + R + b'"' in row.response_body and b"schema-free" not in row.response_body


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


# ---------------------------------------------------------------- a batch at once

SECRET_POOL = ["client-header-secret", "sk-proj-QZabcdefghijklmnop", "AIzaQUERYSECRET", "xk-", "B",
               "Bearer", "abc\x00def", "tokentoken"]
BODY_PIECES = PIECES + [s.encode() for s in SECRET_POOL] + [
    b'{"api_key":"v1"}', b'"Authorization": "Bearer abcdefghijkl"', b'"PASSWORD":"p"', b"key", b"\x00",
    b"BBBBBBBB", b"QQQQ", b"AIzaQUERY", b"client-header-", b"ecret"]


def _reference(row: LogRow) -> tuple[str, bytes | None, bytes | None]:
    """What one row's redaction was before batches: every pass over each body."""
    secrets = row.secrets + query_secrets(row.path)
    known = tuple(s.encode() for s in secrets if s)
    req = _redact(row.request_body, known, True) if row.request_body else row.request_body
    resp = (_redact(row.response_body, known, row.response_members) if row.response_body
            else row.response_body)
    return redact_url(row.path, secrets), req, resp


def _make(spec: tuple[list[bytes], list[bytes], list[str], bool, str]) -> LogRow:
    req, resp, secrets, members, path = spec
    row = LogRow()
    row.path = path
    row.request_body = b"".join(req) or None
    row.response_body = b"".join(resp) or None
    row.secrets = tuple(secrets)
    row.response_members = members
    return row


ROW_SPECS = st.tuples(st.lists(st.sampled_from(BODY_PIECES), max_size=25),
                      st.lists(st.sampled_from(BODY_PIECES), max_size=25),
                      st.lists(st.sampled_from(SECRET_POOL), max_size=3), st.booleans(),
                      st.sampled_from(["/v1/x", "/v1/x?key=AIzaQUERYSECRET", "/v1/x?key=abc&alt=sse",
                                       "/v1/x?api_key=k", "/v1/client-header-secret/y"]))


@settings(max_examples=400, deadline=None)
@given(st.lists(ROW_SPECS, min_size=1, max_size=6))
def test_a_batch_is_redacted_exactly_as_each_row_alone(specs: list) -> None:
    rows = [_make(s) for s in specs]
    expected = [_reference(_make(s)) for s in specs]
    redact_rows(rows)
    assert [(r.path, r.request_body, r.response_body) for r in rows] == expected
    assert all(r.secrets == () for r in rows)


def test_a_batch_with_many_distinct_secrets_checks_each_row_against_its_own() -> None:
    rows = []
    for i in range(40):
        row = LogRow()
        row.secrets = (f"per-user-key-{i:04d}-QZ",)
        row.request_body = b'{"content":"my key is per-user-key-%04d-QZ"}' % i
        row.response_body = b'{"echo":"per-user-key-%04d-QZ"}' % ((i + 1) % 40)  # another row's key
        rows.append(row)
    redact_rows(rows)
    for i, row in enumerate(rows):
        assert row.request_body == b'{"content":"my key is ' + R + b'"}'
        assert row.response_body == b'{"echo":"per-user-key-%04d-QZ"}' % ((i + 1) % 40)


def test_a_marker_behind_many_decoys_is_still_found() -> None:
    """The rarest-byte probe gives way to find() when the probe byte is common."""
    decoys = b"B" * 200 + b"Z" * 200
    row = LogRow()
    row.secrets = ("ZZZZZZZZZZZZZZZZZZQZ",)
    row.request_body = decoys + b" Bearer abcdefghijkl"
    row.response_body = decoys + b" ZZZZZZZZZZZZZZZZZZQZ " + decoys
    rows = [row]
    for _ in range(20):  # after the fallback, every later body is still searched
        short = LogRow()
        short.secrets = row.secrets
        short.request_body = b"Bearer abcdefghijkl"
        short.response_body = b"ZZZZZZZZZZZZZZZZZZQZ"
        rows.append(short)
    redact_rows(rows)
    assert row.request_body == decoys + b" Bearer " + R
    assert row.response_body == decoys + b" " + R + b" " + decoys
    assert all(r.request_body == b"Bearer " + R and r.response_body == R for r in rows[1:])


def test_an_empty_batch_and_rows_without_bodies() -> None:
    redact_rows([])
    row = LogRow()
    row.path = "/v1/x?key=AIzaQUERYSECRET"
    row.secrets = ("client-header-secret",)
    bare = LogRow()
    bare.request_body = b'{"api_key":"v1"}'
    redact_rows([row, bare])
    assert row.request_body is None and row.response_body is None and row.secrets == ()
    assert "AIzaQUERYSECRET" not in row.path
    assert bare.request_body == b'{"api_key":"' + R + b'"}' and bare.response_body is None


def test_secrets_are_found_however_a_body_or_query_spells_them() -> None:
    # A key with a "/" quoted by a JSON encoder that escapes it; a credential parameter
    # whose name is percent-encoded or follows a ";"; a header byte that is not UTF-8.
    row = LogRow()
    row.path = "/v1/models?%6Bey=AIzaPctEncodedKey1;token=SemicolonTok99"
    row.secrets = ("wJalr/XUtnFEMI/K7MDENG", "tok\udcff")
    row.request_body = b'{"q":"tok\xff"}'
    row.response_body = (b'{"error":"bad key wJalr\\/XUtnFEMI\\/K7MDENG; AIzaPctEncodedKey1 and '
                         b'SemicolonTok99 rejected"}')
    redact_rows([row])
    assert b"K7MDENG" not in row.response_body and b"AIzaPct" not in row.response_body
    assert b"SemicolonTok99" not in row.response_body and b"tok\xff" not in row.request_body
    assert "AIzaPct" not in row.path and "SemicolonTok99" not in row.path
