"""`aigw serve | check-config | providers`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aigw import __version__, _json
from aigw import config as config_mod
from aigw.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aigw", description="A self-hosted AI gateway "
                                "speaking Cloudflare AI Gateway's wire API.")
    p.add_argument("--version", action="version", version=f"aigw {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", help="TOML config file (default: $AIGW_CONFIG, else built-in "
                   "defaults)")
    s.add_argument("--host", help="listen address (overrides server.host)")
    s.add_argument("--port", type=int, help="listen port (overrides server.port)")
    c = sub.add_parser("check-config", help="validate a config file and print it, secrets masked")
    c.add_argument("file")
    sub.add_parser("providers", help="list the provider registry")
    return p


def _load(path: str | None) -> config_mod.Config:
    return config_mod.load(path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `aigw` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            cfg = _load(args.file)
            sys.stdout.write(_json.dumps_pretty(config_mod.masked(cfg)).decode() + "\n")
            return 0
        if args.command == "providers":
            cfg = _load(os.environ.get("AIGW_CONFIG"))
            for slug, p in sorted(cfg.providers.items()):
                auth = f"{p.auth_header}: {p.auth_scheme}<key>".replace(": <", ": <")
                sys.stdout.write(f"{slug:<18} {p.base_url:<72} {auth}\n")
            return 0
        cfg = _load(args.config or os.environ.get("AIGW_CONFIG"))
    except ConfigError as exc:
        sys.stderr.write(f"aigw: config error: {exc}\n")
        return 2
    logging.basicConfig(level=cfg.log.level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from aigw.server import serve  # uvloop and aiohttp only for serving

    try:
        serve(cfg, args.host, args.port)
    except ConfigError as exc:  # found at start-up, e.g. a provider pointing at the gateway
        sys.stderr.write(f"aigw: config error: {exc}\n")
        return 2
    return 0
