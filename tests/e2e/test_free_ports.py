"""Two demos at once on one machine: every simulator binds a free port, nothing collides.

Both run from a directory outside the checkout, so the default plant and the recipes are
found as package data, not relative to the working directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = ROOT / "tests" / "controller" / "recipes" / "short-culture.yaml"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_two_demos_at_once_both_complete(tmp_path: Path) -> None:
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "cellbatch", "demo", "--out", name, "--recipe", str(SHORT)],
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
            if line.startswith("simulator ")
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
