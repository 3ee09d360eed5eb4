"""The one JSON module: nothing else in aigw imports orjson or json."""

from __future__ import annotations

import json
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError
# Raised by `dumps` for a value it cannot write, e.g. nested deeper than 254 levels (orjson
# parses 1024): a TypeError, so the callers that serialise client input catch it.
JSONEncodeError = orjson.JSONEncodeError


# orjson's own functions, not wrappers: a parse or a dump is on every request's path (a
# stream translator's several times), and a Python frame around each is measurable there.
# loads(JSON bytes or str) -> Any, raises JSONDecodeError (a ValueError).
loads = orjson.loads
# dumps(obj) -> compact JSON bytes.
dumps = orjson.dumps


def dumps_pretty(obj: Any) -> bytes:
    """Serialise for humans (CLI output)."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


_FIRST = json.JSONDecoder()


def loads_first(text: str) -> Any:
    """The JSON value at the start of `text`, ignoring whatever follows it (orjson parses
    whole documents only); raises ValueError."""
    return _FIRST.raw_decode(text)[0]
