"""`cellbatch trend`: per-batch figures, control charts and site equivalence of a recipe."""

from __future__ import annotations

import json
import math
import os
from datetime import date
from pathlib import Path
from typing import Any

import click

from cellbatch.cli_common import db_option, open_store, plain_errors, table
from ebr.exports.trend_charts import write_charts
from ebr.exports.trends import DEFAULT_MARGINS, charts, collect, compare_sites, site_summary
from recipes import load_recipe
from recipes.fields import suggest

KEY_FIGURES = ("lag_h", "doubling_time_h", "fold_expansion", "final_viability_pct", "holds",
               "duration_h", "recovery_pct", "end_temperature_c")  # fmt: skip

MARGIN_HELP = (
    "Equivalence margin FIGURE=VALUE, repeatable (defaults: "
    + ", ".join(f"{name}={value:g}" for name, value in DEFAULT_MARGINS.items())
    + ")."
)


def _recipe_name(value: str) -> str:
    """A recipe name as given, or the name in the header of a recipe file."""
    if value.endswith((".yaml", ".yml")) or Path(value).is_file():
        return load_recipe(value).header.name
    return value


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--since`` as an ISO date (YYYY-MM-DD), compared with each batch's UTC creation."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; expected YYYY-MM-DD, e.g. 2026-11-01"
        ) from None


def _margins(values: tuple[str, ...]) -> dict[str, float]:
    margins: dict[str, float] = {}
    for item in values:
        name, sep, number = (part.strip() for part in item.partition("="))
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if not sep or not name or not math.isfinite(value) or value <= 0:
            raise click.BadParameter(
                f"{item!r}: expected FIGURE=POSITIVE_NUMBER, e.g. lag_h=6", param_hint="--margin"
            )
        if name not in KEY_FIGURES and not name.startswith("excursion_min."):
            raise click.BadParameter(
                f"{item!r}: no figure {name!r}{suggest(name, KEY_FIGURES)} (figures: "
                f"{', '.join(KEY_FIGURES)}, excursion_min.MONITOR)",
                param_hint="--margin",
            )
        margins[name] = value
    return margins


@click.command(name="trend")
@click.argument("recipe")
@db_option
@click.option(
    "--since",
    default=None,
    callback=_since,
    help="Only batches created on or after this date (YYYY-MM-DD, UTC).",
)
@click.option("--site", default=None, help="Only batches of this site (from the plant file).")
@click.option("--baseline", type=click.IntRange(min=3), default=None,
              help="Control limits from the first N batches (default: all).")  # fmt: skip
@click.option("--compare-sites", is_flag=True, help="Summarise per site and test equivalence.")
@click.option("--reference-site", default=None, help="Site the others are compared with.")
@click.option("--margin", "margin_items", multiple=True, help=MARGIN_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write the charts (PNG each, one PDF) into this folder.")  # fmt: skip
@plain_errors
def trend(
    recipe: str,
    db_url: str,
    since: str | None,
    site: str | None,
    baseline: int | None,
    compare_sites: bool,
    reference_site: str | None,
    margin_items: tuple[str, ...],
    as_json: bool,
    out_dir: str | None,
) -> None:
    """Per-batch figures and I-MR control charts across batches (and sites) of RECIPE."""
    name = _recipe_name(recipe)
    margins = _margins(margin_items)
    with open_store(db_url) as store:
        batches = collect(store, name, since=since, site=site, jobs=os.cpu_count() or 1)
    drawn = charts(batches, baseline)
    out_of_trend: dict[str, dict[str, list[str]]] = {}
    for chart in drawn:
        for batch_id, rules in chart.flagged().items():
            out_of_trend.setdefault(batch_id, {})[chart.figure] = rules
    equivalence = []
    if compare_sites:
        try:
            equivalence = compare_sites_of(batches, margins, reference_site)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    written: list[Path] = []
    if out_dir is not None:
        written = write_charts(drawn, Path(out_dir), batches=batches, equivalence=equivalence,
                               title=f"{name}-trends")  # fmt: skip
    report: dict[str, Any] = {
        "recipe": name,
        "batches": [b.to_dict() for b in batches],
        "charts": [c.to_dict() for c in drawn],
        "out_of_trend": out_of_trend,
        "files": [str(p) for p in written],
    }
    if compare_sites:
        report["sites"] = site_summary(batches)
        report["equivalence"] = [e.to_dict() for e in equivalence]
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _print(report, batches)


def compare_sites_of(batches: Any, margins: dict[str, float], reference: str | None) -> list[Any]:
    """TOST results, or ValueError naming a missing reference site."""
    return compare_sites(batches, margins, reference)


def _print(report: dict[str, Any], batches: Any) -> None:
    if not batches:
        click.echo(f"no ended batches of {report['recipe']}")
        return
    present = [f for f in KEY_FIGURES if any(b.figures.get(f) is not None for b in batches)]
    rows = [
        (b.batch_id, b.site or "-", *(_fmt(b.figures.get(f)) for f in present),
         "OUT OF TREND" if b.batch_id in report["out_of_trend"] else "")
        for b in batches
    ]  # fmt: skip
    click.echo(table(("BATCH", "SITE", *present, "TREND"), rows))
    for batch_id, figures in report["out_of_trend"].items():
        for figure, rules in figures.items():
            click.echo(f"out of trend: {batch_id} {figure}: {'; '.join(rules)}")
    for item in report.get("equivalence", []):
        verdict = "equivalent" if item["equivalent"] else "NOT equivalent"
        low, high = item["ci90"]
        click.echo(
            f"{item['figure']}  {item['site']} vs {item['reference']}: difference "
            f"{item['difference']:+.3g} (90 % CI {low:+.3g} … {high:+.3g}), margin "
            f"±{item['margin']:g}, p {item['p_value']:.3g}: {verdict}"
        )
    for path in report["files"]:
        click.echo(f"wrote {path}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
