"""Collects figures and writes ``bench/results.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Figure:
    """One measured figure, optionally next to a baseline measured in the same run."""

    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None


class Results:
    """Prints figures as they come and saves them as a JSON list."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: str | None = None,
        baseline_value: float | None = None,
        higher_is_better: bool = True,
    ) -> Figure:
        """Record a figure; the ratio is ours/baseline for rates, baseline/ours for times."""
        ratio = None
        if baseline_value:
            ratio = value / baseline_value if higher_is_better else baseline_value / value
        fig = Figure(
            name,
            round(value, 4),
            unit,
            baseline,
            None if baseline_value is None else round(baseline_value, 4),
            None if ratio is None else round(ratio, 3),
        )
        self.figures.append(fig)
        line = f"{name:<44} {value:>12,.1f} {unit}"
        if baseline is not None and baseline_value is not None:
            line += f"   | {baseline}: {baseline_value:,.1f} {unit}   ratio {ratio:.2f}"
        print(line, flush=True)
        return fig

    def save(self, path: Path) -> None:
        """Write the figures as a JSON list of objects."""
        path.write_text(json.dumps([asdict(f) for f in self.figures], indent=1) + "\n")
