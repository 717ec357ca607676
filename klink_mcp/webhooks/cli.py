"""`klink-mcp webhooks`: run the K-LINK webhook receiver as its own process.

Listens on 127.0.0.1:8766 by default; a non-loopback `--host` needs `--allow-remote` and an
authenticating `webhook_auth` mode with its secret configured (`webhook_auth=none` is loopback-only).
Events go to the shared events database (`KLINK_EVENTS_DB`, default under the user's data directory),
where a stdio server in another process can list them (and announce them with `EventHub.follow`).

Logs go to stderr only; nothing is ever written to stdout. SIGINT/SIGTERM stop the receiver
gracefully (requests in flight are answered) and the command exits 0.

Exit codes: 0 stopped normally, 1 runtime failure (the database cannot be opened), 2 bad usage or
unsafe configuration.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import anyio

from klink_mcp.config import ConfigError, Settings, load_settings
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.receiver import DEFAULT_PORT, check_bind, run_receiver
from klink_mcp.webhooks.store import EventStore, StoreError, events_db_path

__all__ = ["build_parser", "main"]

logger = logging.getLogger("klink_mcp.webhooks")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `klink-mcp webhooks` (exposed so the top-level CLI can reuse it)."""
    parser = argparse.ArgumentParser(
        prog="klink-mcp webhooks",
        description="Receive K-LINK webhooks: verify, store durably (deduplicated) and publish them.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0 = any free port)"
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (requires an authenticating webhook_auth mode with its secret)",
    )
    parser.add_argument("--config", help="TOML settings file (default: $KLINK_CONFIG)")
    parser.add_argument(
        "--events-db", help="events database file (default: $KLINK_EVENTS_DB or the data dir)"
    )
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="stderr log level (default: INFO)"
    )
    return parser


def _configure_logging(settings: Settings, flag: str | None) -> None:
    # A receiver is a long-running service: INFO (one line per event, no payloads) unless asked otherwise.
    level = flag or (settings.log_level if "log_level" in settings.model_fields_set else "INFO")
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("uvicorn.error").setLevel(max(logging.getLevelName(level), logging.WARNING))


async def _serve(settings: Settings, host: str, port: int, allow_remote: bool) -> None:
    store = EventStore.from_settings(settings)
    await store.connect()  # fail now, not on the first delivery
    logger.info("events database: %s (%d events kept at most)", store.path, settings.events_retention)
    try:
        hub = EventHub(store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_signal, tg.cancel_scope)
            await run_receiver(settings, hub, host, port, allow_remote=allow_remote)
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    try:
        receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
    except NotImplementedError:  # Windows: Ctrl-C arrives as KeyboardInterrupt instead
        return
    with receiver as signals:
        async for signum in signals:
            logger.info("received %s; shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


def main(argv: Sequence[str] | None = None) -> int:
    """Run the receiver until SIGINT/SIGTERM. Returns the process exit code."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        settings = load_settings(config_file=args.config, events_db=args.events_db)
    except ConfigError as exc:
        logging.basicConfig(stream=sys.stderr, level="INFO")
        logger.error("%s", exc)
        return 2
    _configure_logging(settings, args.log_level)
    if not 0 <= args.port <= 65535:
        logger.error("--port must be between 0 and 65535")
        return 2
    try:
        check_bind(settings, args.host, allow_remote=args.allow_remote)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    logger.debug("events database path: %s", events_db_path(settings))
    code = 0
    # except*: failures inside task groups arrive wrapped in exception groups.
    try:
        anyio.run(_serve, settings, args.host, args.port, args.allow_remote)
    except* ConfigError as group:  # e.g. the port is already in use
        for problem in group.exceptions:
            logger.error("%s", problem)
        code = 2
    except* StoreError as group:
        for failure in group.exceptions:
            logger.error("%s", failure)
        code = 1
    except* KeyboardInterrupt:
        pass
    logger.info("webhook receiver stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
