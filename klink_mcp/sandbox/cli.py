"""`klink-mcp sandbox ...`: serve the sandbox tenant on loopback HTTP until Ctrl-C.

Logs go to stderr; this module never writes to stdout (on stdio, stdout is the MCP protocol)
and never logs the token or the Basic password. It refuses a non-loopback host unless `--allow-remote` is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping

import anyio
from pydantic import SecretStr

from klink_mcp.config import DEFAULT_SANDBOX_TOKEN
from klink_mcp.sandbox.faults import FaultConfig
from klink_mcp.sandbox.server import is_loopback, serve_sandbox
from klink_mcp.sandbox.tenant import SandboxTenant

logger = logging.getLogger("klink_mcp.sandbox")

# Public demo credentials, like the default token: the sandbox accepts both K-LINK auth schemes.
DEFAULT_SANDBOX_BASIC_USER = "sandbox"
DEFAULT_SANDBOX_BASIC_PASSWORD = "sandbox-password"  # noqa: S105 - a documented demo value


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klink-mcp sandbox",
        description="Serve the embedded K-LINK sandbox tenant over HTTP on loopback (Ctrl-C to stop).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to bind, 0 = any free port (default 8765)"
    )
    parser.add_argument(
        "--token",
        default=env.get("KLINK_SANDBOX_TOKEN") or DEFAULT_SANDBOX_TOKEN,
        help="bearer token clients must send (default: $KLINK_SANDBOX_TOKEN or 'sandbox-token')",
    )
    parser.add_argument(
        "--basic-user",
        default=env.get("KLINK_SANDBOX_BASIC_USER") or DEFAULT_SANDBOX_BASIC_USER,
        help="user accepted with Basic auth (default: $KLINK_SANDBOX_BASIC_USER or 'sandbox')",
    )
    parser.add_argument(
        "--basic-password",
        default=env.get("KLINK_SANDBOX_BASIC_PASSWORD") or DEFAULT_SANDBOX_BASIC_PASSWORD,
        help="password accepted with Basic auth (default: $KLINK_SANDBOX_BASIC_PASSWORD or 'sandbox-password')",
    )
    parser.add_argument(
        "--fixture",
        default=env.get("KLINK_SANDBOX_FIXTURE") or None,
        help="JSON fixture describing another tenant (default: $KLINK_SANDBOX_FIXTURE)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the generated data (default 7)")
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    hooks = parser.add_argument_group("webhooks (the sandbox posts signed events like K-LINK does)")
    hooks.add_argument(
        "--webhook-url",
        default=env.get("KLINK_SANDBOX_WEBHOOK_URL"),
        help="POST signed events here on every change, e.g. http://127.0.0.1:8766/webhooks/klink "
        "(env KLINK_SANDBOX_WEBHOOK_URL)",
    )
    hooks.add_argument(
        "--webhook-secret",
        default=env.get("KLINK_WEBHOOK_SECRET"),
        help="signing secret for x-signature (env KLINK_WEBHOOK_SECRET; required with --webhook-url)",
    )
    faults = parser.add_argument_group("fault injection (all off by default)")
    faults.add_argument(
        "--latency", type=float, default=0.0, metavar="SECONDS", help="delay before every answer"
    )
    faults.add_argument(
        "--error-rate", type=float, default=0.0, metavar="P", help="probability of a 500/502/503"
    )
    faults.add_argument(
        "--rate-limit-rate", type=float, default=0.0, metavar="P", help="probability of a 429"
    )
    faults.add_argument(
        "--retry-after", type=float, default=1.0, metavar="SECONDS", help="Retry-After of a 429"
    )
    faults.add_argument(
        "--reset-before-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="probability of a drop before reading",
    )
    faults.add_argument(
        "--reset-after-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="probability of a drop after applying",
    )
    faults.add_argument("--slow-body", type=float, default=0.0, metavar="SECONDS", help="delay of every body")
    faults.add_argument("--fault-seed", type=int, default=0, help="seed of the fault decisions (default 0)")
    return parser


def _ensure_stderr_logging() -> None:
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str]) -> int:
    """Run the sandbox server; returns the process exit code (0 after Ctrl-C, 2 on bad arguments)."""
    parser = build_parser(os.environ)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already wrote its message to stderr
        return int(exc.code or 0)
    _ensure_stderr_logging()
    if not args.allow_remote and not is_loopback(args.host):
        logger.error("refusing to bind non-loopback host %s; pass --allow-remote to allow it", args.host)
        return 2
    try:
        faults = FaultConfig(
            latency_s=args.latency,
            error_rate=args.error_rate,
            rate_limit_rate=args.rate_limit_rate,
            retry_after_s=args.retry_after,
            reset_before_rate=args.reset_before_rate,
            reset_after_rate=args.reset_after_rate,
            slow_body_s=args.slow_body,
            seed=args.fault_seed,
        )
        if args.fixture:
            tenant = SandboxTenant.from_fixture(args.fixture, seed=args.seed)
        else:
            tenant = SandboxTenant.seeded(args.seed if args.seed is not None else 7)
    except (OSError, ValueError) as exc:
        logger.error("cannot start the sandbox: %s", exc)
        return 2
    tenant.faults = faults
    if ":" in args.basic_user or not args.basic_user or not args.basic_password:
        logger.error("--basic-user must be non-empty without ':' and --basic-password non-empty")
        return 2
    tenant.basic_auth = (args.basic_user, SecretStr(args.basic_password))
    emitter = None
    if args.webhook_url:
        if not args.webhook_secret:
            logger.error("--webhook-url needs a signing secret: --webhook-secret or KLINK_WEBHOOK_SECRET")
            return 2
        from klink_mcp.webhooks.emitter import WebhookEmitter

        emitter = WebhookEmitter(args.webhook_url, args.webhook_secret)
        emitter.attach(tenant)

    async def run() -> None:
        if emitter is None:
            await serve()
            return
        async with emitter.running():
            logger.info("posting signed webhook events to %s", args.webhook_url)
            await serve()

    async def serve() -> None:
        async with serve_sandbox(
            tenant, args.host, args.port, args.token, allow_remote=args.allow_remote
        ) as srv:
            logger.info(
                "K-LINK sandbox listening on %s (%d contacts, %d tickets; token: %s; Basic user: %s; faults: %s)",
                srv.url,
                len(tenant.contacts),
                len(tenant.tickets),
                "default demo token" if args.token == DEFAULT_SANDBOX_TOKEN else "custom (hidden)",
                args.basic_user,
                "on" if faults.active else "off",
            )
            await anyio.sleep_forever()

    try:
        anyio.run(run)
    except KeyboardInterrupt:
        logger.info("sandbox stopped")
    except OSError as exc:
        logger.error("cannot serve the sandbox: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
