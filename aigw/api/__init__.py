"""Control-plane routes: the Cloudflare Logs API, analytics and /metrics."""

from __future__ import annotations

from aiohttp import web

from aigw.api.logs import API_PREFIX, handle_api, split_api_path
from aigw.metrics import CONTENT_TYPE, MetricsShare, Registry

__all__ = ["handle_api", "split_api_path", "API_PREFIX", "metrics_response"]


def metrics_response(registry: Registry, share: MetricsShare | None = None) -> web.Response:
    """`GET /metrics`: the Prometheus text exposition (a worker's: every worker's totals)."""
    body = registry.render() if share is None else share.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
