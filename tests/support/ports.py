"""Loopback ports and bounded HTTP readiness polling for test servers."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = ["ServiceNotReadyError", "free_port", "wait_for_http"]

LOOPBACK = "127.0.0.1"


class ServiceNotReadyError(RuntimeError):
    """A server did not answer HTTP within its bound (or its process exited first)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _probe(host: str, port: int, path: str, attempt_timeout: float) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=attempt_timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_for_http(
    url: str,
    timeout: float,
    *,
    expect_status: int | None = None,
    process: subprocess.Popen[bytes] | None = None,
    output: Callable[[], str] | None = None,
    attempt_timeout: float = 0.5,
    interval: float = 0.05,
) -> int:
    """Poll ``GET url`` until the server answers, and return the HTTP status it answered with.

    Each attempt is a short connection (``attempt_timeout``); between attempts the poll pauses
    ``interval`` seconds. With ``expect_status`` only that status counts as ready. When ``process``
    exits before the server is ready, or ``timeout`` seconds pass, :class:`ServiceNotReadyError` is
    raised with the last error seen and, when given, ``output()`` (the server's captured output).
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"wait_for_http wants an http:// URL with a host, got {url!r}")
    host = parts.hostname
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"

    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while True:
        if process is not None and process.poll() is not None:
            problem = f"its process exited with code {process.returncode} before answering"
            break
        try:
            status = _probe(host, port, path, attempt_timeout)
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if expect_status is None or status == expect_status:
                return status
            last_error = f"HTTP {status} (want {expect_status})"
        if time.monotonic() >= deadline:
            problem = f"no ready answer within {timeout:g} s"
            break
        time.sleep(interval)

    message = f"{url} is not ready: {problem}; last attempt: {last_error}"
    if output is not None:
        message += f"\n--- server output ---\n{output().rstrip()}\n--- end of server output ---"
    raise ServiceNotReadyError(message)
