"""3. Triggerer scale: N concurrent ``RunStepTrigger.run()`` generators on one event loop, in two regimes.

- ``triggerer``: 5,000 triggers polling every 30 s, starts spread over 20 s (the loop is mostly idle);
- ``triggerer_saturated``: 1,000 triggers polling every 1 s, all started within 1 s, as after a
  triggerer restart with short intervals: they ask for ~1,000 polls/s, more than 2 cores serve, so
  the loop never idles and polls queue behind the in-flight bound.

The emulator runs in its own process; the triggers run in a fresh worker process
(``python -m bench.triggerer --worker ...``) so its RSS and CPU are theirs alone. Each step is scripted
through the emulator's control API to stay ``in_progress`` for a few polls and then end ``completed``
(or ``failed`` for one in ten). The same schedule is run by bare coroutines (sleep, GET on one shared
``httpx.AsyncClient`` with the provider's connection limits and in-flight bound, ``json.loads``) in
another fresh worker: that is the floor each figure is compared with. A change in the machine's
load (it is shared) must hit both alike: in ``triggerer`` both workers run at once, each against its
own emulator (the regime leaves the cores mostly idle); in ``triggerer_saturated`` they run in turn,
bare first then provider first (a saturated pair would share the cores).

Measured in the worker: every trigger yields exactly one event with the right status and step
(nothing lost, nothing duplicated); CPU seconds per poll; peak RSS while all N wait, per waiting
trigger (RSS delta over the RSS before the first trigger / N); event-loop lag (a ticker task measures
how much its ``asyncio.sleep(tick)`` oversleeps; p99 and max over the whole run). The targets (issue
15) are ratios to the bare floor: CPU per poll <= 1.15x, lag p99 <= 1.25x, RSS per waiting trigger
<= 1.5x, in both regimes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import (
    CONN_ID,
    RUN_ID,
    THREAD_ID,
    Emulator,
    Result,
    Row,
    child_env,
    connection_env,
    cpu_seconds,
    fmt,
    median,
    percentile,
    rss_bytes,
)


@dataclass(frozen=True)
class Regime:
    """One schedule: how many triggers, how often they poll, how their starts spread, how long they wait."""

    name: str
    n: int
    poll_interval: float
    stagger: float
    #: Each step stays ``in_progress`` for a number of polls drawn from this range (inclusive).
    in_progress_polls: tuple[int, int]
    rounds: int = 1
    #: Run both variants at once, each with its own emulator, so the machine's other load hits both
    #: alike (for a regime that leaves the cores mostly idle; a saturated one would share them).
    paired: bool = False


#: 5,000 triggers polling every 30 s (twice Airflow's default rate of one poke a minute), starting
#: over 20 s, so all wait at once before the first finishes (at >= 30 s).
UNSATURATED = Regime(
    "triggerer", n=5000, poll_interval=30.0, stagger=20.0, in_progress_polls=(1, 3), rounds=2, paired=True
)
#: 1,000 triggers polling every 1 s, all started within 1 s (a triggerer restart), 10-20 polls each:
#: they ask for ~1,000 polls/s, which two cores (the loop and the emulator) cannot serve.
SATURATED = Regime(
    "triggerer_saturated", n=1000, poll_interval=1.0, stagger=1.0, in_progress_polls=(10, 20), rounds=2
)
#: Issue 15's targets, as ratios to the bare floor measured in the same run.
TARGET_CPU_RATIO = 1.15
TARGET_LAG_RATIO = 1.25
TARGET_RSS_RATIO = 1.5
VARIANTS = ("bare", "trigger")


@dataclass(frozen=True)
class Step:
    step_id: str
    start: float  # seconds after the run begins
    in_progress_polls: int
    final: str

    @property
    def polls(self) -> int:
        return self.in_progress_polls + 1

    @property
    def event_status(self) -> str:
        return "failure" if self.final == "failed" else "success"


def plan(n: int, stagger: float, in_progress_polls: tuple[int, int] = (1, 3), seed: int = 6) -> list[Step]:
    """The same deterministic schedule for every variant."""
    rng = random.Random(seed)
    return [
        Step(
            step_id=f"step_{i:05d}",
            start=stagger * i / n,
            in_progress_polls=rng.randint(*in_progress_polls),
            final="failed" if rng.random() < 0.1 else "completed",
        )
        for i in range(n)
    ]


@dataclass
class WorkerReport:
    variant: str
    n: int
    events: int
    lost: int
    duplicated: int
    wrong: int
    polls: int
    expected_polls: int
    cpu_seconds: float
    wall_seconds: float
    rss_before: int
    rss_peak_waiting: int
    rss_samples_waiting: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    ticks: int
    nofile_soft: int
    open_connections_peak: int
    gc_seconds: float
    gc_longest_ms: float
    gc_collections: list[int]

    @property
    def cpu_per_poll_ms(self) -> float:
        return self.cpu_seconds / max(self.polls, 1) * 1e3

    @property
    def rss_per_waiting_kb(self) -> float | None:
        """``None`` when no sample was taken while all N waited (the first finished before the last began)."""
        if not self.rss_samples_waiting:
            return None
        return (self.rss_peak_waiting - self.rss_before) / self.n / 1024


def run(regime: Regime = UNSATURATED, tick: float = 0.01, timeout: float = 300.0) -> Result:
    """Run ``regime`` ``rounds`` times per variant (see the module); each figure is the median over rounds."""
    result = Result(regime.name)
    reports: dict[str, list[WorkerReport]] = {variant: [] for variant in VARIANTS}
    emulator_cpu: dict[str, float] = dict.fromkeys(VARIANTS, 0.0)
    steps = plan(regime.n, regime.stagger, regime.in_progress_polls)
    with contextlib.ExitStack() as stack:
        # Paired: one emulator per variant, both workers at once. Otherwise one emulator, in turn.
        emulators = {
            variant: stack.enter_context(Emulator()) for variant in VARIANTS[: 2 if regime.paired else 1]
        }
        for round_ in range(regime.rounds):
            # In turn: bare first in even rounds, provider first in odd ones (a drift in load hits both).
            order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
            for batch in [order] if regime.paired else [[variant] for variant in order]:
                running = []
                for variant in batch:
                    emulator = emulators.get(variant, emulators[VARIANTS[0]])
                    emulator.reset()
                    for step in steps:
                        statuses = ["in_progress"] * step.in_progress_polls + [step.final]
                        emulator.add_step(step.step_id, statuses=statuses)
                    running.append((variant, emulator, emulator.cpu_seconds()))
                workers = [
                    _start_worker(emulator.url, variant, regime, tick, timeout)
                    for variant, emulator, _ in running
                ]
                for (variant, emulator, cpu_before), worker in zip(running, workers, strict=True):
                    reports[variant].append(_worker_report(variant, worker, timeout))
                    emulator_cpu[variant] += emulator.cpu_seconds() - cpu_before
    bare, trig = reports["bare"], reports["trigger"]
    label = f"{regime.n} x {fmt(regime.poll_interval)} s"

    def mid(
        variant_reports: list[WorkerReport], figure: Callable[[WorkerReport], float | None]
    ) -> float | None:
        values = [value for value in map(figure, variant_reports) if value is not None]
        return median(values) if values else None

    def ratio_row(
        metric: str, unit: str, figure: Callable[[WorkerReport], float | None], target: float
    ) -> Row:
        value, baseline = mid(trig, figure), mid(bare, figure)
        ok = None if value is None or not baseline else value / baseline <= target
        return Row(
            f"3 triggerer {label}",
            metric,
            value if value is not None else float("nan"),
            unit,
            baseline,
            "bare coroutines",
            f"ratio <= {target}",
            ok,
        )

    faults = sum(r.lost + r.duplicated + r.wrong for r in trig)
    correct = faults == 0 and all(r.events == regime.n for r in trig)
    polls = sum(r.polls for r in trig)
    result.rows += [
        Row(
            f"3 triggerer {label}",
            "events lost+duplicated+wrong",
            faults,
            "",
            sum(r.lost + r.duplicated + r.wrong for r in bare),
            "bare coroutines",
            "0 lost",
            correct,
        ),
        ratio_row("CPU per poll", "ms", lambda r: r.cpu_per_poll_ms, TARGET_CPU_RATIO),
        ratio_row("event-loop lag p99", "ms", lambda r: r.lag_p99_ms, TARGET_LAG_RATIO),
        ratio_row("peak RSS per waiting trigger", "KB", lambda r: r.rss_per_waiting_kb, TARGET_RSS_RATIO),
        Row(
            f"3 triggerer {label}",
            "event-loop lag max",
            mid(trig, lambda r: r.lag_max_ms) or 0.0,
            "ms",
            mid(bare, lambda r: r.lag_max_ms),
            "bare coroutines",
        ),
        Row(
            f"3 triggerer {label}",
            "emulator CPU per poll (other process)",
            emulator_cpu["trigger"] / max(polls, 1) * 1e3,
            "ms",
            emulator_cpu["bare"] / max(sum(r.polls for r in bare), 1) * 1e3,
            "bare coroutines",
        ),
    ]
    result.checks = {
        "regime": asdict(regime),
        "reports": {
            variant: [asdict(r) for r in variant_reports] for variant, variant_reports in reports.items()
        },
        "emulator_cpu_seconds": emulator_cpu,
    }
    last, last_bare = trig[-1], bare[-1]
    kind = "paired (both variants at once)" if regime.paired else "alternating"
    rounds = f"median of {regime.rounds} {kind} rounds; " if regime.rounds > 1 or regime.paired else ""
    result.notes.append(
        f"{rounds}{regime.n} triggers, poll interval {fmt(regime.poll_interval)} s, starts spread over "
        f"{fmt(regime.stagger)} s, {regime.in_progress_polls[0] + 1}-{regime.in_progress_polls[1] + 1} polls "
        f"each (last round: {last.polls} polls in {fmt(last.wall_seconds)} s, "
        f"{fmt(last.polls / last.wall_seconds)} polls/s; bare {fmt(last_bare.wall_seconds)} s); "
        f"RSS before {last.rss_before / 2**20:.0f} MiB, peak while all wait "
        f"{last.rss_peak_waiting / 2**20:.0f} MiB; peak open connections {last.open_connections_peak}; "
        f"GC {fmt(last.gc_seconds)} s of the CPU ({last.gc_collections[2]} full collections, longest "
        f"pause {fmt(last.gc_longest_ms)} ms; bare {fmt(last_bare.gc_seconds)} s, "
        f"{fmt(last_bare.gc_longest_ms)} ms)"
    )
    return result


def _start_worker(
    url: str, variant: str, regime: Regime, tick: float, timeout: float
) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "bench.triggerer",
        "--worker",
        f"--variant={variant}",
        f"--url={url}",
        f"--n={regime.n}",
        f"--poll-interval={regime.poll_interval}",
        f"--stagger={regime.stagger}",
        f"--in-progress-polls={regime.in_progress_polls[0]},{regime.in_progress_polls[1]}",
        f"--tick={tick}",
        f"--timeout={timeout}",
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(**connection_env(url)),
    )


def _worker_report(variant: str, worker: subprocess.Popen[str], timeout: float) -> WorkerReport:
    try:
        stdout, stderr = worker.communicate(timeout=timeout + 120)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.communicate()
        raise
    if worker.returncode != 0:
        raise RuntimeError(f"triggerer worker ({variant}) failed ({worker.returncode}): {stderr[-3000:]}")
    return WorkerReport(**json.loads(stdout.strip().splitlines()[-1]))


# -- the worker process ------------------------------------------------------------------------------


def _raise_nofile(wanted: int) -> int:
    """Raise the soft open-files limit towards the hard limit (a triggerer holds many sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _GcTimer:
    """Time spent in the cyclic garbage collector, per generation (via ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.longest = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.seconds += pause
            self.longest = max(self.longest, pause)
            self.collections[info["generation"]] += 1


class _Probe:
    """Counts and samples shared by the waiters and the ticker."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.started = 0
        self.finished = 0
        self.polls = 0
        self.lags: list[float] = []
        self.rss_peak_waiting = 0
        self.rss_samples_waiting = 0
        self.connections_peak = 0

    async def ticker(self, tick: float, stop: asyncio.Event, connections: Callable[[], int]) -> None:
        clock = time.perf_counter
        count = 0
        while not stop.is_set():
            before = clock()
            await asyncio.sleep(tick)
            self.lags.append(clock() - before - tick)
            count += 1
            if count % 10 == 0:
                self.connections_peak = max(self.connections_peak, connections())
                if self.started == self.n and self.finished == 0:
                    self.sample_waiting()

    def sample_waiting(self) -> None:
        self.rss_peak_waiting = max(self.rss_peak_waiting, rss_bytes())
        self.rss_samples_waiting += 1


async def _worker(args: argparse.Namespace) -> WorkerReport:
    import httpx

    from airflow_provider_portkey.hooks import portkey_async
    from airflow_provider_portkey.models import RunStep
    from airflow_provider_portkey.triggers.run_step import RunStepTrigger

    nofile = _raise_nofile(65536)
    steps = plan(args.n, args.stagger, args.in_progress_polls)
    probe = _Probe(args.n)
    base_url = args.url + "/v1"

    # Warm up lazy imports and one-time initialisation (Airflow settings on the first mask_secret,
    # connection lookup, model validation) outside the measurement.
    settings_headers = await _bare_headers()
    RunStep.from_api(_sample_step())

    clients: list[Callable[[], httpx.AsyncClient]] = []

    def open_connections() -> int:
        """Connections in the pools (httpcore internals; 0 if they ever move)."""
        total = 0
        for get_client in clients:
            pool: Any = getattr(getattr(get_client(), "_transport", None), "_pool", None)
            total += len(getattr(pool, "connections", ()))
        return total

    if args.variant == "trigger":
        original = portkey_async.PortkeyAsyncHook.get_run_step

        async def counted(self: portkey_async.PortkeyAsyncHook, *a: Any, **kw: Any) -> RunStep:
            probe.polls += 1
            return await original(self, *a, **kw)

        portkey_async.PortkeyAsyncHook.get_run_step = counted  # type: ignore[method-assign]
        clients.append(portkey_async.shared_client)  # the loop's one client, made on first use
        deadline = time.time() + args.timeout

        async def wait(step: Step) -> list[dict[str, Any]]:
            trigger = RunStepTrigger(
                portkey_conn_id=CONN_ID,
                thread_id=THREAD_ID,
                run_id=RUN_ID,
                step_id=step.step_id,
                deadline=deadline,
                poll_interval=args.poll_interval,
                fail_on_statuses=["failed"],
            )
            return [event.payload async for event in trigger.run()]

    else:
        # The provider's connection limits and in-flight bound: the floor for the same queueing.
        bound = portkey_async.MAX_IN_FLIGHT
        client = httpx.AsyncClient(
            headers=settings_headers,
            limits=httpx.Limits(max_connections=bound, max_keepalive_connections=bound),
            trust_env=False,
        )
        slots = asyncio.Semaphore(bound)
        clients.append(lambda: client)

        async def wait(step: Step) -> list[dict[str, Any]]:
            url = f"{base_url}/threads/{THREAD_ID}/runs/{RUN_ID}/steps/{step.step_id}"
            while True:
                probe.polls += 1
                async with slots:
                    payload = json.loads((await client.get(url)).content)
                if payload["status"] != "in_progress":
                    status = "failure" if payload["status"] == "failed" else "success"
                    return [{"status": status, "step": payload}]
                await asyncio.sleep(args.poll_interval)

    async def one(
        step: Step, waiter: Callable[[Step], Awaitable[list[dict[str, Any]]]]
    ) -> list[dict[str, Any]]:
        await asyncio.sleep(step.start)
        probe.started += 1
        if probe.started == probe.n and probe.finished == 0:
            probe.sample_waiting()
        try:
            return await waiter(step)
        finally:
            probe.finished += 1

    gc.collect()
    gc_timer = _GcTimer()
    gc.callbacks.append(gc_timer)
    rss_before = rss_bytes()
    cpu_before = cpu_seconds()
    wall_before = time.perf_counter()
    stop = asyncio.Event()
    ticker = asyncio.create_task(probe.ticker(args.tick, stop, open_connections))
    outcomes = await asyncio.gather(*(one(step, wait) for step in steps), return_exceptions=True)
    stop.set()
    await ticker
    wall = time.perf_counter() - wall_before
    cpu = cpu_seconds() - cpu_before
    gc.callbacks.remove(gc_timer)
    if args.variant == "bare":
        await client.aclose()
    await portkey_async.close_shared_client()

    lost = duplicated = wrong = events = 0
    errors: list[str] = []
    for step, outcome in zip(steps, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            lost += 1
            errors.append(repr(outcome))
            continue
        events += len(outcome)
        if not outcome:
            lost += 1
        elif len(outcome) > 1:
            duplicated += 1
        event = outcome[0] if outcome else {}
        if outcome and not (
            event.get("status") == step.event_status
            and event.get("step", {}).get("id") == step.step_id
            and event.get("step", {}).get("status") == step.final
        ):
            wrong += 1
            errors.append(repr(event)[:300])
    for error in errors[:5]:
        print(error, file=sys.stderr)
    lags_ms = [lag * 1e3 for lag in probe.lags] or [0.0]
    return WorkerReport(
        variant=args.variant,
        n=args.n,
        events=events,
        lost=lost,
        duplicated=duplicated,
        wrong=wrong,
        polls=probe.polls,
        expected_polls=sum(step.polls for step in steps),
        cpu_seconds=cpu,
        wall_seconds=wall,
        rss_before=rss_before,
        rss_peak_waiting=probe.rss_peak_waiting,
        rss_samples_waiting=probe.rss_samples_waiting,
        lag_p50_ms=percentile(lags_ms, 50),
        lag_p99_ms=percentile(lags_ms, 99),
        lag_max_ms=max(lags_ms),
        ticks=len(probe.lags),
        nofile_soft=nofile,
        open_connections_peak=probe.connections_peak,
        gc_seconds=gc_timer.seconds,
        gc_longest_ms=gc_timer.longest * 1e3,
        gc_collections=gc_timer.collections,
    )


async def _bare_headers() -> dict[str, str]:
    """The exact headers the provider sends with a step's GET, so both variants send the same bytes."""
    from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
    from airflow_provider_portkey.protocol import run_step_request

    hook = PortkeyAsyncHook(CONN_ID)
    return hook._headers(await hook.get_settings(), run_step_request(THREAD_ID, RUN_ID, "step_warmup"))


def _sample_step() -> dict[str, Any]:
    return {
        "id": "step_warmup",
        "object": "thread.run.step",
        "created_at": 0,
        "run_id": RUN_ID,
        "assistant_id": "asst_x",
        "thread_id": THREAD_ID,
        "type": "message_creation",
        "status": "in_progress",
        "step_details": {"type": "message_creation", "message_creation": {"message_id": "msg_x"}},
    }


def _worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.triggerer")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--poll-interval", type=float, required=True)
    parser.add_argument("--stagger", type=float, required=True)
    parser.add_argument(
        "--in-progress-polls", type=lambda text: tuple(map(int, text.split(","))), required=True
    )
    parser.add_argument("--tick", type=float, default=0.01)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    # Airflow logs each poll at INFO to stdout; keep that cost (formatting, writing) but send it to
    # /dev/null, and keep the real stdout for the one JSON line of the report.
    report_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    report = asyncio.run(asyncio.wait_for(_worker(args), args.timeout + 60))
    os.write(report_fd, (json.dumps(asdict(report)) + "\n").encode())


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
