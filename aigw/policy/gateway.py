"""Per-gateway policy flags, computed once at load so an unconfigured gateway pays nothing."""

from __future__ import annotations

from dataclasses import dataclass

from aigw.config import Config, GatewaySpec
from aigw.policy.auth import AuthCheck


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    """What the pipeline asks per request, as plain attributes."""

    spec: GatewaySpec
    auth: AuthCheck | None  # None: authentication off, the header is ignored
    has_keys: bool
    limit: int  # 0: no rate limit
    interval: float
    technique: str

    @classmethod
    def of(cls, gw: GatewaySpec) -> GatewayPolicy:
        """Precompute the flags of one gateway."""
        limited = gw.rate_limiting_limit > 0 and gw.rate_limiting_interval > 0
        return cls(
            spec=gw,
            auth=AuthCheck(gw) if gw.authentication else None,
            has_keys=bool(gw.keys),
            limit=gw.rate_limiting_limit if limited else 0,
            interval=float(gw.rate_limiting_interval),
            technique=gw.rate_limiting_technique,
        )


def build_policies(config: Config) -> tuple[dict[str, GatewayPolicy], GatewayPolicy]:
    """Policies of the configured gateways, and the one used when none are configured."""
    return ({gid: GatewayPolicy.of(gw) for gid, gw in config.gateways.items()},
            GatewayPolicy.of(config.default_gateway))
