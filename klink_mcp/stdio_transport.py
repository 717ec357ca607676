"""A thread-free stdio transport for the MCP server (POSIX pipes and sockets, asyncio).

Why: the SDK's `mcp.server.stdio.stdio_server()` (mcp 2.3.0) wraps stdin and stdout in
`anyio.wrap_file`, so every line read and every write+flush hops to a worker thread, about 0.5 ms
per call on the benchmark machine (BENCHMARKS.md, note 1b). Here fd 0 and fd 1 are served on the
event loop itself (`loop.connect_read_pipe` / `loop.connect_write_pipe`), and `stdio_streams()`
yields the same `(read_stream, write_stream)` pair the SDK yields, so `Server.run()` cannot tell
them apart.

Kept from the SDK:
* Framing: one JSON-RPC message per line, UTF-8; a line that does not parse (or does not validate)
  becomes an `Exception` item on the read stream, and the server goes on with the next line.
  Invalid UTF-8 is replaced with U+FFFD before parsing, as the SDK's `errors="replace"` does. A
  last line without a newline before EOF is still parsed.
* stdout is the protocol: while serving, fd 1 points at stderr and fd 0 at the null device, so
  stray output (a `print`, a C library, a child process) never reaches the wire and children read
  EOF; both are restored on exit. A second concurrent claim of fds 0/1 raises RuntimeError.
* EOF on stdin ends the read stream: the server returns and the process exits 0.
* Backpressure: the writer waits (drain) while the client does not read; the reader stops
  reading the pipe while parsed lines wait for the server.

Differences, on purpose:
* Whitespace-only lines are skipped (the SDK reports them as a parse error that the server only
  logs at debug level).
* A line longer than `max_line_bytes` (64 MiB by default) is reported as an `Exception` item and
  skipped up to its newline, instead of being buffered whatever its size.
* When the client closes our stdout, the session ends like an EOF on stdin (the SDK raises
  BrokenPipeError out of the server). Messages still coming from the server are dropped.
* At EOF on stdin, requests already read are answered before the read stream ends (for up to
  10 s). The server cancels whatever is still running when its read stream ends, so without this
  `printf '<requests>' | klink-mcp` would lose every answer still in flight. The SDK's transport
  mostly got them out only because its threaded EOF arrived late.

Falls back to the SDK's transport (threads) where this one cannot serve: on Windows, off the
asyncio backend, when fd 0 or fd 1 is not a pipe or socket (a TTY - non-blocking mode would leak to
the shell sharing it -, a regular file, /dev/null), when `sys.stdin`/`sys.stdout` are not backed by
fds 0/1, or when fd 0 and fd 1 are one and the same socket (asyncio's write-pipe transport takes
readable data on its fd as "closed by peer").

This module must not write to stdout (nothing but protocol lines may reach fd 1), must not start
threads, and knows nothing about K-LINK.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage

from klink_mcp.sdk_adapter import (
    ContextReceiveStream,
    ContextSendStream,
    inbound_stream_pair,
    outbound_stream_pair,
    run_on_streams,
)

if TYPE_CHECKING:
    from mcp.server import MCPServer

logger = logging.getLogger("klink_mcp.stdio")

MAX_LINE_BYTES = 64 * 1024 * 1024
"""Longest accepted message line (bytes, newline excluded)."""

# Parsed-but-not-taken lines the reader may hold before it stops reading the pipe. Each line also
# counts a fixed overhead so that a flood of tiny lines pauses the pipe too.
_READ_HIGH_WATER = 1024 * 1024
_LINE_OVERHEAD = 256
# How long closing waits for the client to take what is left in the write buffer.
_FLUSH_TIMEOUT_S = 5.0
# How long EOF on stdin waits for the answers to requests already read.
_EOF_GRACE_S = 10.0

StdioStreams = tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]

_claim_lock = threading.Lock()
_std_fds_claimed = False


def fallback_reason(stdin_fd: int = 0, stdout_fd: int = 1) -> str | None:
    """Why the thread-free transport cannot serve these fds (then the SDK's transport is used), or None.

    Only looks at the fds and the platform; whether the running event loop is asyncio is checked
    by `stdio_streams()` itself.
    """
    if sys.platform == "win32":
        return "Windows"
    identities = []
    for name, fd in (("stdin", stdin_fd), ("stdout", stdout_fd)):
        try:
            st = os.fstat(fd)
        except OSError as exc:
            return f"{name} (fd {fd}) cannot be inspected ({exc.strerror})"
        if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)):
            return f"{name} (fd {fd}) is {_kind(fd, st.st_mode)}"
        identities.append((st.st_dev, st.st_ino))
    if identities[0] == identities[1]:
        return "stdin and stdout are the same socket or pipe"
    return None


def _kind(fd: int, mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a terminal" if os.isatty(fd) else "a character device, not a pipe or socket"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "neither a pipe nor a socket"


def _backed_by(stream: Any, fd: int) -> bool:
    try:
        return bool(stream.buffer.fileno() == fd)
    except (AttributeError, OSError, ValueError):
        return False


@asynccontextmanager
async def stdio_streams(
    *,
    stdin_fd: int | None = None,
    stdout_fd: int | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> AsyncIterator[StdioStreams]:
    """Serve MCP over stdin/stdout without threads; yields `(read_stream, write_stream)` like the SDK.

    Without arguments this claims the process's fds 0 and 1 (see the module docstring) and falls
    back to `mcp.server.stdio.stdio_server()` where it cannot serve them. With `stdin_fd` and
    `stdout_fd` (both, e.g. the ends of `os.pipe()` pairs) it serves those fds as they are: no
    claim, no fallback; they are left open and in their original blocking mode on exit.

    Raises:
        ValueError: only one of `stdin_fd`/`stdout_fd` was given, `max_line_bytes` is not
            positive, or the explicit fds are not pipes or sockets.
        RuntimeError: fds 0/1 are already claimed by another `stdio_streams()` in this process.
        OSError: fds 0/1 could not be duplicated or diverted.
    """
    if (stdin_fd is None) != (stdout_fd is None):
        raise ValueError("give both stdin_fd and stdout_fd, or neither")
    if max_line_bytes <= 0:
        raise ValueError("max_line_bytes must be positive")
    if stdin_fd is not None and stdout_fd is not None:
        reason = fallback_reason(stdin_fd, stdout_fd)
        if reason is not None:
            raise ValueError(f"cannot serve these fds without threads: {reason}")
        async with _serve_fds(stdin_fd, stdout_fd, max_line_bytes) as streams:
            yield streams
        return

    reason = _process_fallback_reason()
    if reason is not None:
        from mcp.server.stdio import stdio_server

        logger.debug("stdio: using the SDK's threaded transport (%s)", reason)
        async with stdio_server() as sdk_streams:
            yield sdk_streams
        return
    logger.debug("stdio: using the thread-free transport")
    with _claimed_std_fds() as (wire_in, wire_out):
        async with _serve_fds(wire_in, wire_out, max_line_bytes) as streams:
            yield streams


async def serve_stdio(mcp: MCPServer[Any]) -> None:
    """Serve `mcp` over this process's stdin/stdout until stdin closes.

    What `MCPServer.run_stdio_async()` does, on `stdio_streams()` instead of the SDK's transport.

    Raises:
        RuntimeError: fds 0/1 are already claimed by another `stdio_streams()` in this process.
        OSError: fds 0/1 could not be duplicated or diverted.
    """
    async with stdio_streams() as (read_stream, write_stream):
        await run_on_streams(mcp, read_stream, write_stream)


def run_stdio(mcp: MCPServer[Any]) -> None:
    """Blocking entry point: `serve_stdio(mcp)` on the asyncio backend (what `mcp.run("stdio")` did).

    Raises:
        RuntimeError: fds 0/1 are already claimed by another `stdio_streams()` in this process.
        OSError: fds 0/1 could not be duplicated or diverted.
    """
    anyio.run(serve_stdio, mcp, backend="asyncio")


def _process_fallback_reason() -> str | None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "the event loop is not asyncio"
    if not (_backed_by(sys.stdin, 0) and _backed_by(sys.stdout, 1)):
        return "sys.stdin/sys.stdout are not backed by fds 0/1"
    return fallback_reason(0, 1)


@contextmanager
def _claimed_std_fds() -> Iterator[tuple[int, int]]:
    """Move the wire off fds 0/1 onto private fds; point 0 at the null device and 1 at stderr.

    Yields the private (close-on-exec) fds; restores fds 0/1 from them and closes them on exit.
    """
    import fcntl  # POSIX only; this function is never reached on Windows

    global _std_fds_claimed
    with _claim_lock:
        if _std_fds_claimed:
            raise RuntimeError("fds 0/1 are already claimed by another stdio transport in this process")
        _std_fds_claimed = True
    wire: dict[int, int] = {}
    try:
        for fd in (0, 1):
            # Above 2, so that a std fd closed and reopened meanwhile can never land on the wire.
            wire[fd] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        _divert(0, os.open(os.devnull, os.O_RDONLY))
        try:
            stray_out = os.dup(2)
        except OSError:
            stray_out = os.open(os.devnull, os.O_WRONLY)
        _divert(1, stray_out)
        yield wire[0], wire[1]
    finally:
        # Stray output buffered in sys.stdout while serving belongs to stderr, not to the wire.
        with suppress(Exception):
            sys.stdout.flush()
        for fd, private in wire.items():
            with suppress(OSError):
                os.dup2(private, fd)
            with suppress(OSError):
                os.close(private)
        with _claim_lock:
            _std_fds_claimed = False


def _divert(fd: int, replacement: int) -> None:
    try:
        os.dup2(replacement, fd)
    finally:
        os.close(replacement)


@asynccontextmanager
async def _serve_fds(in_fd: int, out_fd: int, max_line_bytes: int) -> AsyncIterator[StdioStreams]:
    loop = asyncio.get_running_loop()
    reader = _LineReader(loop, max_line_bytes)
    in_flight = _InFlight()

    def client_gone() -> None:
        reader.stop()
        in_flight.give_up()

    writer = _PipeWriter(loop, on_peer_closed=client_gone)
    was_blocking = os.get_blocking(in_fd), os.get_blocking(out_fd)
    # closefd=False: the fds stay ours (restored and closed by the caller), the transports only
    # borrow them.
    read_transport: asyncio.ReadTransport | None = None
    try:
        read_transport, _ = await loop.connect_read_pipe(
            lambda: reader, os.fdopen(in_fd, "rb", buffering=0, closefd=False)
        )
        write_transport, _ = await loop.connect_write_pipe(
            lambda: writer, os.fdopen(out_fd, "wb", buffering=0, closefd=False)
        )
    except BaseException:
        # asyncio closes a transport whose set-up failed; the one that did connect is ours to close.
        if read_transport is not None:
            read_transport.close()
        _set_blocking(in_fd, was_blocking[0])
        _set_blocking(out_fd, was_blocking[1])
        raise
    writer.live = True
    if writer.lost:  # the client closed our stdout while we were still connecting
        client_gone()
    read_send, read_receive = inbound_stream_pair()
    write_send, write_receive = outbound_stream_pair()
    stdin_scope = anyio.CancelScope()
    stdout_scope = anyio.CancelScope()

    async def pump_stdin() -> None:
        with stdin_scope:
            await _pump_stdin(reader, read_send, in_flight)

    async def pump_stdout() -> None:
        with stdout_scope:
            await _pump_stdout(write_receive, write_transport, writer, in_flight)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump_stdin)
            tg.start_soon(pump_stdout)
            try:
                yield read_receive, write_send
            finally:
                # The server is done with the streams: nobody takes lines any more, and the writer
                # gets a bounded time to hand over what it already has.
                stdin_scope.cancel()
                read_receive.close()
                write_send.close()
                stdout_scope.deadline = anyio.current_time() + _FLUSH_TIMEOUT_S
    finally:
        # Our ends too (idempotent): anyio warns about memory streams collected unclosed.
        read_send.close()
        write_receive.close()
        with anyio.CancelScope(shield=True):
            await _close(read_transport, reader, write_transport, writer)
        _set_blocking(in_fd, was_blocking[0])
        _set_blocking(out_fd, was_blocking[1])


def _set_blocking(fd: int, blocking: bool) -> None:
    # The flag lives on the open file description, which the client's side of the pipe may share.
    with suppress(OSError):
        os.set_blocking(fd, blocking)


async def _close(
    read_transport: asyncio.ReadTransport,
    reader: _LineReader,
    write_transport: asyncio.WriteTransport,
    writer: _PipeWriter,
) -> None:
    writer.live = False
    read_transport.close()
    write_transport.close()  # flushes the buffer first, then reports connection_lost
    with anyio.move_on_after(_FLUSH_TIMEOUT_S):
        # shield: a timeout must cancel this wait, not the future the protocol resolves
        await asyncio.shield(writer.closed)
    if not writer.closed.done():
        logger.warning(
            "stdio: the client did not read the last %d bytes", write_transport.get_write_buffer_size()
        )
        write_transport.abort()
        await writer.closed
    await reader.closed


async def _pump_stdin(
    reader: _LineReader, send: ContextSendStream[SessionMessage | Exception], in_flight: _InFlight
) -> None:
    try:
        async with send:
            while (line := await reader.next_line()) is not None:
                item = line if isinstance(line, Exception) else _parse(line)
                if isinstance(item, SessionMessage):
                    in_flight.read(item.message)
                await send.send(item)
            await in_flight.wait_answered(_EOF_GRACE_S)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        # The server closed its end of the read stream: it wants no more messages.
        await anyio.lowlevel.checkpoint()


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except Exception as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return exc
    # The SDK decodes stdin with errors="replace": a stray invalid byte inside a string value
    # costs that character, not the whole message.
    try:
        text = line.decode("utf-8", "replace")
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(text, by_name=False))
    except Exception as exc:
        return exc


async def _pump_stdout(
    receive: ContextReceiveStream[SessionMessage],
    transport: asyncio.WriteTransport,
    writer: _PipeWriter,
    in_flight: _InFlight,
) -> None:
    try:
        async with receive:
            async for session_message in receive:
                if writer.lost:
                    # The client is gone. Keep taking messages so that the server never blocks on
                    # a send while it winds down.
                    continue
                json = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                transport.write((json + "\n").encode())
                in_flight.written(session_message.message)
                await writer.drain()
    except anyio.ClosedResourceError:
        await anyio.lowlevel.checkpoint()


class _InFlight:
    """Ids of the requests read from stdin and not answered yet, so that EOF can wait for the answers."""

    def __init__(self) -> None:
        self._ids: set[types.RequestId] = set()
        self._idle: anyio.Event | None = None
        self._given_up = False

    def read(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCRequest):
            self._ids.add(message.id)
        elif isinstance(message, types.JSONRPCNotification) and message.method == "notifications/cancelled":
            # A cancelled request gets no answer (MCP cancellation); stop waiting for it.
            request_id = (message.params or {}).get("requestId")
            if isinstance(request_id, int | str):
                self._settle(request_id)

    def written(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError) and message.id is not None:
            self._settle(message.id)

    def give_up(self) -> None:
        """Nobody will read the answers any more: stop waiting for them."""
        self._given_up = True
        if self._idle is not None:
            self._idle.set()

    async def wait_answered(self, timeout_s: float) -> None:
        if not self._ids or self._given_up:
            return
        self._idle = anyio.Event()
        with anyio.move_on_after(timeout_s):
            await self._idle.wait()
        if self._ids and not self._given_up:
            logger.warning("stdio: stdin closed; %d request(s) left unanswered", len(self._ids))

    def _settle(self, request_id: types.RequestId) -> None:
        self._ids.discard(request_id)
        if not self._ids and self._idle is not None:
            self._idle.set()


class _LineReader(asyncio.Protocol):
    """Splits what a read pipe delivers into lines; pauses the pipe while too many wait to be taken."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_line_bytes: int) -> None:
        self._loop = loop
        self._max = max_line_bytes
        self._lines: deque[bytes | Exception] = deque()
        self._queued = 0
        self._partial: list[bytes] = []  # the pieces of an unterminated line, joined once at its end
        self._partial_len = 0
        self._skipping = False  # inside an over-long line: drop bytes up to its newline
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._eof:
            return
        start = 0
        if self._skipping:
            start = data.find(b"\n") + 1
            if start == 0:
                return
            self._skipping = False
        end = len(data)
        while (newline := data.find(b"\n", start)) >= 0:
            if self._partial_len + newline - start > self._max:
                self._overlong()
            elif self._partial:
                self._partial.append(data[start:newline])
                self._push(b"".join(self._partial))
            else:
                self._push(data[start:newline])
            self._partial.clear()
            self._partial_len = 0
            start = newline + 1
        if start < end:
            if self._partial_len + end - start > self._max:
                self._overlong()
                self._partial.clear()
                self._partial_len = 0
                self._skipping = True
            else:
                self._partial.append(data[start:] if start else data)
                self._partial_len += end - start
        self._wake()
        if not self._paused and self._queued > _READ_HIGH_WATER and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        if self._partial and not self._eof:
            self._push(b"".join(self._partial))
        self._partial.clear()
        self._partial_len = 0
        self._eof = True
        self._wake()
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._eof:
            logger.warning("stdio: reading stdin failed (%s); ending the session", type(exc).__name__)
        self._eof = True
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    def stop(self) -> None:
        """End the stream now, as an EOF would, dropping lines not taken yet."""
        self._eof = True
        self._lines.clear()
        self._queued = 0
        self._wake()
        if self._transport is not None:
            self._transport.close()

    async def next_line(self) -> bytes | Exception | None:
        """The next line (without its newline), an Exception for a line that was dropped, or None at EOF."""
        while not self._lines:
            if self._eof:
                return None
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        line = self._lines.popleft()
        self._queued -= _LINE_OVERHEAD + (len(line) if isinstance(line, bytes) else 0)
        if self._paused and not self._lines and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return line

    def _push(self, line: bytes | Exception) -> None:
        if isinstance(line, bytes):
            if not line or line.isspace():
                return
            self._queued += len(line)
        self._queued += _LINE_OVERHEAD
        self._lines.append(line)

    def _overlong(self) -> None:
        self._push(ValueError(f"message line longer than {self._max} bytes: skipped"))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _PipeWriter(asyncio.BaseProtocol):
    """Flow control for the write pipe: `drain()` waits while the transport's buffer is over its limit."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_peer_closed: Callable[[], None]) -> None:
        self._loop = loop
        self._on_peer_closed = on_peer_closed
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.lost = False
        # True only between a completed set-up and our own close: a connection_lost outside that
        # window is ours (set-up failed or cancelled, or closing), not the client leaving.
        self.live = False
        self.closed: asyncio.Future[None] = loop.create_future()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)
        if self.live:
            self.live = False
            logger.warning("stdio: the client closed stdout; ending the session")
            self._on_peer_closed()

    async def drain(self) -> None:
        if self._paused and not self.lost:
            waiter = self._drain_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None

    def _wake(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
