"""The thread-free stdio transport: framing over os.pipe()/socketpair fds, then the real server subprocess.

The unit tests play the client on the other ends of two pipes (non-blocking fds driven by
`anyio.wait_readable`/`wait_writable`), so no subprocess and no thread is involved. The subprocess
tests run `python -m klink_mcp` on its embedded sandbox, in both protocol eras.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.message import SessionMessage

from klink_mcp.stdio_transport import fallback_reason, stdio_streams

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


class Peer:
    """The client's side: writes to the server's stdin and reads lines from its stdout."""

    def __init__(self, to_server: int, from_server: int) -> None:
        self.to_server = to_server
        self.from_server = from_server
        os.set_blocking(to_server, False)
        os.set_blocking(from_server, False)
        self._buffer = bytearray()

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.to_server, view) :]
            except BlockingIOError:
                await anyio.wait_writable(self.to_server)

    def try_send(self, data: bytes) -> int:
        """Write what the pipe takes now, without waiting; returns the bytes written."""
        try:
            return os.write(self.to_server, data)
        except BlockingIOError:
            return 0

    async def send_json(self, *messages: dict[str, Any]) -> None:
        await self.send(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    async def readline(self) -> bytes:
        while (newline := self._buffer.find(b"\n")) < 0:
            try:
                chunk = os.read(self.from_server, 1 << 20)
            except BlockingIOError:
                await anyio.wait_readable(self.from_server)
                continue
            if not chunk:
                raise EOFError(bytes(self._buffer))
            self._buffer += chunk
        line = bytes(self._buffer[: newline + 1])
        del self._buffer[: newline + 1]
        return line

    def close_stdin(self) -> None:
        """EOF for the server."""
        os.close(self.to_server)
        self.to_server = -1

    def close_stdout(self) -> None:
        """The client stops reading: the server's writes fail."""
        os.close(self.from_server)
        self.from_server = -1

    def close(self) -> None:
        for fd in (self.to_server, self.from_server):
            if fd >= 0:
                os.close(fd)
        self.to_server = self.from_server = -1


@contextmanager
def _channels(kind: str = "pipe") -> Iterator[tuple[int, int, Peer]]:
    """(server stdin fd, server stdout fd, the client on the other ends), over pipes or socketpairs."""
    if kind == "pipe":
        server_in, client_in = os.pipe()
        client_out, server_out = os.pipe()
    else:  # what libuv (Node-based MCP hosts) hands a child: one socketpair per stdio stream
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        server_in, client_in, server_out, client_out = a.detach(), b.detach(), c.detach(), d.detach()
    peer = Peer(client_in, client_out)
    try:
        yield server_in, server_out, peer
    finally:
        os.close(server_in)
        os.close(server_out)
        peer.close()


@asynccontextmanager
async def _serving(kind: str = "pipe", **options: Any) -> AsyncIterator[tuple[Peer, Any, Any]]:
    with _channels(kind) as (server_in, server_out, peer):
        async with stdio_streams(stdin_fd=server_in, stdout_fd=server_out, **options) as (read, write):
            yield peer, read, write


def _ping(request_id: int | str, **params: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": "ping"}
    if params:
        message["params"] = params
    return message


def _reply(request_id: int | str, **result: Any) -> SessionMessage:
    return SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result))


async def _receive(read: Any) -> SessionMessage | Exception:
    with anyio.fail_after(10):
        item: SessionMessage | Exception = await read.receive()
        return item


# ------------------------------------------------------------------------------------------- framing


@pytest.mark.parametrize("kind", ["pipe", "socketpair"])
async def test_a_request_line_arrives_as_a_session_message_and_a_reply_leaves_as_one_line(kind: str) -> None:
    async with _serving(kind) as (peer, read, write):
        await peer.send_json(_ping(1))
        item = await _receive(read)
        assert isinstance(item, SessionMessage)
        assert isinstance(item.message, types.JSONRPCRequest)
        assert (item.message.id, item.message.method) == (1, "ping")

        with anyio.fail_after(10):
            await write.send(_reply(1, ok="é"))
            line = await peer.readline()
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert json.loads(line) == {"jsonrpc": "2.0", "id": 1, "result": {"ok": "é"}}


async def test_a_message_written_in_pieces_arrives_whole() -> None:
    data = json.dumps(_ping(2, note="x" * 1000)).encode() + b"\n"
    async with _serving() as (peer, read, _write):
        for start in range(0, len(data), 100):
            await peer.send(data[start : start + 100])
            await anyio.lowlevel.checkpoint()
        item = await _receive(read)
        assert isinstance(item, SessionMessage)
        assert isinstance(item.message, types.JSONRPCRequest)
        assert item.message.params == {"note": "x" * 1000}


async def test_several_messages_in_one_write_arrive_in_order() -> None:
    async with _serving() as (peer, read, _write):
        await peer.send_json(*(_ping(i) for i in range(5)))
        ids = []
        for _ in range(5):
            item = await _receive(read)
            assert isinstance(item, SessionMessage)
            ids.append(item.message.id)  # type: ignore[union-attr]
        assert ids == [0, 1, 2, 3, 4]


async def test_a_line_that_is_not_json_rpc_arrives_as_an_exception_and_the_next_line_still_parses() -> None:
    async with _serving() as (peer, read, _write):
        await peer.send(b"this is not json\n" + b'{"jsonrpc": "2.0", "id": 1}\n')
        await peer.send_json(_ping(3))
        assert isinstance(await _receive(read), Exception)
        assert isinstance(await _receive(read), Exception)
        item = await _receive(read)
        assert isinstance(item, SessionMessage) and item.message.id == 3  # type: ignore[union-attr]


async def test_invalid_utf8_inside_a_string_is_replaced_as_the_sdk_does() -> None:
    async with _serving() as (peer, read, _write):
        await peer.send(b'{"jsonrpc": "2.0", "id": 4, "method": "ping", "params": {"name": "caf\xe9"}}\n')
        item = await _receive(read)
        assert isinstance(item, SessionMessage)
        assert item.message.params == {"name": "caf\ufffd"}  # type: ignore[union-attr]


async def test_blank_lines_and_crlf_endings_are_taken_in_stride() -> None:
    async with _serving() as (peer, read, _write):
        await peer.send(b"\n   \r\n" + json.dumps(_ping(5)).encode() + b"\r\n\n")
        item = await _receive(read)
        assert isinstance(item, SessionMessage) and item.message.id == 5  # type: ignore[union-attr]


async def test_a_5_mib_line_arrives_whole_and_a_5_mib_reply_leaves_whole() -> None:
    big = "k" * (5 * MiB)
    async with _serving() as (peer, read, write):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.send_json, _ping(6, blob=big))
            item = await _receive(read)
        assert isinstance(item, SessionMessage)
        assert item.message.params == {"blob": big}  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            tg.start_soon(write.send, _reply(6, blob=big))
            with anyio.fail_after(10):
                line = await peer.readline()
        assert json.loads(line)["result"]["blob"] == big


async def test_a_line_over_the_limit_is_reported_and_skipped_up_to_its_newline() -> None:
    async with _serving(max_line_bytes=1000) as (peer, read, _write):
        # One over-long line arriving in pieces, one over-long line in a single write, then a good one.
        await peer.send(b"{" + b"x" * 700)
        await anyio.lowlevel.checkpoint()
        await peer.send(b"x" * 700 + b"}\n" + b"y" * 1500 + b"\n")
        await peer.send_json(_ping(7))
        for _ in range(2):
            dropped = await _receive(read)
            assert isinstance(dropped, ValueError) and "longer than 1000 bytes" in str(dropped)
        item = await _receive(read)
        assert isinstance(item, SessionMessage) and item.message.id == 7  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------- EOF and closing


async def test_eof_delivers_an_unterminated_last_line_then_ends_the_read_stream() -> None:
    async with _serving() as (peer, read, _write):
        await peer.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())
        peer.close_stdin()
        item = await _receive(read)
        assert isinstance(item, SessionMessage)
        assert isinstance(item.message, types.JSONRPCNotification)
        with anyio.fail_after(10), pytest.raises(anyio.EndOfStream):
            await read.receive()


async def test_eof_waits_for_the_answers_to_requests_already_read() -> None:
    async with _serving() as (peer, read, write):
        await peer.send_json(_ping(8), _ping(9))
        peer.close_stdin()
        for _ in range(2):
            assert isinstance(await _receive(read), SessionMessage)
        ended = anyio.Event()

        async def wait_for_end() -> None:
            with pytest.raises(anyio.EndOfStream):
                await read.receive()
            ended.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_end)
            with anyio.fail_after(10):
                await write.send(_reply(8))
                for _ in range(50):
                    await anyio.lowlevel.checkpoint()
                assert not ended.is_set()  # request 9 is still owed an answer
                await write.send(_reply(9))
                await ended.wait()
        assert [json.loads(await peer.readline())["id"] for _ in range(2)] == [8, 9]


async def test_eof_does_not_wait_for_a_request_the_client_cancelled() -> None:
    cancelled = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "a"}}
    async with _serving() as (peer, read, _write):
        await peer.send_json(_ping("a"), cancelled)
        peer.close_stdin()
        for _ in range(2):
            assert isinstance(await _receive(read), SessionMessage)
        with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
            await read.receive()


async def test_a_client_that_closes_our_stdout_ends_the_session_and_later_replies_are_dropped() -> None:
    async with _serving() as (peer, read, write):
        await peer.send_json(_ping(10))
        assert isinstance(await _receive(read), SessionMessage)
        peer.close_stdout()
        with anyio.fail_after(10):
            with pytest.raises(anyio.EndOfStream):
                await read.receive()
            await write.send(_reply(10))  # neither raises nor blocks: the server may still be winding down


async def test_the_fds_are_left_open_and_in_their_blocking_mode_on_exit() -> None:
    with _channels() as (server_in, server_out, peer):
        async with stdio_streams(stdin_fd=server_in, stdout_fd=server_out) as (read, write):
            assert not os.get_blocking(server_in)
            await peer.send_json(_ping(11))
            assert isinstance(await _receive(read), SessionMessage)
            await write.send(_reply(11))
        assert os.get_blocking(server_in) and os.get_blocking(server_out)
        os.write(server_out, b"still open\n")
        assert await peer.readline() == b'{"jsonrpc":"2.0","id":11,"result":{}}\n'
        assert await peer.readline() == b"still open\n"


# -------------------------------------------------------------------------------------- backpressure


async def test_a_reply_waits_while_the_client_is_not_reading() -> None:
    async with _serving() as (peer, _read, write):
        await write.send(_reply(12, blob="z" * MiB))  # taken by the writer, which now waits on the pipe
        second = anyio.Event()

        async def send_second() -> None:
            await write.send(_reply(13))
            second.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_second)
            for _ in range(50):
                await anyio.lowlevel.checkpoint()
            assert not second.is_set()
            with anyio.fail_after(10):
                assert json.loads(await peer.readline())["id"] == 12
                assert json.loads(await peer.readline())["id"] == 13
                await second.wait()


async def test_a_client_flooding_stdin_is_held_back_while_the_server_is_busy() -> None:
    line = json.dumps(_ping(0, pad="p" * 1000)).encode() + b"\n"
    async with _serving() as (peer, read, _write):
        written = 0
        stalled_rounds = 0
        # Write without waiting until the transport stops taking bytes off the pipe. Without read
        # backpressure it would keep taking them for as long as we write.
        while stalled_rounds < 20 and written < 64 * MiB:
            n = peer.try_send(line)
            if n == 0:
                stalled_rounds += 1
                await anyio.lowlevel.checkpoint()
                continue
            stalled_rounds = 0
            if n < len(line):
                await peer.send(line[n:])
            written += len(line)
        assert written < 4 * MiB
        for _ in range(written // len(line)):
            assert isinstance(await _receive(read), SessionMessage)


# ------------------------------------------------------------------------------------- what is served


def test_pipes_and_separate_sockets_are_served_without_threads() -> None:
    for kind in ("pipe", "socketpair"):
        with _channels(kind) as (server_in, server_out, _peer):
            assert fallback_reason(server_in, server_out) is None


def test_a_terminal_a_regular_file_and_one_shared_socket_fall_back_to_the_sdk_transport(
    tmp_path: Path,
) -> None:
    primary, secondary = os.openpty()
    a, b = socket.socketpair()
    with open(tmp_path / "in.jsonl", "wb") as regular, a, b:
        read_end, write_end = os.pipe()
        try:
            assert "terminal" in (fallback_reason(secondary, write_end) or "")
            assert "regular file" in (fallback_reason(regular.fileno(), write_end) or "")
            assert "same" in (fallback_reason(a.fileno(), a.fileno()) or "")
        finally:
            for fd in (primary, secondary, read_end, write_end):
                os.close(fd)


def test_windows_falls_back_to_the_sdk_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    assert fallback_reason() == "Windows"


async def test_explicit_fds_must_be_pipes_or_sockets_and_come_in_pairs(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        with (tmp_path / "f").open("wb") as regular, pytest.raises(ValueError, match="regular file"):
            async with stdio_streams(stdin_fd=read_end, stdout_fd=regular.fileno()):
                pass
        with pytest.raises(ValueError, match="both"):
            async with stdio_streams(stdin_fd=read_end):
                pass
    finally:
        os.close(read_end)
        os.close(write_end)


# ------------------------------------------------------------------------------------ the real server


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINK_")}
    env.update({"KLINK_EVENTS_DB": ":memory:", **extra})
    return env


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_server_subprocess_serves_both_eras_on_the_thread_free_transport(
    mode: str, tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "klink_mcp"], env=_env(KLINK_LOG_LEVEL="DEBUG")
    )
    with (tmp_path / "stderr.txt").open("w+") as errlog, anyio.fail_after(60):
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:  # type: ignore[arg-type]
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"list_contacts", "get_contact", "create_ticket"} <= names
            listed = await client.call_tool("list_contacts", {"page_size": 2})
            assert not listed.is_error and len(listed.structured_content["items"]) == 2
            # A 2 MiB argument: the line is framed and parsed whole, and the tool's own limit answers.
            rejected = await client.call_tool("list_contacts", {"keyword": "k" * (2 * MiB)})
            assert rejected.is_error and "keyword" in str(rejected.content)
        errlog.seek(0)
        assert "using the thread-free transport" in errlog.read()


async def _run_server(stdin: Any, stdout: Any, stderr: Any, env: dict[str, str]) -> int:
    process = await anyio.open_process(
        [sys.executable, "-m", "klink_mcp"], stdin=stdin, stdout=stdout, stderr=stderr, env=env
    )
    async with process:
        return await process.wait()


_SESSION = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_contacts", "arguments": {}}},
]


@pytest.mark.slow
async def test_stdin_eof_exits_0_after_answering_with_nothing_but_protocol_on_stdout() -> None:
    process = await anyio.open_process([sys.executable, "-m", "klink_mcp"], env=_env())
    async with process:
        assert process.stdin is not None and process.stdout is not None
        with anyio.fail_after(60):
            # Everything at once, then EOF: the answers already owed still come.
            await process.stdin.send(b"".join(json.dumps(m).encode() + b"\n" for m in _SESSION))
            await process.stdin.aclose()
            out = b""
            async for chunk in process.stdout:
                out += chunk
            assert await process.wait() == 0
    replies = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in replies] == [1, 2]
    assert "error" not in replies[1] and not replies[1]["result"].get("isError")


@pytest.mark.slow
async def test_a_regular_file_on_stdin_is_served_by_the_sdk_transport(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"".join(json.dumps(m).encode() + b"\n" for m in _SESSION[:2]))
    with (
        (tmp_path / "in.jsonl").open("rb") as stdin,
        (tmp_path / "out.jsonl").open("wb") as stdout,
        (tmp_path / "err.txt").open("wb") as stderr,
        anyio.fail_after(60),
    ):
        assert await _run_server(stdin, stdout, stderr, _env(KLINK_LOG_LEVEL="DEBUG")) == 0
    assert [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_bytes().splitlines()] == [1]
    assert (
        "using the SDK's threaded transport (stdin (fd 0) is a regular file"
        in (tmp_path / "err.txt").read_text()
    )


_STRAY_OUTPUT_SERVER = """
import os, subprocess, sys, anyio
import mcp_types as types
from mcp.shared.message import SessionMessage
from klink_mcp.stdio_transport import stdio_streams

async def main():
    async with stdio_streams() as (read, write):
        async for item in read:
            print("stray print")
            sys.stdout.flush()
            os.write(1, b"stray fd write\\n")
            subprocess.run([sys.executable, "-c", "print('stray child')"], check=True)
            reply = types.JSONRPCResponse(jsonrpc="2.0", id=item.message.id, result={})
            await write.send(SessionMessage(reply))
    print("after serving")

anyio.run(main, backend="asyncio")
"""


@pytest.mark.slow
async def test_while_serving_stray_stdout_goes_to_stderr_and_stdout_is_restored_after() -> None:
    result = await anyio.run_process(
        [sys.executable, "-c", _STRAY_OUTPUT_SERVER],
        input=json.dumps(_ping(1)).encode() + b"\n",
        env=_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.splitlines() == [b'{"jsonrpc":"2.0","id":1,"result":{}}', b"after serving"]
    for stray in (b"stray print", b"stray fd write", b"stray child"):
        assert stray in result.stderr
