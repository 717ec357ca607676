"""Command-line entry points: serve (stdio default | --http), demo, sandbox, webhooks, doctor, tools, config.

On stdio, stdout is the MCP protocol: everything human-readable goes to stderr there. The other
commands (demo, doctor, tools, config) are for a person at a terminal and write their report to stdout.

A bad setting is one line on stderr and exit code 2, never a traceback: the settings are loaded and
what they point at (stores, fixture, port) is checked (`preflight.py`) before anything claims to be
serving.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import typing
from collections.abc import Sequence
from typing import Any

import anyio

from klink_mcp import __version__
from klink_mcp.config import ConfigError, Settings, load_settings

logger = logging.getLogger("klink_mcp")

COMMANDS = ("serve", "demo", "sandbox", "webhooks", "doctor", "tools", "config")
DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) like every other bad setting."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


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
    parser = _OneLineParser(
        prog="klink-mcp",
        description="MCP server for K-LINK. Without a command: serve over stdio.",
    )
    parser.add_argument("--version", action="version", version=f"klink-mcp {__version__}")
    _add_server_options(parser)
    sub = parser.add_subparsers(dest="command", parser_class=_OneLineParser)
    serve = sub.add_parser("serve", help="Serve MCP over stdio (default) or Streamable HTTP (--http).")
    _add_server_options(serve, in_subcommand=True)
    serve.add_argument("--http", action="store_true", help="Serve Streamable HTTP instead of stdio.")
    serve.add_argument(
        "--host", default=None, help=f"HTTP address (with --http; default {DEFAULT_HTTP_HOST})"
    )
    serve.add_argument(
        "--port", type=int, default=None, help=f"HTTP port (with --http; default {DEFAULT_HTTP_PORT})"
    )
    serve.add_argument(
        "--webhooks-port", type=int, default=None, help="Also run the webhook receiver on this port (stdio)."
    )
    demo = sub.add_parser("demo", help="A scripted assistant session against the sandbox, as a transcript.")
    _add_server_options(demo, in_subcommand=True)
    tools = sub.add_parser("tools", help="Print the tool table.")
    _add_server_options(tools, in_subcommand=True)
    tools.add_argument("--markdown", action="store_true", help="As the README's Markdown table.")
    doctor = sub.add_parser("doctor", help="Check configuration, credentials and every read endpoint.")
    _add_server_options(doctor, in_subcommand=True)
    config = sub.add_parser(
        "config", help="Print the effective settings (secrets hidden) or the settings table."
    )
    _add_server_options(config, in_subcommand=True)
    config.add_argument("--markdown", action="store_true", help="The README's configuration table.")
    sub.add_parser(
        "sandbox", help="Serve the sandbox tenant on loopback HTTP (see `sandbox --help`).", add_help=False
    )
    sub.add_parser(
        "webhooks", help="Run the webhook receiver on its own (see `webhooks --help`).", add_help=False
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings of a command line (flags win over the environment and the TOML file).

    Raises:
        ConfigError: one line naming the bad setting.
    """
    return load_settings(
        config_file=args.config,
        sandbox=args.sandbox or None,
        read_only=args.read_only or None,
        toolsets=args.toolsets,
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
    """Entry point of the `klink-mcp` console script; returns the exit code (2 for a bad setting)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Subcommands with their own parsers get the rest of the line untouched.
    if argv and argv[0] == "sandbox":
        from klink_mcp.sandbox.cli import main as sandbox_main

        return int(sandbox_main(argv[1:]))
    if argv and argv[0] == "webhooks":
        from klink_mcp.webhooks.cli import main as webhooks_main

        return int(webhooks_main(argv[1:]))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already written
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    command = args.command or "serve"
    try:
        if command == "config" and args.markdown:
            from klink_mcp.config import settings_table

            sys.stdout.write(settings_table())
            return 0
        settings = settings_from_args(args)
        _configure_logging(settings)
        if command == "serve":
            return _serve(settings, args)
        if command == "config":
            from klink_mcp.config import settings_lines

            sys.stdout.write(settings_lines(settings))
            return 0
        if command == "doctor":
            from klink_mcp.doctor import run_doctor

            return anyio.run(run_doctor, settings)
        _preflight(settings)
        if command == "demo":
            from klink_mcp.demo import run_demo

            return anyio.run(run_demo, settings)
        if command == "tools":
            from klink_mcp.docs import tool_table
            from klink_mcp.guard.policy import guarded_tools

            guarded_tools(settings)  # the table is built without a server: check KLINK_CONFIRM_TOOLS here

            sys.stdout.write(anyio.run(tool_table, settings, bool(args.markdown)))
            return 0
    except ConfigError as exc:
        sys.stderr.write(f"klink-mcp: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    sys.stderr.write(f"klink-mcp: unknown command {command!r}\n")
    return 2


def _preflight(settings: Settings) -> None:
    """Check what the settings point at (overrides, fixture, audit log, events database).

    Raises:
        ConfigError: one line naming the setting.
    """
    from klink_mcp.preflight import check_events_store, check_settings

    check_settings(settings)
    anyio.run(check_events_store, settings)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve over stdio, or Streamable HTTP with --http.

    Raises:
        ConfigError: a bad setting, a --host/--port without --http, a taken port.
    """
    http = bool(getattr(args, "http", False))
    host: str | None = getattr(args, "host", None)
    port: int | None = getattr(args, "port", None)
    if not http and (host is not None or port is not None):
        flag = "--port" if port is not None else "--host"
        raise ConfigError(f"{flag} applies to HTTP only: add --http (without it klink-mcp serves stdio)")
    webhooks_port: Any = getattr(args, "webhooks_port", None)
    if http:
        host = host or DEFAULT_HTTP_HOST
        port = DEFAULT_HTTP_PORT if port is None else port
        oauth = settings.oauth_issuer is not None and settings.resource_url is not None
        if not is_loopback(host) and settings.http_auth_token is None and not oauth:
            raise ConfigError(
                f"refusing to listen on {host}: beyond loopback every request must carry a bearer "
                "token. Set KLINK_HTTP_AUTH_TOKEN (clients send 'Authorization: Bearer <token>'), or "
                "KLINK_OAUTH_ISSUER and KLINK_RESOURCE_URL (OAuth access tokens from your identity provider)."
            )
    if webhooks_port:
        from klink_mcp.http_app import webhooks_configured

        if not webhooks_configured(settings):
            raise ConfigError(
                "--webhooks-port needs webhook authentication: set KLINK_WEBHOOK_SECRET "
                "(or KLINK_WEBHOOK_AUTH=basic/header with its credentials)"
            )
    _preflight(settings)
    from klink_mcp.preflight import check_port_free

    if http:
        assert host is not None and port is not None
        check_port_free(host, port)
    if webhooks_port:
        check_port_free(DEFAULT_HTTP_HOST, int(webhooks_port), what="--webhooks-port")

    from klink_mcp.server import build_server

    mcp = build_server(settings)
    if settings.uses_sandbox:
        sys.stderr.write(
            "klink-mcp: no K-LINK credentials set - serving the embedded sandbox tenant (demo data)\n"
        )
    if http:
        from klink_mcp.http_app import serve_http

        assert host is not None and port is not None
        shown = f"[{host}]" if ":" in host else host
        sys.stderr.write(
            f"klink-mcp: serving MCP over Streamable HTTP at http://{shown}:{port}/mcp (Ctrl-C to stop)\n"
        )
        anyio.run(serve_http, mcp, settings, host, port)
        return 0
    if webhooks_port:
        from klink_mcp.http_app import serve_stdio_with_webhooks

        anyio.run(serve_stdio_with_webhooks, mcp, settings, webhooks_port)
        return 0
    from klink_mcp.stdio_transport import run_stdio

    run_stdio(mcp)
    return 0
