"""Run every benchmark and print one table: ``python -m bench`` (``--smoke`` for a quick check).

python -m bench                      # the full run (about 6-9 minutes on 2 cores)
python -m bench --only poll_sync     # one benchmark (or several: --only triggerer triggerer_saturated)
python -m bench --write-docs         # also replace the results block in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import parse_cost, poll_async, poll_sync, requests_per_wait, triggerer
from bench.common import Result, machine, table

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"

SMOKE_REGIME = triggerer.Regime(
    "triggerer smoke", n=20, poll_interval=0.2, stagger=0.05, in_progress_polls=(1, 3)
)

#: name -> (full run, smoke run)
BENCHMARKS: dict[str, tuple[Callable[[], Result], Callable[[], Result]]] = {
    "poll_sync": (lambda: poll_sync.run(n=3000, warmup=200), lambda: poll_sync.run(n=20, warmup=2)),
    "poll_async": (
        lambda: poll_async.run(n=3000, warmup=200, first_polls=100),
        lambda: poll_async.run(n=20, warmup=2, first_polls=3),
    ),
    "triggerer": (
        lambda: triggerer.run(triggerer.UNSATURATED),
        lambda: triggerer.run(dataclasses.replace(SMOKE_REGIME, paired=True), timeout=60),
    ),
    "triggerer_saturated": (
        lambda: triggerer.run(triggerer.SATURATED),
        lambda: triggerer.run(dataclasses.replace(SMOKE_REGIME, rounds=2), timeout=60),
    ),
    "parse_cost": (lambda: parse_cost.run(rounds=9), lambda: parse_cost.run(rounds=1, tasks=3)),
    "requests_per_wait": (requests_per_wait.run, lambda: requests_per_wait.run(keys=5)),
}


def run_all(names: list[str], *, smoke: bool = False, progress: bool = True) -> list[Result]:
    results: list[Result] = []
    for name in names:
        full, quick = BENCHMARKS[name]
        if progress:
            print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = (quick if smoke else full)()
        result.seconds = time.perf_counter() - started
        if progress:
            print(f"  {name}: {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def report(
    results: list[Result], info: dict[str, str], command: str, seconds: float, *, markdown: bool
) -> str:
    rows = [row for result in results for row in result.rows]
    notes = [f"{result.name}: {note}" for result in results for note in result.notes]
    timings = ", ".join(f"{result.name} {result.seconds:.0f} s" for result in results)
    if markdown:
        machine_lines = "\n".join(f"- {key}: {value}" for key, value in info.items())
        note_lines = "\n".join(f"- {note}" for note in notes)
        return (
            f"Command: `{command}` (took {seconds:.0f} s: {timings})\n\n{machine_lines}\n\n"
            f"{table(rows, markdown=True)}\n\n{note_lines}\n"
        )
    header = " | ".join(f"{key} {value}" for key, value in info.items())
    return f"{header}\n\n{table(rows)}\n\n" + "\n".join(notes) + f"\n\ntotal {seconds:.0f} s ({timings})"


def write_docs(block: str, path: Path = DOCS) -> None:
    """Replace what is between the results markers in ``docs/benchmarks.md``."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{block}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--smoke", action="store_true", help="tiny N: checks the benchmarks work, not speed")
    parser.add_argument("--write-docs", action="store_true", help=f"update the results block of {DOCS.name}")
    parser.add_argument("--json", type=Path, help="also write every figure and check as JSON here")
    args = parser.parse_args(argv)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    info = machine()
    started = time.perf_counter()
    results = run_all(args.only, smoke=args.smoke)
    seconds = time.perf_counter() - started
    print(report(results, info, command.strip(), seconds, markdown=False))
    if args.write_docs:
        write_docs(report(results, info, command.strip(), seconds, markdown=True))
    if args.json:
        payload: dict[str, Any] = {
            "machine": info,
            "seconds": seconds,
            "results": [
                {
                    "name": r.name,
                    "seconds": r.seconds,
                    "rows": [{**vars(row), "ratio": row.ratio} for row in r.rows],
                    "checks": r.checks,
                    "notes": r.notes,
                }
                for r in results
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0
