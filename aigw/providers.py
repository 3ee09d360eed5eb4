"""The provider registry: every built-in provider is a row of data.

A provider is its slug, its upstream base URL, the header its key goes in (with the
scheme prefix, e.g. "Bearer "), the wire format its API speaks (for compat translation,
token usage and in-band error detection) and any extra header it always wants.
A new OpenAI-compatible provider is one `_p(...)` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What the registry knows of one provider (before config overrides)."""

    slug: str
    base_url: str
    auth_header: str = "authorization"
    auth_scheme: str = "Bearer "
    wire: str = "openai"  # openai | anthropic | google | workers-ai | cohere | other
    # Leading path prefixes that route to a sibling of the base: the base's last path
    # segment is replaced (Workers AI: `.../ai/run` -> `.../ai/v1` for `v1/...` paths).
    prefix_bases: tuple[tuple[str, str], ...] = ()
    # A leading segment the client may repeat (`v1/` on bases ending in /v1, Workers AI `run/`).
    dup_segment: str = ""
    default_headers: tuple[tuple[str, str], ...] = field(default=())
    # Placeholders in base_url taken from leading path segments, each with the regex a
    # segment must match in full (so the host stays under the provider's own domain).
    path_params: tuple[tuple[str, str], ...] = ()


def _p(slug: str, base: str, header: str = "authorization", scheme: str = "Bearer ",
       wire: str = "openai", **kw: object) -> ProviderSpec:
    return ProviderSpec(slug, base, header, scheme, wire, **kw)  # type: ignore[arg-type]


_CF_ACCOUNT = "https://api.cloudflare.com/client/v4/accounts/{account}/ai"

BUILTIN: dict[str, ProviderSpec] = {
    p.slug: p
    for p in (
        _p("openai", "https://api.openai.com/v1"),
        _p("anthropic", "https://api.anthropic.com", "x-api-key", "", "anthropic",
           default_headers=(("anthropic-version", "2023-06-01"),)),
        _p("workers-ai", _CF_ACCOUNT + "/run", wire="workers-ai",
           prefix_bases=(("v1/", "v1"),), dup_segment="run"),
        _p("azure-openai", "https://{resource}.openai.azure.com/openai/deployments", "api-key", "",
           path_params=(("resource", r"[a-z0-9][a-z0-9-]{0,62}"),)),
        _p("aws-bedrock", "https://{service}.{region}.amazonaws.com", wire="other",
           path_params=(("service", r"bedrock-runtime|bedrock-mantle|bedrock-agent-runtime"),
                        ("region", r"[a-z]{2}(?:-gov)?-[a-z]+-[0-9]"))),
        _p("google-ai-studio", "https://generativelanguage.googleapis.com", "x-goog-api-key", "",
           "google"),
        _p("google-vertex-ai", "https://aiplatform.googleapis.com", wire="google"),
        _p("groq", "https://api.groq.com/openai/v1"),
        _p("mistral", "https://api.mistral.ai"),
        _p("cohere", "https://api.cohere.ai", wire="cohere"),
        _p("huggingface", "https://api-inference.huggingface.co/models", wire="other"),
        _p("replicate", "https://api.replicate.com/v1", wire="other"),
        _p("perplexity-ai", "https://api.perplexity.ai"),
        _p("deepseek", "https://api.deepseek.com"),
        _p("openrouter", "https://openrouter.ai/api"),
        _p("cerebras", "https://api.cerebras.ai/v1"),
        _p("grok", "https://api.x.ai"),
        _p("baseten", "https://inference.baseten.co"),
        _p("parallel", "https://api.parallel.ai", "x-api-key", "", "other"),
        _p("fal", "https://fal.run", scheme="Key ", wire="other"),
        _p("ideogram", "https://api.ideogram.ai", "api-key", "", "other"),
        _p("cartesia", "https://api.cartesia.ai", "x-api-key", "", "other"),
        _p("elevenlabs", "https://api.elevenlabs.io", "xi-api-key", "", "other"),
        _p("deepgram", "https://api.deepgram.com", scheme="Token ", wire="other"),
        _p("adobe-firefly", "https://firefly-api.adobe.io", wire="other"),
    )
}

# Headers that carry a provider credential: a client sending any of them "brings its own key".
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "api-key", "xi-api-key"}
)
