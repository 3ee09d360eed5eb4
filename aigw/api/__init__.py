"""Control-plane routes: the Cloudflare Logs API, analytics and /metrics."""

from __future__ import annotations

from aiohttp import web

from aigw.api.logs import API_PREFIX, handle_api, split_api_path
from aigw.metrics import CONTENT_TYPE, Registry

__all__ = ["handle_api", "split_api_path", "API_PREFIX", "metrics_response"]


def metrics_response(registry: Registry) -> web.Response:
    """`GET /metrics`: the Prometheus text exposition."""
    return web.Response(body=registry.render(), headers={"Content-Type": CONTENT_TYPE})
