"""Control charts and site comparison plots as PNG files and one PDF (matplotlib, Agg).

matplotlib is imported inside the functions so that importing ``ebr`` stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ebr.exports.trends import BatchFigures, Chart, Equivalence


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


def _chart_figure(chart: Chart) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    xs = list(range(1, len(chart.values) + 1))
    flagged = {i for i, _ in chart.violations}
    top.plot(xs, chart.values, marker="o", markersize=3, linewidth=0.8, color="#2b5d9c")
    top.scatter([xs[i] for i in sorted(flagged)], [chart.values[i] for i in sorted(flagged)],
                color="#c0392b", zorder=3, s=28, label="run rule broken")  # fmt: skip
    for level, style in ((chart.centre, "-"), (chart.ucl, "--"), (chart.lcl, "--")):
        top.axhline(level, linestyle=style, color="#555555", linewidth=0.8)
    top.axvline(chart.baseline + 0.5, color="#999999", linestyle=":", linewidth=0.8)
    top.set_title(f"{chart.figure}: individuals (limits from the first {chart.baseline} batches)")
    if flagged:
        top.legend(loc="best", fontsize=7)
    ranges = [abs(b - a) for a, b in zip(chart.values, chart.values[1:], strict=False)]
    bottom.plot(xs[1:], ranges, marker="o", markersize=3, linewidth=0.8, color="#2b5d9c")
    bottom.axhline(chart.mr_bar, color="#555555", linewidth=0.8)
    bottom.axhline(chart.mr_ucl, color="#555555", linestyle="--", linewidth=0.8)
    bottom.set_title("moving range", fontsize=9)
    bottom.set_xlabel("batch (in order of creation)")
    fig.tight_layout()
    return fig


def _sites_figure(
    figure: str, batches: Sequence[BatchFigures], results: Sequence[Equivalence]
) -> Any:
    from matplotlib.figure import Figure

    sites = sorted({b.site for b in batches})
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for x, site in enumerate(sites):
        values = [
            float(value)
            for b in batches
            if b.site == site and (value := b.figures.get(figure)) is not None
        ]
        ax.scatter([x] * len(values), values, s=14, alpha=0.7)
        if values:
            mean = sum(values) / len(values)
            ax.hlines(mean, x - 0.25, x + 0.25, color="black")
    ax.set_xticks(range(len(sites)), sites)
    verdicts = ", ".join(
        f"{r.site}: {'equivalent' if r.equivalent else 'NOT equivalent'} (±{r.margin:g})"
        for r in results
        if r.figure == figure
    )
    ax.set_title(
        f"{figure} by site — TOST vs {results[0].reference if results else '-'}\n{verdicts}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _empty_figure() -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2))
    fig.text(0.5, 0.5, "fewer than two ended batches: nothing to chart", ha="center")
    return fig


def write_charts(
    charts: Sequence[Chart],
    out_dir: Path,
    *,
    batches: Sequence[BatchFigures] = (),
    equivalence: Sequence[Equivalence] = (),
    title: str = "trends",
) -> list[Path]:
    """One PNG per chart (and per compared figure) plus ``<title>.pdf`` with all of them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.backends.backend_pdf import PdfPages

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures: list[tuple[str, Any]] = [
        (f"chart-{_file_stem(c.figure)}", _chart_figure(c)) for c in charts
    ]
    for name in dict.fromkeys(r.figure for r in equivalence):
        figures.append((f"sites-{_file_stem(name)}", _sites_figure(name, batches, equivalence)))
    if not figures:
        figures.append(("no-charts", _empty_figure()))
    pdf_path = out_dir / f"{_file_stem(title)}.pdf"
    with PdfPages(pdf_path) as pdf:
        for stem, fig in figures:
            FigureCanvasAgg(fig)
            png = out_dir / f"{stem}.png"
            fig.savefig(png, dpi=90)
            written.append(png)
            pdf.savefig(fig)
    written.append(pdf_path)
    return written
