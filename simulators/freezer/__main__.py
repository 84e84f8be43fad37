"""Serve a simulated controlled-rate freezer over Modbus TCP until SIGINT or SIGTERM.

Example::

    python -m simulators.freezer --port 5021 --time-scale 60
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from simulators.freezer.modbus_server import FreezerServer


async def serve(args: argparse.Namespace) -> None:
    """Run one server until a termination signal arrives."""
    server = FreezerServer(url=f"modbus+tcp://{args.host}:{args.port}", time_scale=args.time_scale)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await server.start()
    try:
        print(f"serving {server.endpoint} time_scale={args.time_scale:g}", flush=True)
        await done.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m simulators.freezer")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=5021, help="TCP port, 0 = any free port")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated s per wall s")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
