"""`aigw serve | check-config | providers`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
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
    s.add_argument("--workers", type=_workers, help="worker processes: a number or 'auto' "
                   "(one per core); overrides server.workers (default 1: a single process)")
    s.add_argument("--liveness-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    w = sub.add_parser("worker", help="internal: one worker process of `serve --workers N`")
    w.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    w.add_argument("--control-fd", type=int, required=True, help="inherited control socket")
    w.add_argument("--config", help="the config snapshot the supervisor validated")
    w.add_argument("--source", help="the file the snapshot came from (for messages)")
    w.add_argument("--metrics-dir", help="the directory where workers share metric snapshots")
    w.add_argument("--worker-id", type=int, default=0, help="this worker's number")
    c = sub.add_parser("check-config", help="validate a config file and print it, secrets masked")
    c.add_argument("file")
    sub.add_parser("providers", help="list the provider registry")
    return p


def _load(path: str | None) -> config_mod.Config:
    return config_mod.load(path)


def _workers(text: str) -> int:
    if text == "auto":
        from aigw.supervisor import cpu_count

        return cpu_count()
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number or 'auto'") from None
    if not 1 <= n <= 1024:
        raise argparse.ArgumentTypeError("between 1 and 1024")
    return n


def _serve(args: argparse.Namespace, cfg: config_mod.Config, path: str | None) -> int:
    """Run one process, or a supervisor with workers; logs go through writer threads."""
    from aigw import accesslog  # uvloop and aiohttp only for serving
    from aigw.server import ServeOptions, serve

    listener = accesslog.configure(cfg.log)
    try:
        if args.command == "worker":
            opts = ServeOptions(config_path=path,
                                sock=socket.socket(fileno=args.fd),
                                control=socket.socket(fileno=args.control_fd),
                                metrics_dir=args.metrics_dir, worker_id=args.worker_id)
            serve(cfg, opts)
            return 0
        workers = args.workers or cfg.server.workers
        if workers > 1:
            import asyncio

            from aigw.supervisor import Supervisor

            sup = Supervisor(cfg, path, workers, args.host, args.port, args.liveness_timeout)
            return asyncio.run(sup.run())
        serve(cfg, ServeOptions(config_path=path, host=args.host, port=args.port))
        return 0
    except ConfigError as exc:  # found at start-up, e.g. a provider pointing at the gateway
        sys.stderr.write(f"aigw: config error: {exc}\n")
        return 2
    finally:
        listener.stop()


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
        if args.command == "worker":
            path = args.source
            cfg = _load(args.config)
            if args.config is not None:
                cfg = dataclasses.replace(cfg, source=args.source or args.config)
        else:
            path = args.config or os.environ.get("AIGW_CONFIG")
            cfg = _load(path)
    except ConfigError as exc:
        sys.stderr.write(f"aigw: config error: {exc}\n")
        return 2
    return _serve(args, cfg, path)
