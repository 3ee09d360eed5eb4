"""OpenAI chat completions <-> Google AI Studio Gemini (`generateContent`, `streamGenerateContent?alt=sse`).

| OpenAI request key | Gemini | Notes |
|---|---|---|
| system / developer messages | `systemInstruction.parts` | every one is hoisted, in order |
| user / assistant / tool messages | `contents` (roles `user` / `model`) | tool results become `functionResponse` parts |
| image_url data URL | `inlineData` | |
| image_url Files API link (`https://generativelanguage.googleapis.com/...`) | `fileData.fileUri` | other http(s) links are refused: AI Studio does not fetch them |
| max_completion_tokens, max_tokens | `generationConfig.maxOutputTokens` | |
| temperature, top_p, stop, n, seed, presence_penalty, frequency_penalty | `temperature`, `topP`, `stopSequences`, `candidateCount`, `seed`, `presencePenalty`, `frequencyPenalty` | |
| response_format json_object / json_schema | `responseMimeType: application/json` (+ `responseJsonSchema`) | |
| tools, tool_choice | `functionDeclarations` (`parametersJsonSchema`), `toolConfig.functionCallingConfig` | |
| user, metadata, store, service_tier, prompt_cache_key, safety_identifier | dropped | OpenAI-side bookkeeping |
| parallel_tool_calls: false, logprobs, top_logprobs, logit_bias, audio, modalities, prediction, reasoning_effort, verbosity, web_search_options, functions | refused (400) | |

Gemini function calls carry no id, so tool-call ids are minted from the completion id; a
tool message is matched back to its function name through the earlier assistant tool_calls.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from aigw import _json
from aigw.compat import _openai as oa
from aigw.compat._openai import DROPPED, MAPPED, REFUSED, CompatError
from aigw.compat.sse import SSEEvent

PROVIDER = "google"
HEADERS: dict[str, str] = {}  # what build_request returns: read-only
FILES_PREFIX = "https://generativelanguage.googleapis.com/"

POLICY = {
    **dict.fromkeys(("model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
                     "temperature", "top_p", "stop", "n", "seed", "presence_penalty", "frequency_penalty",
                     "tools", "tool_choice", "response_format"), MAPPED),
    **dict.fromkeys(("user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"),
                    DROPPED),
    **dict.fromkeys(("logprobs", "top_logprobs", "logit_bias", "audio", "modalities", "prediction",
                     "reasoning_effort", "verbosity", "web_search_options", "functions", "function_call"),
                    REFUSED),
}

_GEN_KEYS = (("temperature", "temperature"), ("top_p", "topP"), ("n", "candidateCount"), ("seed", "seed"),
             ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"))
# The model is the one path segment before `:method`: it may hold neither `/` nor `:`
# (oa.UNSAFE_IN_PATH without them).
_UNSAFE_IN_SEGMENT = re.compile(r'[^!"$&-.0-9;->@-~]')
_NAMES: set[str] = set()  # model names that passed oa.path_model
_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"})


def build_request(body: dict[str, Any], model: str, stream: bool) -> tuple[str, dict[str, str], bytes]:
    """OpenAI request dict -> (`v1beta/models/{model}:...`, headers, Gemini body bytes)."""
    oa.check_params({k: v for k, v in body.items() if k != "parallel_tool_calls"}, POLICY, PROVIDER)
    if body.get("parallel_tool_calls") is False:
        raise CompatError("parallel_tool_calls=false is not supported by google", param="parallel_tool_calls")
    system, contents = _contents(oa.array(body.get("messages"), "messages"))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    gen: dict[str, Any] = {}
    limit = oa.max_tokens(body)
    if limit is not None:
        gen["maxOutputTokens"] = limit
    for key, name in _GEN_KEYS:
        if body.get(key) is not None:
            gen[name] = body[key]
    stop = oa.stop_list(body)
    if stop:
        gen["stopSequences"] = stop
    gen.update(_response_format(body.get("response_format")))
    if gen:
        out["generationConfig"] = gen
    tools = oa.array(body.get("tools"), "tools")
    if tools:
        out["tools"] = [{"functionDeclarations": [_declaration(t, i) for i, t in enumerate(tools)]}]
    if body.get("tool_choice") is not None:
        out["toolConfig"] = {"functionCallingConfig": _tool_choice(body["tool_choice"])}
    name = oa.path_model(model.removeprefix("models/"), _NAMES, _UNSAFE_IN_SEGMENT)
    path = f"v1beta/models/{name}:streamGenerateContent?alt=sse" if stream else f"v1beta/models/{name}:generateContent"
    return path, HEADERS, _json.dumps(out)


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, for functionResponse
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise oa.type_error(f"messages[{i}]", "an object")
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            text = oa.text_of(content, i)
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            parts = _user_parts(content, i)
        elif role == "assistant":
            role = "model"
            parts = _model_parts(msg, i, names)
        elif role == "tool":
            role = "user"
            parts = [_function_response(msg, i, names)]
        else:
            raise CompatError(f"message role {role!r} is not supported by google", param=f"messages[{i}].role")
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _user_parts(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise oa.content_error(i)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise oa.content_error(i, j)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if text:
                if not isinstance(text, str):
                    raise oa.text_error(i, j)
                parts.append({"text": text})
        elif kind == "image_url":
            url = oa.image_url(part, i, j)
            data = oa.parse_data_url(url, f"messages[{i}].content[{j}]")
            if data is not None:
                parts.append({"inlineData": {"mimeType": data[0], "data": data[1]}})
            elif url.startswith(FILES_PREFIX):
                parts.append({"fileData": {"fileUri": url}})
            else:
                raise CompatError("google accepts images as data URLs or Files API links only",
                                  param=f"messages[{i}].content[{j}]")
        else:
            raise CompatError(f"content part {kind!r} is not supported by google",
                              param=f"messages[{i}].content[{j}]")
    return parts


def _model_parts(msg: dict[str, Any], i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text = oa.text_of(msg.get("content"), i)
    if text:
        parts.append({"text": text})
    calls = msg.get("tool_calls")
    if calls is None:
        return parts
    for j, call in enumerate(oa.tool_calls(calls, i)):
        fn = call.get("function") or {}
        call_id = call.get("id", "")
        if not isinstance(call_id, str):
            raise oa.type_error(f"messages[{i}].tool_calls[{j}].id", "a string")
        names[call_id] = fn.get("name", "")
        args = oa.parse_arguments(fn.get("arguments", ""), i, j)
        parts.append({"functionCall": {"name": fn.get("name", ""), "args": args}})
    return parts


def _function_response(msg: dict[str, Any], i: int, names: dict[str, str]) -> dict[str, Any]:
    call_id = msg.get("tool_call_id", "")
    if not isinstance(call_id, str):
        raise oa.type_error(f"messages[{i}].tool_call_id", "a string")
    if call_id not in names:
        raise CompatError(f"tool message {call_id!r} answers no earlier assistant tool call",
                          param=f"messages[{i}].tool_call_id")
    text = oa.text_of(msg.get("content"), i)
    try:
        value = _json.loads(text)
    except _json.JSONDecodeError:
        value = text
    # Gemini's `response` must be an object; wrap anything else rather than guess at keys.
    response = value if isinstance(value, dict) else {"content": value}
    return {"functionResponse": {"name": names[call_id], "response": response}}


def _response_format(value: Any) -> dict[str, Any]:
    fmt = oa.obj(value, "response_format")
    kind = fmt.get("type", "text")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = oa.obj(fmt.get("json_schema"), "response_format.json_schema").get("schema")
        out: dict[str, Any] = {"responseMimeType": "application/json"}
        if schema is not None:
            out["responseJsonSchema"] = schema
        return out
    raise CompatError(f"response_format {kind!r} is not supported by google", param="response_format")


def _declaration(tool: Any, i: int) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise oa.type_error(f"tools[{i}]", "an object")
    if tool.get("type") != "function":
        raise CompatError(f"tool type {tool.get('type')!r} is not supported by google", param=f"tools[{i}]")
    fn = tool.get("function") or {}
    if not isinstance(fn, dict):
        raise oa.type_error(f"tools[{i}].function", "an object")
    out: dict[str, Any] = {"name": fn.get("name", "")}
    if fn.get("description"):
        out["description"] = fn["description"]
    if fn.get("parameters"):
        # parametersJsonSchema takes full JSON Schema; `parameters` rejects additionalProperties etc.
        out["parametersJsonSchema"] = fn["parameters"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice in ("auto", "required", "none"):
        return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = oa.obj(choice.get("function"), "tool_choice.function")
        return {"mode": "ANY", "allowedFunctionNames": [fn.get("name", "")]}
    raise CompatError(f"tool_choice {choice!r} is not supported by google", param="tool_choice")


def _finish(reason: str | None, has_calls: bool) -> str:
    if reason in _FILTERED:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    return "tool_calls" if has_calls else "stop"


def _usage(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict):
        meta = {}
    thoughts = oa.count_or_none(meta.get("thoughtsTokenCount"))
    # Thinking tokens are billed as output, as OpenAI's reasoning_tokens are.
    completion = oa.count(meta.get("candidatesTokenCount")) + (thoughts or 0)
    return oa.usage(oa.count(meta.get("promptTokenCount")), completion, oa.count_or_none(meta.get("totalTokenCount")),
                    oa.count_or_none(meta.get("cachedContentTokenCount")), thoughts)


def _call(part: dict[str, Any], call_id: str) -> dict[str, Any]:
    fn = part["functionCall"]
    args = _json.dumps(fn.get("args") or {}).decode()
    return {"id": fn.get("id") or call_id, "type": "function", "function": {"name": fn.get("name", ""), "arguments": args}}


def translate_response(status: int, body: bytes, model: str, *, clock: oa.Clock = time.time,
                       new_id: oa.IdFactory = oa.new_completion_id,
                       on_parsed: Callable[[dict[str, Any]], None] | None = None) -> bytes | None:
    """A complete Gemini GenerateContentResponse -> OpenAI chat.completion JSON bytes; None
    if the body is not one (neither `candidates` nor a blocked prompt's `promptFeedback`),
    which the relay answers as an error."""
    data = oa.loads_object(body)
    if on_parsed is not None and data is not None:  # the log capture reads usage from it
        on_parsed(data)
    if data is None:
        return None
    candidates = data.get("candidates")
    if candidates is None:
        candidates = []
        if not isinstance(data.get("promptFeedback"), dict):
            return None
    elif not isinstance(candidates, list):
        return None
    cid = new_id()
    choices = []
    minted = 0
    for pos, cand in enumerate(candidates):
        parts = _parts(cand)
        if parts is None:
            return None
        texts, calls = [], []
        for part in parts:
            if part.get("thought"):
                continue  # thought summaries are not part of the OpenAI message
            if "text" in part:
                texts.append(part["text"])
            elif "functionCall" in part:
                calls.append(_call(part, f"call_{cid[-12:]}_{minted}"))
                minted += 1
        content = "".join(texts) if texts or not calls else None
        reason = cand.get("finishReason")
        choices.append(oa.message_choice(cand.get("index", pos), content, calls,
                                         _finish(reason if isinstance(reason, str) else None, bool(calls))))
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        choices.append(oa.message_choice(0, "", [], "content_filter"))
    return oa.completion(cid, int(clock()), model, choices, _usage(data.get("usageMetadata")))


def _parts(cand: Any) -> list[dict[str, Any]] | None:
    """A reply candidate's content parts; None if it is not a candidate of that shape."""
    if not isinstance(cand, dict):
        return None
    content = cand.get("content")
    if content is None:
        return []  # a candidate stopped before any content (finishReason SAFETY)
    if not isinstance(content, dict):
        return None
    parts = content.get("parts")
    if parts is None:
        return []
    if not isinstance(parts, list):
        return None
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("text", ""), str) or \
                not isinstance(part.get("functionCall", {}), dict):
            return None
    return parts


def translate_error(status: int, body: bytes) -> bytes:
    """A Google error body (or anything else) -> OpenAI error JSON bytes."""
    try:
        parsed = _json.loads(body)
    except _json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and parsed:  # non-SSE stream errors come as a JSON array
        parsed = parsed[0]
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return oa.error_body(err["message"], oa.error_type(status), None, err.get("status"))
    return oa.error_body(oa.raw_error_message(status, body), oa.error_type(status))


class StreamTranslator(oa.ChunkStream):
    """Gemini `alt=sse` events (each a partial GenerateContentResponse) -> OpenAI chunks."""

    provider = PROVIDER

    def __init__(self, model: str, include_usage: bool, *, clock: oa.Clock = time.time,
                 new_id: oa.IdFactory = oa.new_completion_id) -> None:
        super().__init__(model, include_usage, clock=clock, new_id=new_id)
        self._calls: dict[int, int] = {}  # choice index -> tool calls sent so far
        self._minted = 0

    def _event(self, ev: SSEEvent) -> bytes:
        data = oa.loads_object(ev.data)
        if data is None:
            return b""
        if self.on_usage is not None:  # usageMetadata rides on the events
            self.on_usage(data)
        if isinstance(data.get("error"), dict):
            err = data["error"]
            return self.error_event(err.get("message", "upstream error"), oa.error_type(err.get("code") or 500),
                                    err.get("status"))
        if data.get("usageMetadata"):
            self.usage = _usage(data["usageMetadata"])
        out = [self._candidate(pos, cand) for pos, cand in enumerate(data.get("candidates") or [])]
        if not data.get("candidates") and (data.get("promptFeedback") or {}).get("blockReason"):
            self.finished = True
            out.append(self.chunk({"role": "assistant", "content": ""}, 0, "content_filter"))
        return b"".join(out)

    def _candidate(self, pos: int, cand: dict[str, Any]) -> bytes:
        index = cand.get("index", pos)
        out = []
        if index not in self._calls:
            self._calls[index] = 0
            out.append(self.chunk({"role": "assistant", "content": ""}, index))
        for part in (cand.get("content") or {}).get("parts") or []:
            if part.get("thought"):
                continue
            if part.get("text"):
                out.append(self.chunk({"content": part["text"]}, index))
            elif "functionCall" in part:
                # Gemini sends each call whole, so it becomes one delta with all its arguments.
                call = _call(part, f"call_{self.id[-12:]}_{self._minted}")
                self._minted += 1
                out.append(self.chunk({"tool_calls": [{"index": self._calls[index], **call}]}, index))
                self._calls[index] += 1
        if cand.get("finishReason"):
            self.finished = True
            out.append(self.chunk({}, index, _finish(cand["finishReason"], self._calls[index] > 0)))
        return b"".join(out)
