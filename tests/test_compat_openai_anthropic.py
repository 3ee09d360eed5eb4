"""OpenAI <-> Anthropic Messages: request building, replies, errors and incremental streams."""

from __future__ import annotations

import pytest

from aigw import _json
from aigw.compat import TRANSLATORS, CompatError
from aigw.compat import openai_anthropic as t
from compat_support import (CREATED, assembled_tool_calls, clock, feed_in, golden, ids, pretty, read,
                            split_events, sse_payloads, validate_completion, validate_stream)


def request(**extra: object) -> dict:
    return {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}], **extra}


def built(**extra: object) -> dict:
    return _json.loads(t.build_request(request(**extra), "claude-sonnet-4-5", False)[2])


def test_registered_under_its_wire_name() -> None:
    assert TRANSLATORS["anthropic"] is t


def test_request_golden() -> None:
    body = _json.loads(read("openai_request_tools.json"))
    path, headers, out = t.build_request(body, "claude-sonnet-4-5", True)
    assert path == "v1/messages"
    assert headers == {"anthropic-version": "2023-06-01"}
    golden("anthropic_request_tools.expected.json", pretty(out))


def test_max_tokens_defaults_to_4096_and_max_completion_tokens_wins() -> None:
    assert built()["max_tokens"] == 4096
    assert built(max_tokens=10, max_completion_tokens=20)["max_tokens"] == 20


def test_http_image_uses_url_source_and_stop_becomes_a_list() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    out = built(messages=[{"role": "user", "content": [part]}], stop="END")
    assert out["messages"][0]["content"] == [{"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]
    assert out["stop_sequences"] == ["END"]


@pytest.mark.parametrize(("choice", "expected"), [
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
])
def test_tool_choice_mapping(choice: object, expected: dict) -> None:
    parallel = False if isinstance(choice, dict) else None
    assert built(tool_choice=choice, parallel_tool_calls=parallel)["tool_choice"] == expected


@pytest.mark.parametrize("extra", [{"n": 2}, {"logprobs": True}, {"top_logprobs": 3}, {"logit_bias": {"1": 5}},
                                   {"response_format": {"type": "json_object"}}, {"made_up": 1}])
def test_meaning_changing_parameters_are_refused(extra: dict) -> None:
    with pytest.raises(CompatError) as info:
        built(**extra)
    assert info.value.status == 400
    assert list(extra)[0] in info.value.message
    err = _json.loads(info.value.openai_body())["error"]
    assert err["param"] == list(extra)[0] and err["type"] == "invalid_request_error"


def test_defaults_and_harmless_parameters_pass() -> None:
    out = built(n=1, logprobs=False, seed=7, presence_penalty=0.5, response_format={"type": "text"})
    assert "seed" not in out and "presence_penalty" not in out


def test_tool_arguments_must_be_json() -> None:
    bad = {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}]}
    with pytest.raises(CompatError):
        built(messages=[bad])


@pytest.mark.parametrize("name", ["anthropic_response_tools", "anthropic_response_text"])
def test_response_golden(name: str) -> None:
    out = t.translate_response(200, read(f"{name}.json"), "claude-sonnet-4-5", clock=clock, new_id=ids())
    completion = validate_completion(out)
    assert completion.created == CREATED
    golden(f"{name}.expected.json", pretty(out))


def test_response_usage_counts_cached_input_as_prompt() -> None:
    out = _json.loads(t.translate_response(200, read("anthropic_response_text.json"), "m", clock=clock, new_id=ids()))
    assert out["usage"]["prompt_tokens"] == 2095 + 100 + 1800
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 1800}
    assert out["choices"][0]["finish_reason"] == "length"


def test_error_keeps_anthropic_type() -> None:
    out = _json.loads(t.translate_error(529, read("anthropic_error_overloaded.json")))
    assert out == {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": "overloaded_error"}}


def test_non_json_error_body() -> None:
    out = _json.loads(t.translate_error(502, b"<html>Bad Gateway</html>"))
    assert out["error"]["type"] == "api_error"
    assert "502" in out["error"]["message"] and "Bad Gateway" in out["error"]["message"]


@pytest.mark.parametrize("name", ["anthropic_stream_tools", "anthropic_stream_text", "anthropic_stream_error"])
@pytest.mark.parametrize("usage", [True, False])
def test_stream_golden_in_any_chunking(name: str, usage: bool) -> None:
    data = read(f"{name}.sse")
    outs = {size: feed_in(t.StreamTranslator("claude", usage, clock=clock, new_id=ids()), data, size)
            for size in (1, 7, None)}
    live = t.StreamTranslator("claude", usage, clock=clock, new_id=ids())  # an event per chunk
    outs["events"] = b"".join(live.feed(event) for event in split_events(data)) + live.finish()
    # read at once as a whole stream: the text reply is of the usual shape, taken in one pass
    whole = t.StreamTranslator("claude", usage, clock=clock, new_id=ids()).whole(data)
    assert (whole is not None) == (name == "anthropic_stream_text")
    if whole is not None:
        outs["whole"] = whole
    assert len(set(outs.values())) == 1
    validate_stream(outs[None])
    golden(f"{name}.{'usage' if usage else 'plain'}.expected.sse", outs[None])


def test_stream_tool_call_arguments_assemble() -> None:
    out = feed_in(t.StreamTranslator("claude", True, clock=clock, new_id=ids()), read("anthropic_stream_tools.sse"), 7)
    chunks = validate_stream(out)
    assert assembled_tool_calls(chunks) == {0: {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                                                "arguments": '{"location": "Paris, France", "unit": "celsius"}'}}
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 600
    assert chunks[-1].usage.completion_tokens == 89


def test_stream_is_incremental() -> None:
    translator = t.StreamTranslator("claude", False, clock=clock, new_id=ids())
    quiet = {"ping", "content_block_stop", "message_stop"}
    for event in split_events(read("anthropic_stream_tools.sse")):
        kind = _json.loads(event.split(b"data: ", 1)[1])["type"]
        out = translator.feed(event)
        delta = _json.loads(event.split(b"data: ", 1)[1]).get("delta", {})
        empty = kind in quiet or (kind == "content_block_start" and b'"text":""' in event) or delta.get("partial_json") == ""
        assert (out == b"") == empty, event


TRICKY_TEXTS = ["plain", 'a "quoted" word', "back\\slash", "ends in a backslash \\", 'ends in a quote "',
                "line\nbreak\ttab", "caf\u00e9 \u2603 \U0001f600", "\\\"", "", "}}"]


def _delta_event(text_literal: bytes, extra: bytes = b"", index: int = 0) -> bytes:
    return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
            b'"delta":{"type":"text_delta","text":%s%s}}\n\n' % (index, text_literal, extra))


@pytest.mark.parametrize("ascii_only", [True, False])
def test_text_deltas_cut_from_bytes_keep_their_value(ascii_only: bool) -> None:
    """Text deltas are spliced from the provider's JSON string literal without parsing;
    whatever the escapes, the client must read exactly the text the provider sent, and a
    delta with another member after its text goes the general way."""
    import json
    head = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3}}}\n\n'
            b'event: content_block_start\ndata: {"type":"content_block_start","index":1,'
            b'"content_block":{"type":"text","text":""}}\n\n')
    events = [_delta_event(json.dumps(text, ensure_ascii=ascii_only).encode(), index=1) for text in TRICKY_TEXTS]
    events.append(_delta_event(b'"tail"', b',"extra":"x\\"}}"'))
    tail = (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
            b'"usage":{"output_tokens":9}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n')
    data = head + b"".join(events) + tail
    general = []

    class Counting(t.StreamTranslator):
        def _data(self, data):  # every event that was parsed
            general.append(data["type"])
            return super()._data(data)

    def events_one_by_one(translator: t.StreamTranslator) -> bytes:
        return b"".join(translator.feed(e) for e in split_events(data)) + translator.finish()

    for size in (None, 5, "events"):
        general.clear()
        translator = Counting("claude", False, clock=clock, new_id=ids())
        chunks = validate_stream(events_one_by_one(translator) if size == "events"
                                 else feed_in(translator, data, size))
        texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert texts == [x for x in TRICKY_TEXTS if x] + ["tail"]
        # only the rare events are parsed: every plain text delta went by its bytes
        assert general == ["message_start", "content_block_delta", "message_delta"]


def test_stream_error_event_and_truncation() -> None:
    out = feed_in(t.StreamTranslator("claude", True, clock=clock, new_id=ids()), read("anthropic_stream_error.sse"), None)
    payloads = sse_payloads(out)
    assert payloads[-2] == {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None,
                                      "code": "overloaded_error"}}
    cut = read("anthropic_stream_text.sse").split(b"event: message_delta")[0]
    payloads = sse_payloads(feed_in(t.StreamTranslator("claude", False, clock=clock, new_id=ids()), cut, 7))
    assert "ended before" in payloads[-2]["error"]["message"]


def test_error_event_for_a_mid_stream_cut() -> None:
    translator = t.StreamTranslator("claude", False, clock=clock, new_id=ids())
    out = translator.error_event("upstream connection lost")
    assert sse_payloads(out) == [{"error": {"message": "upstream connection lost", "type": "api_error", "param": None, "code": None}}]


def test_an_event_whose_data_spans_lines_is_joined_before_parsing() -> None:
    """SSE joins several data lines with a newline; the byte-level path for message_start
    and message_delta must hand those to the general splitter, not parse the first line."""
    data = (b'event: message_start\ndata: {"type":"message_start",\ndata: "message":{"usage":{"input_tokens":7}}}\n\n'
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\n\n'
            b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},\ndata: "usage":{"output_tokens":2}}\n\n')
    chunks = validate_stream(feed_in(t.StreamTranslator("claude", True, clock=clock, new_id=ids()), data, None))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].delta.content == "hi" and chunks[2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.prompt_tokens == 7 and chunks[-1].usage.completion_tokens == 2


_NO_ARGS_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude","usage":'
    b'{"input_tokens":9,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
    b'{"type":"tool_use","id":"toolu_1","name":"now","input":{}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"input_json_delta","partial_json":""}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":'
    b'{"type":"tool_use","id":"toolu_2","name":"add","input":{}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":'
    b'{"type":"input_json_delta","partial_json":"{\\"a\\": 1}"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},'
    b'"usage":{"output_tokens":12}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


@pytest.mark.parametrize("size", [1, 7, None])
def test_a_streamed_tool_call_without_arguments_gets_an_empty_object(size: int | None) -> None:
    # Anthropic streams `input: {}` and no (or only empty) argument deltas for a call that
    # takes none; OpenAI's arguments must still be JSON, "{}" as in the non-streamed reply.
    out = feed_in(t.StreamTranslator("claude", False, clock=clock, new_id=ids()), _NO_ARGS_STREAM, size)
    calls = assembled_tool_calls(validate_stream(out))
    assert {i: (c["name"], c["arguments"]) for i, c in calls.items()} == \
        {0: ("now", "{}"), 1: ("add", '{"a": 1}')}
    reply = _json.dumps({"id": "m", "model": "claude", "stop_reason": "tool_use", "usage": {},
                         "content": [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}]})
    whole = validate_completion(t.translate_response(200, reply, "claude"))
    assert whole.choices[0].message.tool_calls[0].function.arguments == "{}"


def test_context_window_exceeded_is_a_length_finish() -> None:
    stream = _NO_ARGS_STREAM.replace(b'"stop_reason":"tool_use"', b'"stop_reason":"model_context_window_exceeded"')
    chunks = validate_stream(feed_in(t.StreamTranslator("claude", False, clock=clock, new_id=ids()), stream, None))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    reply = _json.dumps({"id": "m", "model": "claude", "stop_reason": "model_context_window_exceeded",
                         "usage": {}, "content": [{"type": "text", "text": "cut"}]})
    assert validate_completion(t.translate_response(200, reply, "claude")).choices[0].finish_reason == "length"


@pytest.mark.parametrize("crlf", [False, True])
def test_nothing_after_an_error_event_is_translated(crlf: bool) -> None:
    # An error event and more events in the same upstream read: the error ends the stream.
    stream = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude","usage":{}}}\n\n'
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              b'"delta":{"type":"text_delta","text":"before"}}\n\n'
              b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              b'"delta":{"type":"text_delta","text":"after"}}\n\n'
              b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
              b'"usage":{"output_tokens":2}}\n\n')
    if crlf:
        stream = stream.replace(b"\n", b"\r\n")
    tr = t.StreamTranslator("claude", False, clock=clock, new_id=ids())
    out = tr.feed(stream)
    assert b"before" in out and b"Overloaded" in out and b"after" not in out
    assert tr.failed and not tr.finished


_BURST_EVENTS = {
    "start": b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude",'
             b'"usage":{"input_tokens":5,"output_tokens":1}}}\n\n',
    "text_start": b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                  b'"content_block":{"type":"text","text":""}}\n\n',
    "ping": b'event: ping\ndata: {"type": "ping"}\n\n',
    "stop_block": b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    "delta_end": b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
                 b'"usage":{"output_tokens":7}}\n\n',
    "stop": b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    "error": b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
    "other_index": _delta_event(b'"from block 1"', index=1),
    "two_digit_index": _delta_event(b'"from block 12"', index=12),
    "delta_line_in_data": b'event: ping\ndata: {"type": "ping"}event: content_block_delta\n\n',
    "extra_member": _delta_event(b'"x"', b',"extra":1'),
}


def _at_once_and_one_by_one(events: list, usage: bool = True) -> tuple:
    whole = t.StreamTranslator("claude", usage, clock=clock, new_id=ids())
    one_by_one = t.StreamTranslator("claude", usage, clock=clock, new_id=ids())
    at_once = whole.feed(b"".join(events)) + whole.finish()
    out = []
    for e in events:  # as the relay does: nothing is fed after an error event
        out.append(one_by_one.feed(e))
        if one_by_one.failed:
            break
    each = b"".join(out) + one_by_one.finish()
    return (at_once, whole.failed, whole.finished), (each, one_by_one.failed, one_by_one.finished)


E = _BURST_EVENTS
_RUN = [_delta_event(b'"one "'), _delta_event(b'"two "'), _delta_event(b'"three"')]


@pytest.mark.parametrize("events", [
    [E["start"], E["text_start"], E["ping"], *_RUN, E["stop_block"], E["delta_end"], E["stop"]],
    _RUN,
    [E["start"], _delta_event(b'"caf\\u00e9"', index=1), *_RUN, E["delta_end"]],  # block 1 before
    [E["start"], *_RUN, _delta_event(b'"caf\\u00e9"', index=1), E["delta_end"]],  # and after
    [E["start"], *_RUN, E["ping"], *_RUN, E["delta_end"]],  # two runs
    [E["start"], _delta_event(b'"a}b"'), *_RUN, E["delta_end"]],  # a brace in a literal
    [E["start"], _delta_event(b'"a\\"b"'), *_RUN, E["delta_end"]],  # an escaped quote
    [E["start"], E["delta_line_in_data"], *_RUN, E["delta_end"]],
    [E["start"], *_RUN, E["error"], *_RUN, E["delta_end"]],
    [E["error"], *_RUN],
    # A raw control byte: the regex takes it, a JSON parser does not, so a delta that is
    # not read by the pattern (parsed) shows whether it was
    [b"event: ping\ndata: {}\n\nx", _delta_event(b'"a\x02"'), *_RUN, E["delta_end"]],  # not at an event start
    [E["start"], _delta_event(b'"a"'), b"xyz" + _delta_event(b'"b\x02"'), *_RUN, E["delta_end"]],  # glued
    [E["start"], _delta_event(b'"a\x02"'), *_RUN, E["delta_end"]],
], ids=["usual", "only-deltas", "block-1-before", "block-1-after", "two-runs", "brace", "escape",
        "head-in-data", "error-between", "error-first", "not-at-event-start", "glued-to-garbage",
        "control-byte"])
def test_burst_shapes_translate_as_their_events_one_by_one(events: list) -> None:
    at_once, each = _at_once_and_one_by_one(events)
    assert at_once == each


def test_a_burst_translates_as_its_events_one_by_one() -> None:
    """However the events of a burst are arranged (text deltas in one run or broken up by
    other events, errors anywhere, deltas of another block, with a longer index or with
    another member, a delta's first line where it does not start an event), the
    burst read at once gives the same bytes as its events fed one at a time."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    text = st.text(max_size=6).map(lambda s: _delta_event(json.dumps(s).encode()))
    raw = st.text(max_size=6).map(lambda s: _delta_event(json.dumps(s, ensure_ascii=False).encode()))
    block1 = st.text(max_size=4).map(lambda s: _delta_event(json.dumps(s).encode(), index=1))
    event = st.one_of(text, text, raw, block1, st.sampled_from(sorted(_BURST_EVENTS)).map(_BURST_EVENTS.get))

    @settings(max_examples=400, deadline=None)
    @given(st.lists(event, max_size=14), st.booleans())
    def check(events: list, usage: bool) -> None:
        at_once, each = _at_once_and_one_by_one(events, usage)
        assert at_once == each

    check()


# A stream that arrives whole (the relay's `ready.complete`) in the usual shape is translated
# in one pass (`StreamTranslator.whole`): it must give what feed + finish give, to the byte,
# with the same state and the same events handed to the log capture; any other stream is
# left to feed + finish, and `whole` must then have changed nothing.

def _whole_vs_general(stream: bytes, usage: bool) -> tuple:
    one_pass = t.StreamTranslator("claude", usage, clock=clock, new_id=ids())
    general = t.StreamTranslator("claude", usage, clock=clock, new_id=ids())
    seen_one: list = []
    seen_general: list = []
    one_pass.on_usage, general.on_usage = seen_one.append, seen_general.append
    out = one_pass.whole(stream)
    try:
        expected: bytes | type = general.feed(stream) + general.finish()
    except Exception as exc:  # the relay turns it into an error event (relay._unreadable)
        expected = type(exc)
    return (out, one_pass, seen_one), (expected, general, seen_general)


_USUAL = [E["start"], E["text_start"], E["ping"], *_RUN, E["stop_block"], E["delta_end"], E["stop"]]
_START_CACHED = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"claude",'
                 b'"usage":{"input_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":7,'
                 b'"output_tokens":1}}}\n\n')


def _end(reason: bytes = b'"end_turn"', usage: bytes = b',"usage":{"output_tokens":7}') -> bytes:
    return (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":%s,'
            b'"stop_sequence":null}%s}\n\n' % (reason, usage))


def _usual(**swap: bytes | list) -> list:
    parts = {"start": E["start"], "open": E["text_start"], "pings": [E["ping"]], "deltas": _RUN,
             "stop_block": E["stop_block"], "end": E["delta_end"], "stop": E["stop"], **swap}
    return [parts["start"], parts["open"], *parts["pings"], *parts["deltas"], parts["stop_block"],
            parts["end"], parts["stop"]]


@pytest.mark.parametrize("events", [
    _USUAL,
    _usual(pings=[]),
    _usual(pings=[E["ping"], b'event: ping\ndata: {"type":"ping"}\n\n']),
    _usual(open=E["text_start"].replace(b'"index":0', b'"index":3'), deltas=[_delta_event(b'"x"', index=3)],
           stop_block=E["stop_block"].replace(b'"index":0', b'"index":3')),
    _usual(deltas=[]),  # an empty reply
    _usual(deltas=[_delta_event(b'"caf\\u00e9 \\"q\\" \\\\"'), _delta_event('"\u2603 raw"'.encode()),
                   _delta_event(b'""'), _delta_event(b'"}}\\n\\n"')]),
    _usual(start=_START_CACHED, end=_end(usage=b',"usage":{"output_tokens":9,"input_tokens":null}')),
    _usual(end=_end(b'"max_tokens"')),
    _usual(end=_end(b'"a_reason_added_later"')),
    _usual(end=_end(usage=b"")),  # no usage on message_delta
    _usual(start=b'event: message_start\ndata: {"type":"message_start","message":{"id":"m"}}\n\n'),
    _usual(start=b'event: message_start\ndata: {"type":"message_start","message":null}\n\n'),
    _usual(stop=b'event: message_stop\ndata: {"type": "message_stop"}\n\n'),
], ids=["usual", "no-ping", "two-pings", "block-3", "empty-reply", "escapes", "cached-usage", "max-tokens",
        "unknown-reason", "no-end-usage", "no-start-usage", "null-message", "spaced-stop"])
@pytest.mark.parametrize("usage", [True, False])
def test_a_whole_stream_of_the_usual_shape_is_translated_in_one_pass(events: list, usage: bool,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (out, one_pass, seen_one), (expected, general, seen_general) = _whole_vs_general(b"".join(events), usage)
    assert out is not None
    assert out == expected
    assert (one_pass.finished, one_pass.failed) == (general.finished, general.failed) == (True, False)
    assert seen_one == seen_general and len(seen_one) == 2
    validate_stream(out)
    # and the relay sends it without the general way: none of its pieces is called
    for name in ("feed", "finish", "_blocks", "_fast", "_event"):
        monkeypatch.setattr(t.StreamTranslator, name, None)
    assert t.StreamTranslator("claude", usage, clock=clock, new_id=ids()).whole(b"".join(events)) == out


_HUGE = b"18446744073709551615"  # fits 64 bits; the prompt tokens summed from it do not


@pytest.mark.parametrize("stream", [
    read("anthropic_stream_tools.sse"),
    read("anthropic_stream_error.sse"),
    b"".join(_USUAL[:-1]),  # no message_stop
    b"".join(_USUAL) + b"event: ping\n",  # more after it
    b"".join(_USUAL) + E["stop"],
    b"".join(_USUAL).replace(b"\n", b"\r\n"),
    b"".join(_usual(pings=[], deltas=[_RUN[0], E["ping"], _RUN[1]])),  # an event between the deltas
    b"".join(_usual(deltas=[_RUN[0], E["error"], _RUN[1]])),
    b"".join(_usual(deltas=[_RUN[0], _delta_event(b'"x"', b',"extra":1')])),
    b"".join(_usual(open=E["text_start"].replace(b'"text":""', b'"text":"Hi"'))),
    b"".join(_usual(end=_end(b"null"))),  # no stop reason: the stream is incomplete
    b"".join(_usual(end=_end(b"7"))),
    b"".join(_usual(end=b'event: message_delta\ndata: {"type":"message_delta","delta":[]}\n\n')),
    b"".join(_usual(end=_end(usage=b',"usage":[1]'))),
    b"".join(_usual(end=_end(usage=b',"usage":{"output_tokens":7'))),  # not JSON
    b"".join(_usual(start=b'event: message_start\ndata: {"type":"message_start","message":[1]}\n\n')),
    b"".join(_usual(start=b'event: message_start\ndata: {"type":"message_start","message":{"usage":7}}\n\n')),
    b"".join(_usual(start=b'event: message_start\ndata: ["message_start"]\n\n')),
    b"".join(_usual(start=b'event: message_start\ndata: {"type":"message_delta"}\n\n')),
    b"".join(_usual(start=b'event: message_start\ndata:{"type":"message_start","message":{}}\n\n')),
    b"".join(_usual(start=b'event: message_start\ndata: {"type":"message_start",\ndata: "message":{}}\n\n')),
], ids=["tools", "error", "no-message-stop", "more-after", "two-message-stops", "crlf", "ping-between",
        "error-between", "extra-member", "text-in-start", "null-reason", "number-reason",
        "delta-not-object", "usage-not-object", "end-not-json", "message-not-object", "start-usage-not-object",
        "start-not-object", "start-of-another-type", "data-without-space", "two-data-lines"])
def test_any_other_stream_is_left_to_feed_and_finish_untouched(stream: bytes) -> None:
    for usage in (True, False):
        (out, one_pass, seen_one), (expected, general, seen_general) = _whole_vs_general(stream, usage)
        assert out is None
        assert seen_one == [] and not one_pass.finished and not one_pass.failed
        # what follows is what a fresh translator does: nothing was left half-done
        try:
            after: bytes | type = one_pass.feed(stream) + one_pass.finish()
        except Exception as exc:
            after = type(exc)
        assert after == expected and seen_one == seen_general


def test_a_usage_chunk_that_cannot_be_written_is_left_to_the_general_way() -> None:
    # prompt tokens summed past 64 bits: orjson cannot write them, and finish() raises (the
    # relay makes that an error event); `whole` declines before it has changed anything
    stream = b"".join(_usual(start=E["start"].replace(b'"input_tokens":5', b'"input_tokens":' + _HUGE),
                             end=_end(usage=b',"usage":{"output_tokens":7,"cache_read_input_tokens":' + _HUGE + b"}")))
    (out, one_pass, seen_one), (expected, general, _) = _whole_vs_general(stream, True)
    assert out is None and seen_one == [] and not one_pass.finished
    assert expected is _json.JSONEncodeError
    (out, _, _), (expected, _, _) = _whole_vs_general(stream, False)  # no usage chunk asked: one pass
    assert out is not None and out == expected


def test_a_whole_stream_of_any_arrangement_is_one_pass_or_untouched() -> None:
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    text = st.text(max_size=6).map(lambda s: _delta_event(json.dumps(s, ensure_ascii=False).encode()))
    event = st.one_of(text, text, text, st.sampled_from(sorted(_BURST_EVENTS)).map(_BURST_EVENTS.get))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(event, max_size=6), st.lists(event, max_size=8), st.lists(event, max_size=4),
           st.booleans())
    def check(before: list, middle: list, after: list, usage: bool) -> None:
        # most draws keep the usual opening and closing, so both ways are taken
        stream = b"".join([*before[:1], E["start"], E["text_start"], *middle, E["stop_block"], E["delta_end"],
                           E["stop"], *after[:1]])
        (out, one_pass, seen_one), (expected, general, seen_general) = _whole_vs_general(stream, usage)
        if out is None:
            assert seen_one == [] and not one_pass.finished
        else:
            assert out == expected and seen_one == seen_general
            assert (one_pass.finished, one_pass.failed) == (general.finished, general.failed)

    check()
