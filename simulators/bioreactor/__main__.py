"""Serve simulated bioreactors over OPC UA until SIGINT or SIGTERM.

Example::

    python -m simulators.bioreactor --vessels BR-01 BR-02 --port 4841 --time-scale 100
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from simulators.bioreactor.opcua_server import BioreactorServer


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.bioreactor", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--vessels", nargs="+", default=["BR-01"], help="vessel names (space or comma separated)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4841, help="TCP port, 0 = any free port")
    parser.add_argument("--path", default="/cellbatch/bioreactors", help="endpoint path")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated s per wall s")
    parser.add_argument("--step-s", type=float, default=60.0, help="simulated s per model step")
    parser.add_argument("--seed", type=int, default=0, help="sensor-noise seed")
    parser.add_argument(
        "--report-by-exception",
        type=float,
        default=None,
        metavar="DEADBAND",
        help="notify a measurement only when it moved more than DEADBAND",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run one server until a termination signal arrives."""
    vessels = [v for item in args.vessels for v in item.split(",") if v]
    server = BioreactorServer(
        vessels,
        url=f"opc.tcp://{args.host}:{args.port}{args.path}",
        time_scale=args.time_scale,
        step_s=args.step_s,
        seed=args.seed,
        report_by_exception=args.report_by_exception,
    )
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await server.start()
    try:
        print(
            f"serving {server.endpoint} vessels={','.join(vessels)} "
            f"time_scale={args.time_scale:g} epoch={server.clock.epoch.isoformat()}",
            flush=True,
        )
        await done.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parse(argv)
    try:
        asyncio.run(serve(args))
    except ValueError as exc:  # bad arguments
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
