"""Shared e2e fixtures: simulators served by `cellbatch sim serve` in their own process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.plantfiles import private_demo_plant

ROOT = Path(__file__).resolve().parents[2]
#: The session demo's clock: 12 simulated days in ~104 s (at 15,000× and load average 12
#: the culture overran and held (DO): keep it at 10,000×).
DEMO_TIME_SCALE = 10_000
#: K-01…K-24: one fresh vessel per kill-test attempt (a vessel is inoculated once).
SERVED_VESSELS = [
    "BR-01",
    "BR-02",
    "GMP-01",
    "GMP-02",
    *(f"SVC-{i:02d}" for i in range(1, 25)),
    "MQTT-01",
    "LEASE-01",
    "LEASE-02",
    "ASSET-01",
    "ASSET-02",
    "REPEAT-01",
    *(f"K-{i:02d}" for i in range(1, 25)),
    "HA-01",
    "HA-02",
]


def plant_for_unit(path: Path, url: str, vessel: str) -> Path:
    """A simulation plant file with one bioreactor unit at ``url``."""
    path.write_text(
        '[plant]\nname = "served"\nmode = "simulation"\n'
        f'[[units]]\nname = "{vessel}"\nclass = "rocking_bioreactor"\n'
        f'profile = "rocking_bioreactor_opcua"\nendpoint = "{url}"\n'
        f'address = {{ vessel = "{vessel}" }}\n'
    )
    return path


@pytest.fixture(scope="session")
def served_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cellbatch sim serve` (bioreactors at 2000×) running in its own process."""
    tmp = tmp_path_factory.mktemp("served")
    plant = tmp / "sim.toml"
    vessels = ", ".join(f'"{v}"' for v in SERVED_VESSELS)
    plant.write_text(
        '[plant]\nname = "sim"\nmode = "simulation"\n'
        '[[simulators]]\nname = "bioreactors"\nkind = "opcua-bioreactor"\n'
        f'listen = "opc.tcp://127.0.0.1:0/cellbatch/served"\nvessels = [{vessels}]\n'
        '[[units]]\nname = "BR-01"\nclass = "rocking_bioreactor"\n'
        'profile = "rocking_bioreactor_opcua"\n'
        'endpoint = "opc.tcp://127.0.0.1:0/cellbatch/served"\naddress = { vessel = "BR-01" }\n'
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cellbatch",
            "sim",
            "serve",
            "--plant",
            str(plant),
            "--time-scale",
            "2000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        _name, url = server.stdout.readline().split()
        assert server.stdout.readline().strip() == "ready"
        yield url
    finally:
        server.terminate()
        assert server.wait(10) == 0


@pytest.fixture
def served_plant(served_url: str, tmp_path: Path) -> Path:
    """A plant file for `cellbatch run` with unit BR-02 on the served simulator."""
    return plant_for_unit(tmp_path / "run.toml", served_url, "BR-02")


@dataclass
class Demo:
    """One finished `cellbatch demo` run: its output folder, store, batch and JSON export."""

    out: Path
    db: Path
    batch_id: str
    stdout: str
    export: dict[str, Any]


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """`cellbatch demo` run once per session (test_demo and test_readme read it; a test
    that changes the store works on a copy)."""
    out = tmp_path_factory.mktemp("demo")
    plant = private_demo_plant(out)
    proc = subprocess.run(
        [sys.executable, "-m", "cellbatch", "demo", "--out", str(out), "--plant", str(plant),
         "--time-scale", str(DEMO_TIME_SCALE)],
        cwd=ROOT, capture_output=True, text=True,
        timeout=480,  # a hang guard: on a loaded machine the demo is CPU-bound
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"^batch (CB-\S+): Complete$", proc.stdout, re.M)
    assert match, proc.stdout
    batch_id = match.group(1)
    export = json.loads((out / f"{batch_id}.json").read_text())
    return Demo(out, out / "demo.sqlite", batch_id, proc.stdout, export)
