"""The real open-source Portkey gateway (npm ``@portkey-ai/gateway``) as a local peer for tests.

``PortkeyGateway.install()`` runs ``scripts/install_gateway.sh`` (cached: a no-op once the pinned
``tests/e2e/gateway`` package is installed) and returns the path of ``build/start-server.js``.
Using a :class:`PortkeyGateway` as a context manager starts ``node start-server.js --port=N
--headless`` on a free loopback port, waits until ``GET /`` answers 200, and stops the process on
exit. The gateway's stdout and stderr go to a temporary log file, quoted in every error message.

The gateway itself listens on all interfaces (it has no host option); by default a tiny preload
module makes its one ``listen(port)`` call bind 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

from tests.support.ports import LOOPBACK, ServiceNotReadyError, free_port, wait_for_http

__all__ = ["DEFAULT_CACHE_DIR", "GATEWAY_VERSION", "INSTALL_SCRIPT", "PortkeyGateway", "PortkeyGatewayError"]

GATEWAY_VERSION = "1.15.2"
REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install_gateway.sh"
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "portkey-gateway"

# Preloaded with ``node --import``: @hono/node-server calls ``server.listen(port, undefined, cb)``;
# give that call the loopback host so the gateway is not reachable from other machines.
_LOOPBACK_PRELOAD = (
    "data:text/javascript,"
    'import net from "node:net";'
    "const listen = net.Server.prototype.listen;"
    "net.Server.prototype.listen = function (...args) {"
    f'if (typeof args[0] === "number" && args[1] == null) args[1] = "{LOOPBACK}";'
    "return listen.apply(this, args);"
    "};"
)


_PORT_ATTEMPTS = 3


class PortkeyGatewayError(RuntimeError):
    """The gateway could not be installed, started or stopped."""


class PortkeyGateway:
    """A running open-source Portkey gateway on ``http://127.0.0.1:<port>``.

    Use as a context manager (or call :meth:`start` / :meth:`stop`)::

        with PortkeyGateway() as gateway:
            requests.get(f"{gateway.base_url}/threads/t/runs/r", headers={...})
    """

    _install_lock: ClassVar[threading.Lock] = threading.Lock()
    _installed: ClassVar[dict[Path, Path]] = {}

    def __init__(
        self,
        *,
        port: int | None = None,
        cache_dir: Path | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        env: Mapping[str, str] | None = None,
        loopback_only: bool = True,
    ) -> None:
        self._requested_port = port
        self._cache_dir = cache_dir
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._extra_env = dict(env or {})
        self._loopback_only = loopback_only
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_path: Path | None = None
        self._final_output: str = ""

    # -- installation -------------------------------------------------------------------------

    @classmethod
    def install(cls, cache_dir: Path | None = None) -> Path:
        """Install the pinned gateway once (per cache dir and process); return start-server.js.

        Raises :class:`PortkeyGatewayError` (a ``RuntimeError``) when ``node`` or ``npm`` is missing
        or the install fails.
        """
        dest = (cache_dir or DEFAULT_CACHE_DIR).resolve()
        with cls._install_lock:
            cached = cls._installed.get(dest)
            if cached is not None and cached.is_file():
                return cached
            for tool in ("node", "npm", "bash"):
                if shutil.which(tool) is None:
                    raise PortkeyGatewayError(
                        f"{tool!r} is not on PATH: the Portkey gateway tests need Node.js >= 18 with npm "
                        f"(they install npm @portkey-ai/gateway {GATEWAY_VERSION} via {INSTALL_SCRIPT})"
                    )
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                ["bash", str(INSTALL_SCRIPT), str(dest)],  # noqa: S607
                capture_output=True,
                text=True,
                check=False,
                cwd=REPO_ROOT,
            )
            lines = result.stdout.strip().splitlines()
            if result.returncode != 0 or not lines:
                raise PortkeyGatewayError(
                    f"{INSTALL_SCRIPT} exited with {result.returncode}\n"
                    f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
                )
            entry = Path(lines[-1])
            if not entry.is_file():
                raise PortkeyGatewayError(f"{INSTALL_SCRIPT} printed {entry}, which is not a file")
            cls._installed[dest] = entry
            return entry

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise PortkeyGatewayError("the gateway is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the OpenAI-compatible API root."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        """The temporary log file holding the gateway's stdout+stderr while it runs."""
        return self._log_path

    def output(self) -> str:
        """The gateway's stdout+stderr so far (kept after :meth:`stop`)."""
        if self._log_path is None:
            return self._final_output
        try:
            return self._log_path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return self._final_output

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the gateway and wait until ``GET /`` answers 200; raise PortkeyGatewayError if not."""
        if self._process is not None:
            raise PortkeyGatewayError("the gateway is already started")
        entry = self.install(self._cache_dir)
        node = shutil.which("node")
        if node is None:
            raise PortkeyGatewayError("'node' is not on PATH: the Portkey gateway tests need Node.js")
        # A port from free_port() can be taken by someone else before node binds it: try another.
        attempts = 1 if self._requested_port else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                self._launch(node, entry, self._requested_port or free_port())
            except PortkeyGatewayError:
                if attempt == attempts or "EADDRINUSE" not in self._final_output:
                    raise
            else:
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, node: str, entry: Path, port: int) -> None:
        # start-server.js lives in <cache>/node_modules/@portkey-ai/gateway/build/
        cwd = entry.parents[4] if len(entry.parents) > 4 else entry.parent
        argv = [node]
        if self._loopback_only:
            argv.append(f"--import={_LOOPBACK_PRELOAD}")
        argv += [str(entry), f"--port={port}", "--headless"]
        env = {**os.environ, **self._extra_env}

        fd, log_name = tempfile.mkstemp(prefix=f"portkey-gateway-{port}-", suffix=".log")
        self._log_path = Path(log_name)
        self._log = os.fdopen(fd, "wb")
        self._port = port
        self._final_output = ""
        try:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            wait_for_http(
                f"{self.url}/",
                self._start_timeout,
                expect_status=200,
                process=self._process,
                output=self.output,
            )
        except (OSError, ServiceNotReadyError) as exc:
            self.stop()
            raise PortkeyGatewayError(
                f"the Portkey gateway did not start ({node} {entry} --port={port} --headless): {exc}"
            ) from exc
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the gateway (SIGTERM, then SIGKILL after ``stop_timeout``); idempotent."""
        process, self._process = self._process, None
        if process is not None:
            try:
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=self._stop_timeout)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(timeout=self._stop_timeout)
            finally:
                self._collect_output()
        else:
            self._collect_output()

    def _collect_output(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._log_path is not None:
            self._final_output = self.output()
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<PortkeyGateway {GATEWAY_VERSION} {where} running={self.running}>"
