"""The emulator's HTTP/1.1 server: asyncio streams plus h11, so faults can act on the raw socket.

One small task per connection and no per-request logging keep thousands of keep-alive pollers cheap.
Use it from sync code (`with EmulatorServer() as server:` runs its own loop in a thread) or from a
running loop (`async with EmulatorServer() as server:`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from airflow_provider_portkey.emulator.app import (
    CONTROL_PREFIX,
    Mode,
    Response,
    fault_response,
    gateway_timeout,
    handle_api,
    handle_control,
    json_response,
    reason_phrase,
    request_timeout,
)
from airflow_provider_portkey.emulator.state import EmulatorState, ReceivedRequest

_log = logging.getLogger(__name__)

READ_SIZE = 65536
MAX_BODY = 1 << 20
DRIP_CHUNK = 16  # bytes per write of a slow_drip fault
BACKLOG = 4096  # a burst of thousands of pollers connecting at once must not overflow the accept queue


class EmulatorServer:
    """A local Portkey (or OpenAI-compatible upstream) run-step API on 127.0.0.1."""

    def __init__(
        self, mode: Mode = "portkey", host: str = "127.0.0.1", port: int = 0, seed: bool = True
    ) -> None:
        if mode not in ("portkey", "openai"):
            raise ValueError(f"mode must be 'portkey' or 'openai', not {mode!r}")
        self.mode: Mode = mode
        self.host = host
        self.state = EmulatorState(seed=seed)
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._start_error: BaseException | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # -- async API: serve on the caller's running loop ---------------------------------------------

    async def astart(self) -> None:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self._port, backlog=BACKLOG
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def astop(self) -> None:
        """Stop listening, close every connection (cancelling delayed responses) and wait for them."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    # -- sync API: serve on a private loop in a background thread ------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run_thread, args=(ready,), name="portkey-emulator", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            self._thread.join()
            self._thread = None
            raise error

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)
        thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run_thread(self, ready: threading.Event) -> None:
        asyncio.run(self._serve_until_stopped(ready))

    async def _serve_until_stopped(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            await self.astart()
        except OSError as exc:  # e.g. the port is taken: re-raised in start()
            self._start_error = exc
            return
        finally:
            ready.set()
        try:
            await self._stop_requested.wait()
        finally:
            await self.astop()

    # -- HTTP ------------------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        # Without TCP_NODELAY, Nagle plus the peer's delayed ACK stalls keep-alive requests ~40 ms.
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER)
        try:
            while await self._serve_one(conn, reader, writer):
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                self._write(conn, writer, json_response(exc.error_status_hint, {"error": str(exc)}))
        except ConnectionError as exc:
            _log.debug("emulator connection dropped: %r", exc)
        except asyncio.CancelledError:
            pass  # astop() ends open connections; re-raising makes Python 3.11's streams log an error
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_one(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; True if the connection stays open for the next one."""
        event = await _next_event(conn, reader)
        if not isinstance(event, h11.Request):
            return False
        body = bytearray()
        while not isinstance(part := await _next_event(conn, reader), h11.EndOfMessage):
            if not isinstance(part, h11.Data) or len(body) + len(part.data) > MAX_BODY:
                return False
            body += part.data
        request = _received(event)
        if not await self._respond(conn, writer, request, bytes(body)):
            return False
        await writer.drain()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _respond(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, request: ReceivedRequest, body: bytes
    ) -> bool:
        """Send the response, or misbehave as the next matching fault says; False if the socket is done."""
        if request.path.startswith(CONTROL_PREFIX):
            self._write(conn, writer, handle_control(self.state, request, body))
            return True
        self.state.record(request)
        fault = self.state.take_fault(request.path)
        if fault is None:
            self._write(conn, writer, handle_api(self.state, self.mode, request, body))
            return True
        match fault.kind:
            case "status" | "malformed" | "redirect":  # answered before processing: nothing is created
                self._write(conn, writer, fault_response(fault, self.mode, request))
            case "delay":
                timeout = request_timeout(self.mode, request)
                if timeout is not None and timeout < fault.delay:
                    # The gateway gives up on the upstream; the upstream still got the request.
                    await asyncio.sleep(timeout)
                    handle_api(self.state, self.mode, request, body)
                    self._write(conn, writer, gateway_timeout(request))
                else:
                    await asyncio.sleep(fault.delay)
                    self._write(conn, writer, handle_api(self.state, self.mode, request, body))
            case "slow_drip":
                response = handle_api(self.state, self.mode, request, body)
                writer.write(_head(conn, response))
                for start in range(0, len(response.body), DRIP_CHUNK):
                    await writer.drain()
                    await asyncio.sleep(fault.delay)
                    writer.write(conn.send(h11.Data(response.body[start : start + DRIP_CHUNK])) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
            case "truncated":  # the head promises the whole body; half of it arrives, then FIN
                response = handle_api(self.state, self.mode, request, body)
                half = response.body[: len(response.body) // 2]
                writer.write(_head(conn, response) + (conn.send(h11.Data(half)) or b""))
                await writer.drain()
                return False
            case "reset":  # before processing: the request never reached the upstream
                _reset(writer)
                return False
            case "reset_after":  # processed in full (a POST has created its run), then no answer
                handle_api(self.state, self.mode, request, body)
                _reset(writer)
                return False
        return True

    @staticmethod
    def _write(conn: h11.Connection, writer: asyncio.StreamWriter, response: Response) -> None:
        """Queue the whole response in one write, so it leaves in as few segments as possible."""
        parts = [_head(conn, response)]
        if response.body:
            parts.append(conn.send(h11.Data(response.body)) or b"")
        parts.append(conn.send(h11.EndOfMessage()) or b"")
        writer.write(b"".join(parts))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), so the client sees "connection reset" rather than a clean EOF."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event | type[h11.PAUSED]:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await reader.read(READ_SIZE))
    return event  # type: ignore[return-value]  # NEED_DATA is excluded by the loop


def _head(conn: h11.Connection, response: Response) -> bytes:
    headers = [*response.headers.items(), ("content-length", str(len(response.body)))]
    reason = reason_phrase(response.status)
    data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
    return data or b""


def _received(event: h11.Request) -> ReceivedRequest:
    target = urlsplit(event.target.decode("latin-1"))
    headers: dict[str, str] = {}
    for raw_name, raw_value in event.headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return ReceivedRequest(
        method=event.method.decode("ascii"),
        path=unquote(target.path),
        query=parse_qsl(target.query, keep_blank_values=True),
        headers=headers,
    )
