"""What the benchmarks share: results and their table, statistics, the machine, the emulator process."""

from __future__ import annotations

import json
import math
import os
import platform
import selectors
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import requests

#: The Airflow connection every benchmark uses (set through ``AIRFLOW_CONN_PORTKEY_BENCH``).
CONN_ID = "portkey_bench"
API_KEY = "pk-bench-api-key"
VIRTUAL_KEY = "vk-bench-virtual-key"
THREAD_ID = "thread_bench"
RUN_ID = "run_bench"


@dataclass
class Row:
    """One figure next to its baseline. ``ok`` is None for figures without a target."""

    measurement: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    ok: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


@dataclass
class Result:
    """What one benchmark measured: the rows of the table, correctness counts and notes."""

    name: str
    rows: list[Row] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


_Call = TypeVar("_Call")


@dataclass
class Timings:
    """A provider call timed against a bare baseline call, interleaved so drift hits both alike."""

    provider_ns: list[int] = field(default_factory=list)
    bare_ns: list[int] = field(default_factory=list)
    #: The status every kept call returned (both calls poll the same object).
    statuses: list[str] = field(default_factory=list)

    def calls(
        self, provider: _Call, bare: _Call, n: int, warmup: int
    ) -> Iterator[tuple[_Call, list[int] | None]]:
        """Each call to make, in order (flipped every iteration), with where its time goes (None: warm-up)."""
        for i in range(warmup + n):
            pair = ((provider, self.provider_ns), (bare, self.bare_ns))
            for call, sink in pair if i % 2 == 0 else pair[::-1]:
                yield call, sink if i >= warmup else None

    def add(self, sink: list[int] | None, elapsed_ns: int, status: str) -> None:
        """Keep one call's time and status (unless it was a warm-up call)."""
        if sink is not None:
            sink.append(elapsed_ns)
            self.statuses.append(status)

    def rows(self, measurement: str, baseline_name: str, target_ratio: float) -> list[Row]:
        """The median (against ``target_ratio``) and p90 per call, in microseconds."""
        ratio = median(self.provider_ns) / median(self.bare_ns)
        return [
            Row(
                measurement,
                "median per call",
                median(self.provider_ns) / 1e3,
                "us",
                median(self.bare_ns) / 1e3,
                baseline_name,
                f"ratio <= {target_ratio}",
                ratio <= target_ratio,
            ),
            Row(
                measurement,
                "p90 per call",
                percentile(self.provider_ns, 90) / 1e3,
                "us",
                percentile(self.bare_ns, 90) / 1e3,
                baseline_name,
            ),
        ]

    def checks(self) -> dict[str, Any]:
        return {
            "calls": len(self.provider_ns),
            "baseline_calls": len(self.bare_ns),
            "statuses": sorted(set(self.statuses)),
            "overhead_us": (median(self.provider_ns) - median(self.bare_ns)) / 1e3,
        }


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of nothing")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of nothing")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(rows: Iterable[Row], *, markdown: bool = False) -> str:
    header = ["#", "metric", "provider", "baseline", "ratio", "target", "met"]
    body = [
        [
            row.measurement,
            row.metric,
            f"{fmt(row.value)} {row.unit}".strip(),
            f"{fmt(row.baseline)} {row.unit} ({row.baseline_name})" if row.baseline is not None else "-",
            fmt(row.ratio),
            row.target or "-",
            {True: "yes", False: "NO", None: "-"}[row.ok],
        ]
        for row in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        for cells in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """Where and when the figures were taken."""
    from importlib.metadata import version

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory": _memory(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "apache-airflow": version("apache-airflow"),
        "airflow-provider-portkey": version("airflow-provider-portkey"),
        "apache-airflow-providers-http": version("apache-airflow-providers-http"),
        "requests": version("requests"),
        "httpx": version("httpx"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        return f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    """User + system CPU time of this process."""
    times = os.times()
    return times.user + times.system


def connection_env(url: str) -> dict[str, str]:
    """``AIRFLOW_CONN_PORTKEY_BENCH`` pointing at an emulator (hosted-Portkey style: key + virtual key)."""
    fields = {"conn_type": "portkey", "host": url, "password": API_KEY, "extra": {"virtual_key": VIRTUAL_KEY}}
    return {f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(fields)}


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block (this process only)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def child_env(**extra: str) -> dict[str, str]:
    """The environment for benchmark subprocesses: this one, quiet, with the repo importable."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.update(extra)
    return env


class Emulator:
    """The Portkey emulator in its own process (``python -m airflow_provider_portkey.emulator``)."""

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._control = requests.Session()

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", "airflow_provider_portkey.emulator", "--port", "0", "--no-seed"]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env())
        assert self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(self.startup_timeout):
                self.__exit__(None, None, None)
                raise RuntimeError("the emulator did not start in time")
        line = self._process.stdout.readline()
        if "listening on" not in line:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.url = line.split()[-1]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._control.close()
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def cpu_seconds(self) -> float:
        """User + system CPU time the emulator process has used so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def add_step(self, step_id: str, **kwargs: Any) -> None:
        """Script a step through the control API (``POST /_emulator/steps``)."""
        payload = {"thread_id": THREAD_ID, "run_id": RUN_ID, "step_id": step_id, **kwargs}
        response = self._control.post(self.url + "/_emulator/steps", json=payload, timeout=30)
        response.raise_for_status()

    def reset(self) -> None:
        self._control.post(self.url + "/_emulator/reset", timeout=30).raise_for_status()
