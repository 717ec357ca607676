"""Start-up checks of what the settings point at: every problem is one `ConfigError` line, found before
anything claims to be serving.

`load_settings` checks values; this module checks the things those values name: the catalogue
overrides, the sandbox fixture's content, that the audit log can be appended to, that the events
database can be opened, and that a listening port is free. The CLI turns a `ConfigError` into one
line on stderr and exit code 2; `doctor` reports the same problems as lines of its report.

This module must not import `mcp`, and must not leave anything open: each check closes what it opened.
"""

from __future__ import annotations

import errno
import socket

from klink_mcp.config import ConfigError, Settings


def check_settings(settings: Settings) -> None:
    """Check the catalogue overrides, the sandbox fixture and the audit log.

    Raises:
        ConfigError: one line naming the setting and what is wrong with it.
    """
    from klink_mcp.api.catalog import Catalog

    Catalog.from_settings(settings)
    if settings.uses_sandbox and settings.sandbox_fixture is not None:
        from klink_mcp.sandbox import SandboxTenant

        try:
            SandboxTenant.from_fixture(settings.sandbox_fixture)
        except OSError as exc:
            raise ConfigError(
                f"KLINK_SANDBOX_FIXTURE={str(settings.sandbox_fixture)!r}: cannot be read: {exc.strerror or exc}"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(
                f"KLINK_SANDBOX_FIXTURE={str(settings.sandbox_fixture)!r}: not a usable fixture: "
                f"{' '.join(str(exc).split())[:200]}"
            ) from None
    if settings.audit_log is not None:
        from klink_mcp.guard.audit import AuditLog

        try:
            AuditLog(settings.audit_log)
        except OSError as exc:
            raise ConfigError(
                f"KLINK_AUDIT_LOG={str(settings.audit_log)!r}: cannot be written: {exc.strerror or exc}"
            ) from None


async def check_events_store(settings: Settings) -> str:
    """Open (creating if needed) and close the events database the settings select; returns its path.

    Raises:
        ConfigError: the database cannot be created or opened.
    """
    from klink_mcp.webhooks.store import EventStore, StoreError, events_db_path

    path = events_db_path(settings)
    try:
        store = await EventStore.open(path, retention=settings.events_retention)
    except StoreError as exc:
        cause = exc.__cause__
        reason = str(cause) if cause is not None else str(exc)
        raise ConfigError(
            f"KLINK_EVENTS_DB={path!r}: the events database cannot be opened: {reason}"
        ) from None
    await store.close()
    return path


def check_port_free(host: str, port: int, *, what: str = "--port") -> None:
    """Bind and release (host, port) the way the HTTP server will, so a taken port is found first.

    Raises:
        ConfigError: the address cannot be resolved or bound (in use, not ours, no permission).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{what}: cannot resolve host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # As uvicorn does: a port left in TIME_WAIT by a previous run is free to use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            reason = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise ConfigError(f"{what}: cannot listen on {host}:{port}: {reason}") from None
