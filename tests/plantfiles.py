"""The demo plant file moved onto free ports and private symlinks, so tests and
benchmarks can run beside a developer's own `make demo`."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def private_demo_plant(directory: Path) -> Path:
    """A copy of plants/demo.toml in ``directory`` using port 0 and its own pty links."""
    text = (ROOT / "plants" / "demo.toml").read_text()
    text = text.replace(":4841/", ":0/").replace("127.0.0.1:5020", "127.0.0.1:0")
    text = text.replace("/tmp/cellbatch-sim/", f"{directory}/sim/")
    path = directory / "plant.toml"
    path.write_text(text)
    return path
