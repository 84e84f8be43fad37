"""``python -m simulators.bioreactor`` serves until SIGTERM; asyncua's CLI tools read it."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

WAIT_S = 15.0


@pytest.mark.slow
async def test_entry_point_serves_real_opcua_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.bioreactor",
        "--vessels",
        "BR-01,BR-02",
        "--port",
        "0",
        "--time-scale",
        "100",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode()
        assert banner.startswith("serving opc.tcp://127.0.0.1:"), banner
        url = banner.split()[1]
        tools = Path(sys.executable).parent
        if not (tools / "uaread").exists():
            pytest.skip("asyncua command-line tools not installed next to the interpreter")
        uaread = asyncio.create_subprocess_exec(
            str(tools / "uaread"),
            "-u",
            url,
            "-n",
            "ns=2;s=BR-02.Temperature.SP",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        uals = asyncio.create_subprocess_exec(
            str(tools / "uals"),
            "-u",
            url,
            "-l",
            "0",
            "-d",
            "3",
            "-p",
            "0:Objects,2:Bioreactors",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        read, listing = await asyncio.gather(uaread, uals)
        read_out, _ = await asyncio.wait_for(read.communicate(), WAIT_S)
        list_out, _ = await asyncio.wait_for(listing.communicate(), WAIT_S)
        assert read.returncode == 0 and read_out.decode().strip() == "37.0"
        assert listing.returncode == 0
        assert "ns=2;s=BR-02.Culture.ViableDensity" in list_out.decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(proc.wait(), WAIT_S)
    assert status == 0
