"""`python -m airflow_provider_portkey.emulator`: serve until SIGTERM or SIGINT.

Prints exactly one line, `portkey emulator listening on URL`, once it accepts connections, so a
parent process can wait for that line instead of polling.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from airflow_provider_portkey.emulator.server import EmulatorServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_portkey.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--mode", choices=("portkey", "openai"), default="portkey")
    parser.add_argument("--no-seed", dest="seed", action="store_false", help="start without the demo steps")
    args = parser.parse_args(argv)
    asyncio.run(_serve(EmulatorServer(mode=args.mode, host=args.host, port=args.port, seed=args.seed)))


async def _serve(server: EmulatorServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        print(f"portkey emulator listening on {server.url}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    main()
