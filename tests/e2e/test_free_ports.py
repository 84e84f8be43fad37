"""Two demos at once on one machine: every simulator binds a free port, nothing collides.

Both run from a directory outside the checkout, so the default plant and the recipes are
found as package data, not relative to the working directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml"
PROMPTS = ROOT / "tests" / "controller" / "recipes" / "prompts.yaml"  # quick, binds a vessel

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_two_demos_at_once_both_complete(tmp_path: Path) -> None:
    procs = {
        name: subprocess.Popen(
            # The pace is not what this tests: a slower clock keeps two demos on a loaded
            # machine from lagging into a held batch.
            [
                sys.executable,
                "-m",
                "cellbatch",
                "demo",
                "--out",
                name,
                "--recipe",
                str(SHORT),
                "--time-scale",
                "5000",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("A", "B")
    }
    outputs = {}
    for name, proc in procs.items():
        try:
            outputs[name] = proc.communicate(timeout=300)
        finally:
            proc.kill()
    for name, proc in procs.items():
        out, err = outputs[name]
        assert proc.returncode == 0, f"demo {name}: {err}\n{out}"
        assert "Complete" in out
        assert "Traceback" not in err
        assert list((tmp_path / name).glob("*.pdf")), f"demo {name} wrote no PDF"
    ports = {
        name: {
            line.split()[-1]
            for line in outputs[name][0].splitlines()
            # TCP ports only: a pty's number is free again once the other demo closed it
            if line.startswith("simulator ") and "://127.0.0.1:" in line
        }
        for name in outputs
    }
    assert ports["A"] and ports["B"]
    assert not ports["A"] & ports["B"], "the two demos bound the same endpoint"


def test_controller_serve_prints_the_port_it_bound(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cellbatch",
            "controller",
            "serve",
            "--db",
            f"sqlite:///{tmp_path / 'c.sqlite'}",
            "--listen",
            "opc.tcp://127.0.0.1:0",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for _ in range(20):  # bounded: recovery lines, then listening, then ready
            line = proc.stdout.readline().strip()
            lines.append(line)
            if line == "ready" or not line:
                break
        listening = [line for line in lines if line.startswith("listening ")]
        assert listening, (lines, proc.stderr.read() if proc.poll() is not None else "")
        url = listening[0].split()[1]
        assert url.startswith("opc.tcp://127.0.0.1:")
        assert not url.endswith(":0"), url
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert port > 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_sim_serve_free_ports_feeds_run_through_an_endpoints_file(tmp_path: Path) -> None:
    """`sim serve --free-ports --endpoints FILE` writes where it really bound; `run
    --endpoints FILE` reaches the simulators there (the plant file's port is never
    bound); a file for another plant or not JSON is refused by name; the file goes
    when the simulators stop."""
    plant = tmp_path / "plant.toml"
    address = "opc.tcp://127.0.0.1:4999/never-bound"
    plant.write_text(
        '[plant]\nname = "free"\nmode = "simulation"\n[simulation]\ntime_scale = 20000\n'
        f'[[simulators]]\nname = "bioreactors"\nkind = "opcua-bioreactor"\nlisten = "{address}"\n'
        'vessels = ["BR-01"]\n'
        '[[units]]\nname = "BR-01"\nclass = "rocking_bioreactor"\n'
        f'profile = "rocking_bioreactor_opcua"\nendpoint = "{address}"\n'
        'address = { vessel = "BR-01" }\n'
    )
    endpoints = tmp_path / "endpoints.json"
    server = subprocess.Popen(
        [sys.executable, "-m", "cellbatch", "sim", "serve", "--plant", str(plant),
         "--free-ports", "--endpoints", str(endpoints)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        _name, url = server.stdout.readline().split()
        assert server.stdout.readline().strip() == "ready"
        assert json.loads(endpoints.read_text())["endpoints"] == {address: url}

        def run(*more: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "cellbatch", "run", str(PROMPTS), "--plant", str(plant),
                 "--db", f"sqlite:///{tmp_path / 'r.sqlite'}", "--simulated-operator",
                 "--coi", "COI-1", *more],
                cwd=ROOT, capture_output=True, text=True, timeout=120,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

        done = run("--endpoints", str(endpoints))
        assert done.returncode == 0, done.stderr
        assert "Complete" in done.stdout.splitlines()[-1]
        other = tmp_path / "other.json"
        other.write_text('{"endpoints": {"opc.tcp://elsewhere:1": "opc.tcp://127.0.0.1:2"}}')
        refused = run("--endpoints", str(other))
        assert refused.returncode == 1
        assert f"{other}: none of its addresses is a unit endpoint of {plant}" in refused.stderr
        other.write_text('{"endpoints": ')
        refused = run("--endpoints", str(other))
        assert refused.returncode == 1 and f"{other}:1:15: not JSON" in refused.stderr
    finally:
        server.terminate()
        assert server.wait(10) == 0
    assert not endpoints.exists()
