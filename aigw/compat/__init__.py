"""The compat endpoint's translation layer: OpenAI chat completions <-> foreign wire formats.

Pure functions over bytes and dicts, no I/O. One module per wire pair, named
`openai_<upstream>`; OpenAI-wire providers never come here (they are pass-through after the
model rewrite). The HTTP layer picks a module from `TRANSLATORS` by wire name.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol

from aigw.compat import openai_anthropic, openai_google, openai_workersai
from aigw.compat._openai import CompatError


class StreamTranslatorProtocol(Protocol):
    """Incremental upstream-SSE -> OpenAI-SSE translator, one per streamed response."""

    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...
    def error_event(self, message: str) -> bytes: ...


class Translator(Protocol):
    """What each `openai_<upstream>` module exposes."""

    def build_request(self, body: dict[str, Any], model: str, stream: bool) -> tuple[str, dict[str, str], bytes]: ...
    def translate_response(self, status: int, body: bytes, model: str, *,
                           on_parsed: Any = None) -> bytes | None: ...  # None: not a reply
    def translate_error(self, status: int, body: bytes) -> bytes: ...
    def StreamTranslator(self, model: str, include_usage: bool) -> StreamTranslatorProtocol: ...  # noqa: N802


# Keyed by wire name, not provider slug: google-ai-studio uses "google", workers-ai "workers-ai".
TRANSLATORS: dict[str, ModuleType] = {
    "anthropic": openai_anthropic,
    "google": openai_google,
    "workers-ai": openai_workersai,
}

__all__ = ["TRANSLATORS", "CompatError", "StreamTranslatorProtocol", "Translator"]
