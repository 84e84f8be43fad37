"""Trends across batches: per-batch figures from the records, I-MR control charts with
run rules, and equivalence of sites (two one-sided tests).

Per batch (:func:`batch_figures`, all read-only from the journal and the samples):

- expansion (batches with ``culture.viable_density`` samples): ``lag_h`` (where the
  tangent of steepest growth meets the inoculation density), ``doubling_time_h``
  (ln 2 / the steepest specific growth rate over a 24 h window of ln density),
  ``fold_expansion`` (final viable cells / inoculated cells; density ratio when the
  volumes are not recorded), ``final_viability_pct``;
- every batch: ``excursion_min.<monitor>`` (minutes outside the monitor's alert band
  once monitors are active), ``holds``, ``duration_h`` (start to end, process time);
- wash: ``recovery_pct``; cryo: ``end_temperature_c`` (from ``program.complete``).

:func:`control_chart` computes individuals / moving-range limits from a declared
baseline (the first ``baseline`` batches; all when not given) and flags the usual run
rules: (1) a point beyond 3 sigma; (2) 9 in a row on one side of the centre; (3) 6 in a
row steadily rising or falling; (5) 2 of 3 beyond 2 sigma on one side; MR beyond its UCL.

:func:`compare_sites` summarises each figure per site and runs Welch's TOST against a
reference site with a declared margin: equivalent when the 90 % confidence interval of
the difference lies within ±margin.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ebr.record.clock import parse_ts
from ebr.record.gcpause import gc_paused
from ebr.record.kinds import Kind
from ebr.record.model import Entry
from ebr.record.query import journal_entries, list_batches
from ebr.record.sample_columns import SampleColumns, read_sample_columns, short_tag
from ebr.record.store import Store

_EMPTY = np.zeros(0)

DENSITY = "culture.viable_density"
VIABILITY = "culture.viability"
GROWTH_WINDOW_H = 24.0
FINAL_STATES = frozenset({"Complete", "Stopped", "Aborted"})
DEFAULT_MARGINS: Mapping[str, float] = {
    "lag_h": 8.0,
    "doubling_time_h": 3.0,
    "fold_expansion": 25.0,
    "final_viability_pct": 3.0,
    "duration_h": 12.0,
    "recovery_pct": 3.0,
}
"""Equivalence margins (± in the figure's unit) unless the command declares others."""


@dataclass
class BatchFigures:
    """One batch's trend figures."""

    batch_id: str
    recipe: str
    site: str
    created_at: str
    figures: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "batch_id": self.batch_id,
            "recipe": self.recipe,
            "site": self.site,
            "created_at": self.created_at,
            "figures": self.figures,
        }


def collect(
    store: Store, recipe: str, *, since: str | None = None, site: str | None = None
) -> list[BatchFigures]:
    """Figures of every ended batch of `recipe` (created on or after `since`, at `site`)."""
    found: list[BatchFigures] = []
    for summary in list_batches(store):
        if summary.recipe_name != recipe or summary.state not in FINAL_STATES:
            continue
        if since is not None and summary.created_at < since:
            continue
        with store.snapshot() as conn, gc_paused():
            entries = journal_entries(conn, summary.batch_id)
            batch_site = _site(entries)
            if site is not None and batch_site != site:
                continue
            columns = read_sample_columns(conn, summary.batch_id, _tags_needed(entries))
        found.append(
            BatchFigures(
                summary.batch_id,
                recipe,
                batch_site,
                summary.created_at,
                batch_figures(entries, columns),
            )
        )
    return found


def _site(entries: Sequence[Entry]) -> str:
    plant = entries[0].data.get("plant") if entries else None
    return str(plant.get("site") or "") if isinstance(plant, dict) else ""


def _tags_needed(entries: Sequence[Entry]) -> Callable[[str], bool]:
    """Which stored tags the figures read: growth, viability and the recipe's monitor tags
    (by name without the unit)."""
    wanted = {DENSITY, VIABILITY} | {str(m.get("tag")) for m in _monitors(entries)}
    return lambda tag: short_tag(tag) in wanted


def batch_figures(entries: Sequence[Entry], columns: SampleColumns) -> dict[str, float | None]:
    """The trend figures of one batch from its journal and sample columns.

    A series is named by its tag without the unit (``culture.viable_density``); times are
    hours from the first usable sample.
    """
    epoch = columns.first_usable()
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if epoch is not None:
        for short in {short_tag(name) for name in columns.names}:
            series[short] = columns.series(short, epoch)
    figures: dict[str, float | None] = {}
    times = _times(entries, epoch)
    figures.update(_expansion(series, entries, times))
    figures.update(_excursions(series, entries, times))
    figures["holds"] = float(
        sum(1 for e in entries if e.kind == Kind.BATCH_STATE and e.data.get("to") == "Held")
    )
    start, end = times.get("start"), times.get("end")
    figures["duration_h"] = None if start is None or end is None else end - start
    for entry in entries:
        if entry.kind == Kind.PROGRAM_COMPLETE:
            report = entry.data.get("report") or {}
            if "cell_recovery.pv" in report:
                figures["recovery_pct"] = float(report["cell_recovery.pv"])
            if "chamber_temperature.pv" in report:
                figures["end_temperature_c"] = float(report["chamber_temperature.pv"])
    return figures


def _times(entries: Sequence[Entry], epoch: datetime | None) -> dict[str, float]:
    """Process times (h from the first sample) of the batch start, end and inoculation."""
    found: dict[str, float] = {}
    for entry in entries:
        stamp = entry.data.get("t")
        if not isinstance(stamp, str):
            continue
        moment = parse_ts(stamp)
        epoch = epoch or moment
        hours = (moment - epoch).total_seconds() / 3600
        if entry.kind == Kind.BATCH_STATE:
            if entry.data.get("to") == "Running" and "start" not in found:
                found["start"] = hours
            if entry.data.get("to") in FINAL_STATES:
                found["end"] = hours
        elif entry.kind == Kind.METHOD_INTENT and entry.data.get("method") == "inoculate":
            found["inoculated"] = hours
        elif entry.kind == Kind.MONITORS_ACTIVE:
            found["monitors"] = hours
    return found


def _expansion(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    entries: Sequence[Entry],
    times: Mapping[str, float],
) -> dict[str, float | None]:
    t_all, x_all = series.get(DENSITY, (_EMPTY, _EMPTY))
    if not len(t_all):
        return {}
    start = times.get("inoculated", float(t_all[0]))
    keep = (t_all >= start) & (x_all > 0)
    t, x = t_all[keep], x_all[keep]
    out: dict[str, float | None] = {
        "lag_h": None,
        "doubling_time_h": None,
        "fold_expansion": None,
        "final_viability_pct": None,
    }
    viability = series.get(VIABILITY, (_EMPTY, _EMPTY))[1]
    if len(viability):
        out["final_viability_pct"] = float(viability[-1])
    if len(t) < 3:
        return out
    mu, intercept = _steepest(t, x)
    if mu is not None and mu > 0 and intercept is not None:
        out["doubling_time_h"] = math.log(2) / mu
        x0 = math.log(float(x[0]))
        out["lag_h"] = max(0.0, (x0 - intercept) / mu - start)
    inoculum, volume = _inoculum_and_volume(entries)
    if inoculum and volume:
        out["fold_expansion"] = float(x[-1]) * volume / inoculum
    else:
        out["fold_expansion"] = float(x[-1] / x[0])
    return out


def _steepest(t: np.ndarray, x: np.ndarray) -> tuple[float | None, float | None]:
    """The steepest least-squares slope of ln x over a sliding window, and its intercept.

    Windows start at every point and span at most ``GROWTH_WINDOW_H`` (at least half of it,
    and three points); sums over each window come from prefix sums, so this is O(n).
    """
    y = np.log(x)
    shift = t[0]
    t = t - shift
    zero = np.zeros(1)
    st, sy = np.concatenate((zero, np.cumsum(t))), np.concatenate((zero, np.cumsum(y)))
    stt, sty = np.concatenate((zero, np.cumsum(t * t))), np.concatenate((zero, np.cumsum(t * y)))
    first = np.arange(len(t))
    last = np.searchsorted(t, t + GROWTH_WINDOW_H, side="right")  # exclusive end
    n = (last - first).astype(float)
    span = t[np.maximum(last - 1, first)] - t
    sum_t, sum_y = st[last] - st[first], sy[last] - sy[first]
    sum_tt, sum_ty = stt[last] - stt[first], sty[last] - sty[first]
    denominator = n * sum_tt - sum_t * sum_t
    usable = (n >= 3) & (span >= GROWTH_WINDOW_H / 2) & (denominator > 0)
    if not usable.any():
        return None, None
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.where(usable, (n * sum_ty - sum_t * sum_y) / denominator, -np.inf)
    best = int(np.argmax(slopes))
    slope = float(slopes[best])
    intercept = float((sum_y[best] - slope * sum_t[best]) / n[best]) - slope * shift
    return slope, intercept


def _inoculum_and_volume(entries: Sequence[Entry]) -> tuple[float | None, float | None]:
    inoculum = volume = None
    for entry in entries:
        if entry.kind == Kind.METHOD_INTENT and entry.data.get("method") == "inoculate":
            args = entry.data.get("args") or {}
            inoculum = _number(args.get("viable_cells"))
        elif entry.kind == Kind.WRITE_INTENT and entry.data.get("capability") == "volume.sp":
            volume = _number(entry.data.get("new"))
    return inoculum, volume


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _monitors(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """The monitors of the recipe content the batch recorded at creation."""
    created = entries[0].data if entries else {}
    recipe = created.get("recipe") if isinstance(created, dict) else None
    content = recipe.get("content") if isinstance(recipe, dict) else None
    monitors = content.get("monitors") if isinstance(content, dict) else None
    return [m for m in monitors or [] if isinstance(m, dict)]


def _excursions(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    entries: Sequence[Entry],
    times: Mapping[str, float],
) -> dict[str, float | None]:
    """Minutes outside each monitor's alert band (action band without one), from the
    monitors' activation on: each sample counts until the next one."""
    out: dict[str, float | None] = {}
    since = times.get("monitors")
    for monitor in _monitors(entries):
        tag, band = monitor.get("tag"), monitor.get("alert") or monitor.get("action") or {}
        t, value = series.get(str(tag), (_EMPTY, _EMPTY))
        low, high = band.get("low"), band.get("high")
        minutes = 0.0
        if since is not None and len(t) > 1:
            outside = np.zeros(len(t) - 1, dtype=bool)
            if low is not None:
                outside |= value[:-1] < low
            if high is not None:
                outside |= value[:-1] > high
            counted = outside & (t[:-1] >= since)
            minutes = float(np.diff(t)[counted].sum() * 60)
        out[f"excursion_min.{monitor.get('name')}"] = minutes
    return out


# -- control charts -------------------------------------------------------------------


@dataclass
class Chart:
    """An individuals / moving-range chart of one figure across batches."""

    figure: str
    batch_ids: list[str]
    values: list[float]
    centre: float
    sigma: float
    mr_bar: float
    baseline: int
    violations: list[tuple[int, str]]

    @property
    def ucl(self) -> float:
        """Upper control limit of the individuals."""
        return self.centre + 3 * self.sigma

    @property
    def lcl(self) -> float:
        """Lower control limit of the individuals."""
        return self.centre - 3 * self.sigma

    @property
    def mr_ucl(self) -> float:
        """Upper control limit of the moving ranges (D4 = 3.267)."""
        return 3.267 * self.mr_bar

    def flagged(self) -> dict[str, list[str]]:
        """Batch → the rules it broke."""
        out: dict[str, list[str]] = {}
        for index, rule in self.violations:
            out.setdefault(self.batch_ids[index], []).append(rule)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "figure": self.figure,
            "centre": self.centre,
            "ucl": self.ucl,
            "lcl": self.lcl,
            "sigma": self.sigma,
            "mr_bar": self.mr_bar,
            "mr_ucl": self.mr_ucl,
            "baseline": self.baseline,
            "points": [
                {"batch_id": b, "value": v}
                for b, v in zip(self.batch_ids, self.values, strict=True)
            ],
            "flagged": self.flagged(),
        }


def control_chart(
    figure: str, batch_ids: Sequence[str], values: Sequence[float], baseline: int | None = None
) -> Chart | None:
    """I-MR chart with limits from the first `baseline` points (None: all); None if < 2."""
    if len(values) < 2:
        return None
    base = list(values[: baseline or len(values)])
    if len(base) < 2:
        base = list(values[:2])
    centre = sum(base) / len(base)
    ranges = [abs(b - a) for a, b in itertools.pairwise(base)]
    mr_bar = sum(ranges) / len(ranges)
    sigma = mr_bar / 1.128
    chart = Chart(figure, list(batch_ids), list(values), centre, sigma, mr_bar, len(base), [])
    chart.violations = run_rules(list(values), centre, sigma, chart.mr_ucl)
    return chart


def run_rules(
    values: Sequence[float], centre: float, sigma: float, mr_ucl: float
) -> list[tuple[int, str]]:
    """Indices breaking the usual run rules (Western Electric 1, 2, 3 (trend), 5; MR)."""
    found: list[tuple[int, str]] = []
    if sigma <= 0:
        return found
    z = [(v - centre) / sigma for v in values]
    for i, score in enumerate(z):
        if abs(score) > 3:
            found.append((i, "1: beyond 3 sigma"))
        if i >= 8 and (
            all(s > 0 for s in z[i - 8 : i + 1]) or all(s < 0 for s in z[i - 8 : i + 1])
        ):
            found.append((i, "2: 9 in a row on one side"))
        if i >= 5:
            run = values[i - 5 : i + 1]
            pairs = list(itertools.pairwise(run))
            if all(b > a for a, b in pairs) or all(b < a for a, b in pairs):
                found.append((i, "3: 6 in a row rising or falling"))
        if i >= 2:
            last = z[i - 2 : i + 1]
            if (sum(s > 2 for s in last) >= 2 and score > 2) or (
                sum(s < -2 for s in last) >= 2 and score < -2
            ):
                found.append((i, "5: 2 of 3 beyond 2 sigma"))
        if i >= 1 and abs(values[i] - values[i - 1]) > mr_ucl > 0:
            found.append((i, "MR: moving range beyond its UCL"))
    return found


def charts(batches: Sequence[BatchFigures], baseline: int | None = None) -> list[Chart]:
    """One chart per figure that at least two batches have, in batch order."""
    names: dict[str, None] = {}
    for batch in batches:
        for name, value in batch.figures.items():
            if value is not None:
                names.setdefault(name, None)
    out = []
    for name in names:
        pairs = [(b.batch_id, b.figures[name]) for b in batches if b.figures.get(name) is not None]
        chart = control_chart(
            name, [p[0] for p in pairs], [float(p[1] or 0) for p in pairs], baseline
        )
        if chart is not None:
            out.append(chart)
    return out


# -- sites and equivalence -----------------------------------------------------------


@dataclass(frozen=True)
class Equivalence:
    """TOST of one figure: a site against the reference site."""

    figure: str
    site: str
    reference: str
    n: int
    n_ref: int
    difference: float
    ci90: tuple[float, float]
    margin: float
    p_value: float

    @property
    def equivalent(self) -> bool:
        """The 90 % CI of the difference lies within ±margin (both one-sided p < 0.05)."""
        return self.p_value < 0.05

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "figure": self.figure,
            "site": self.site,
            "reference": self.reference,
            "n": self.n,
            "n_reference": self.n_ref,
            "difference": self.difference,
            "ci90": list(self.ci90),
            "margin": self.margin,
            "p_value": self.p_value,
            "equivalent": self.equivalent,
        }


def site_summary(batches: Sequence[BatchFigures]) -> dict[str, dict[str, dict[str, float]]]:
    """Per site, per figure: n, mean, sd."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for site in sorted({b.site for b in batches}):
        values: dict[str, list[float]] = {}
        for batch in batches:
            if batch.site != site:
                continue
            for name, value in batch.figures.items():
                if value is not None:
                    values.setdefault(name, []).append(value)
        out[site] = {name: _describe(v) for name, v in values.items()}
    return out


def _describe(values: Sequence[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"n": float(n), "mean": mean, "sd": sd}


def compare_sites(
    batches: Sequence[BatchFigures],
    margins: Mapping[str, float] | None = None,
    reference: str | None = None,
) -> list[Equivalence]:
    """Welch TOST of each figure with a margin, every site against the reference site."""
    margins = {**DEFAULT_MARGINS, **(margins or {})}
    by_site: dict[str, list[BatchFigures]] = {}
    for batch in batches:
        by_site.setdefault(batch.site, []).append(batch)
    if not by_site:
        return []
    reference = reference or max(sorted(by_site), key=lambda s: len(by_site[s]))
    if reference not in by_site:
        raise ValueError(f"no batches at the reference site {reference!r}")
    out: list[Equivalence] = []
    for figure, margin in margins.items():
        ref = [b.figures[figure] for b in by_site[reference] if b.figures.get(figure) is not None]
        for site in sorted(by_site):
            if site == reference:
                continue
            other = [b.figures[figure] for b in by_site[site] if b.figures.get(figure) is not None]
            result = tost([float(v or 0) for v in other], [float(v or 0) for v in ref], margin)
            if result is not None:
                difference, ci90, p_value = result
                out.append(
                    Equivalence(
                        figure,
                        site,
                        reference,
                        len(other),
                        len(ref),
                        difference,
                        ci90,
                        margin,
                        p_value,
                    )
                )
    return out


def tost(
    a: Sequence[float], b: Sequence[float], margin: float
) -> tuple[float, tuple[float, float], float] | None:
    """Welch's two one-sided tests of mean(a) − mean(b) within ±margin.

    Returns (difference, 90 % CI, p) — p the larger of the two one-sided p-values — or
    None with fewer than two values on a side.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    da, db = _describe(a), _describe(b)
    diff = da["mean"] - db["mean"]
    va, vb = da["sd"] ** 2 / len(a), db["sd"] ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        inside = abs(diff) < margin
        return diff, (diff, diff), 0.0 if inside else 1.0
    df = (va + vb) ** 2 / ((va**2) / (len(a) - 1) + (vb**2) / (len(b) - 1))
    p_lower = 1 - t_cdf((diff + margin) / se, df)
    p_upper = t_cdf((diff - margin) / se, df)
    half = t_quantile(0.95, df) * se
    return diff, (diff - half, diff + half), max(p_lower, p_upper)


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function (through the regularised incomplete beta)."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on :func:`t_cdf`)."""
    low, high = -100.0, 100.0
    for _ in range(100):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (continued fraction, Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)
    )
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            numerator = 1.0
        elif i % 2 == 0:
            numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            numerator = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + numerator * d
        d = tiny if abs(d) < tiny else d
        d = 1 / d
        c = 1 + numerator / c
        c = tiny if abs(c) < tiny else c
        f *= c * d
        if abs(1 - c * d) < 1e-12:
            break
    return front * (f - 1) / a
