"""Command-line entry points: serve (stdio default | --http), demo, sandbox, webhooks, doctor, tools.

On stdio, stdout is the MCP protocol: everything human-readable goes to stderr there. The other
commands (demo, doctor, tools) are for a person at a terminal and write their report to stdout.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from klink_mcp import __version__
from klink_mcp.config import ConfigError, Settings, load_settings

logger = logging.getLogger("klink_mcp")

COMMANDS = ("serve", "demo", "sandbox", "webhooks", "doctor", "tools")


def _add_server_options(p: argparse.ArgumentParser, *, in_subcommand: bool = False) -> None:
    # In a subcommand the defaults are suppressed: otherwise `klink-mcp --read-only serve` would
    # have the subcommand's default overwrite the option given before it.
    default = argparse.SUPPRESS if in_subcommand else None
    p.add_argument("--config", default=default, help="TOML config file (also KLINK_CONFIG).")
    p.add_argument("--sandbox", action="store_true", default=default, help="Use the embedded sandbox tenant.")
    p.add_argument("--read-only", action="store_true", default=default, help="Register read tools only.")
    p.add_argument(
        "--toolsets",
        default=default,
        help="Comma-separated allow-list, e.g. contacts,tickets (also KLINK_TOOLSETS).",
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klink-mcp",
        description="MCP server for K-LINK. Without a command: serve over stdio.",
    )
    parser.add_argument("--version", action="version", version=f"klink-mcp {__version__}")
    _add_server_options(parser)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="Serve MCP over stdio (default) or Streamable HTTP (--http).")
    _add_server_options(serve, in_subcommand=True)
    serve.add_argument("--http", action="store_true", help="Serve Streamable HTTP instead of stdio.")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--webhooks-port", type=int, default=None, help="Also run the webhook receiver on this port (stdio)."
    )
    demo = sub.add_parser("demo", help="A scripted assistant session against the sandbox, as a transcript.")
    _add_server_options(demo, in_subcommand=True)
    tools = sub.add_parser("tools", help="Print the tool table.")
    _add_server_options(tools, in_subcommand=True)
    tools.add_argument("--markdown", action="store_true", help="As the README's Markdown table.")
    doctor = sub.add_parser("doctor", help="Check configuration, token and every read endpoint.")
    _add_server_options(doctor, in_subcommand=True)
    sub.add_parser(
        "sandbox", help="Serve the sandbox tenant on loopback HTTP (see `sandbox --help`).", add_help=False
    )
    sub.add_parser(
        "webhooks", help="Run the webhook receiver on its own (see `webhooks --help`).", add_help=False
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    toolsets = tuple(t.strip() for t in args.toolsets.split(",") if t.strip()) if args.toolsets else None
    return load_settings(
        config_file=args.config,
        sandbox=args.sandbox,
        read_only=args.read_only,
        toolsets=toolsets,
        log_level=args.log_level,
    )


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, settings.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `klink-mcp` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Subcommands with their own parsers get the rest of the line untouched.
    if argv and argv[0] == "sandbox":
        from klink_mcp.sandbox.cli import main as sandbox_main

        return int(sandbox_main(argv[1:]))
    if argv and argv[0] == "webhooks":
        from klink_mcp.webhooks.cli import main as webhooks_main

        return int(webhooks_main(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        sys.stderr.write(f"klink-mcp: {exc}\n")
        return 2
    _configure_logging(settings)
    command = args.command or "serve"
    try:
        if command == "serve":
            return _serve(settings, args)
        if command == "demo":
            from klink_mcp.demo import run_demo

            return anyio.run(run_demo, settings)
        if command == "tools":
            from klink_mcp.docs import tool_table

            sys.stdout.write(anyio.run(tool_table, settings, bool(args.markdown)))
            return 0
        if command == "doctor":
            from klink_mcp.doctor import run_doctor

            return anyio.run(run_doctor, settings)
    except ConfigError as exc:
        sys.stderr.write(f"klink-mcp: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {command!r}")
    return 2


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from klink_mcp.server import build_server

    if settings.uses_sandbox:
        sys.stderr.write(
            "klink-mcp: no KLINK_API_TOKEN set - serving the embedded sandbox tenant (demo data)\n"
        )
    mcp = build_server(settings)
    if getattr(args, "http", False):
        from klink_mcp.http_app import serve_http

        host, port = args.host, args.port
        if not is_loopback(host) and settings.http_auth_token is None:
            sys.stderr.write(
                f"klink-mcp: refusing to listen on {host}: beyond loopback every request must carry a bearer "
                "token. Set KLINK_HTTP_AUTH_TOKEN (clients send 'Authorization: Bearer <token>').\n"
            )
            return 2
        shown = f"[{host}]" if ":" in host else host
        sys.stderr.write(
            f"klink-mcp: serving MCP over Streamable HTTP at http://{shown}:{port}/mcp (Ctrl-C to stop)\n"
        )
        anyio.run(serve_http, mcp, settings, host, port)
        return 0
    webhooks_port: Any = getattr(args, "webhooks_port", None)
    if webhooks_port:
        from klink_mcp.http_app import serve_stdio_with_webhooks, webhooks_configured

        if not webhooks_configured(settings):
            sys.stderr.write(
                "klink-mcp: --webhooks-port needs webhook authentication: set KLINK_WEBHOOK_SECRET "
                "(or KLINK_WEBHOOK_AUTH=basic/header with its credentials)\n"
            )
            return 2
        anyio.run(serve_stdio_with_webhooks, mcp, settings, webhooks_port)
        return 0
    from klink_mcp.stdio_transport import run_stdio

    run_stdio(mcp)
    return 0
