"""The universal endpoint's body: a JSON array of steps (a single object is one step),
validated as a whole before anything goes upstream.

Step: {provider, endpoint, headers?, query?, config?, authorization?}
- `query` is the JSON body POSTed to `{provider base}/{endpoint}`;
- only the step's own headers go upstream (plus `content-type: application/json`);
- the step's `cf-aig-*` headers override the outer request's, and `config` overrides both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aigw import _json
from aigw.errors import InvalidBody, InvalidJSON, InvalidProvider
from aigw.headers import _DROP_UP, check_step_headers
from aigw.paths import check_path, check_query
from aigw.retry import RetryPolicy, from_headers, from_step_config

class Step:
    """A validated step: where it goes, what it sends, how it retries."""

    __slots__ = ("index", "provider", "path", "query", "headers", "cf_headers", "body",
                 "policy", "raw")

    def __init__(self, index: int, provider: str, path: str, query: str,
                 headers: list[tuple[bytes, bytes]], cf_headers: dict[str, str], body: bytes,
                 policy: RetryPolicy, raw: dict[str, Any]) -> None:
        self.index = index
        self.provider = provider
        self.path = path
        self.query = query
        self.headers = headers
        self.cf_headers = cf_headers
        self.body = body
        self.policy = policy
        self.raw = raw


def parse_steps(body: bytes, max_steps: int) -> list[dict[str, Any]]:
    """The body as a list of step objects (shape only)."""
    try:
        doc = _json.loads(body)
    except ValueError:
        raise InvalidJSON() from None
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise InvalidBody("Universal request body must be a JSON array of steps or one step object")
    if not doc:
        raise InvalidBody("Universal request body is an empty array")
    if len(doc) > max_steps:
        raise InvalidBody(f"Too many steps: {len(doc)} (server.max_steps is {max_steps})")
    return doc


def build_step(i: int, raw: Any, base_policy: RetryPolicy, outer: Callable[[str], str | None],
               known: Callable[[str], bool]) -> Step:
    """Validate one step; raises a BadRequest naming `steps[i].field`."""
    path = f"steps[{i}]"
    if not isinstance(raw, dict):
        raise InvalidBody(f"{path}: must be an object")
    provider = raw.get("provider")
    endpoint = raw.get("endpoint")
    if not isinstance(provider, str) or not provider:
        raise InvalidBody(f"{path}.provider: required, a provider slug")
    if not isinstance(endpoint, str):
        raise InvalidBody(f"{path}.endpoint: required, a path under the provider")
    if not known(provider):
        raise InvalidProvider(f"Invalid provider: {path}.provider")
    ep_path, _, ep_query = endpoint.lstrip("/").partition("?") if not endpoint.startswith(
        "//") else (endpoint, "", "")
    check_path(ep_path)
    check_query(ep_query)
    pairs = check_step_headers(f"{path}.headers", raw.get("headers"))
    auth = raw.get("authorization")
    if auth is not None:
        pairs = check_step_headers(f"{path}.authorization", {"Authorization": auth}) + pairs
    headers: dict[str, tuple[bytes, bytes]] = {}
    cf: dict[str, str] = {}
    for name, value in pairs:
        low = name.lower()
        if low.startswith("cf-aig-"):
            cf[low] = value
        elif low not in _DROP_UP:
            # later wins: `headers.Authorization` beats the `authorization` field
            headers[low] = (name.encode("latin-1"), value.encode("utf-8"))
    if "content-type" not in headers:
        headers["content-type"] = (b"Content-Type", b"application/json")

    def lookup(name: str) -> str | None:
        value = cf.get(name)
        return value if value is not None else outer(name)

    policy = from_headers(base_policy, lookup)
    policy = from_step_config(policy, f"{path}.config", raw.get("config"))
    query = raw.get("query")
    try:
        body = b"" if query is None else _json.dumps(query)
    except _json.JSONEncodeError:
        raise InvalidBody(f"{path}.query: nested too deeply to forward (at most 254 levels)") from None
    return Step(i, provider, ep_path, ep_query, list(headers.values()), cf, body, policy, raw)
