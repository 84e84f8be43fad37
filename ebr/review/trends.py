"""Trend figures of batches of one recipe and individuals / moving-range control charts.

Per batch (:func:`batch_figures`, all read-only from the journal and the samples):

- expansion (batches with ``culture.viable_density`` samples): ``lag_h`` (where the
  tangent of steepest growth meets the inoculation density), ``doubling_time_h``
  (ln 2 / the steepest specific growth rate over a 24 h window of ln density),
  ``fold_expansion`` (final viable cells / inoculated cells; density ratio when the
  volumes are not recorded), ``final_viability_pct``;
- every batch: ``excursion_min.<monitor>`` (minutes outside the monitor's alert band
  once monitors are active), ``holds``, ``duration_h`` (start to end, process time);
- wash: ``recovery_pct``; cryo: ``end_temperature_c`` (from ``program.complete``).

The samples are read as numpy columns (:mod:`ebr.record.sample_columns`), only the tags
the figures need. :func:`control_chart` computes individuals / moving-range limits from a
declared baseline (the first ``baseline`` batches; all when not given) and flags the usual
run rules: (1) a point beyond 3 sigma; (2) 9 in a row on one side of the centre; (3) 6 in
a row steadily rising or falling; (5) 2 of 3 beyond 2 sigma on one side; MR beyond its
UCL. Here in ``ebr.review`` so that review (rule ``out_of_trend``) and the trend exports
share one computation.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection

from ebr.record.clock import parse_ts
from ebr.record.gcpause import gc_paused
from ebr.record.kinds import Kind
from ebr.record.model import Entry
from ebr.record.query import journal_entries, list_batches
from ebr.record.sample_columns import SampleColumns, read_sample_columns, short_tag
from ebr.record.store import Store
from ebr.record.verify import can_fork

_EMPTY = np.zeros(0)

DENSITY = "culture.viable_density"
VIABILITY = "culture.viability"
GROWTH_WINDOW_H = 24.0
FINAL_STATES = frozenset({"Complete", "Stopped", "Aborted"})


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
    store: Store,
    recipe: str,
    *,
    since: str | None = None,
    site: str | None = None,
    jobs: int = 1,
    min_parallel: int | None = None,
) -> list[BatchFigures]:
    """Figures of every ended batch of `recipe` (created on or after `since`, at `site`).

    With `jobs` > 1 and at least `min_parallel` (``PARALLEL_MIN_BATCHES``) batches, up to
    `jobs` forked
    worker processes read them, each with its own connection (as ``verify_store`` does,
    and only where it may fork); each batch is read in its own snapshot either way.
    """
    summaries = [
        s
        for s in list_batches(store)
        if s.recipe_name == recipe
        and s.state in FINAL_STATES
        and (since is None or s.created_at >= since)
    ]
    ids = [s.batch_id for s in summaries]
    processes = min(jobs, len(ids))
    read: list[tuple[str, dict[str, float | None]] | None] | None = None
    least = PARALLEL_MIN_BATCHES if min_parallel is None else min_parallel
    if processes > 1 and len(ids) >= least and can_fork(store):
        with contextlib.suppress(BrokenProcessPool):  # a worker died: read them here
            read = _in_processes(store, ids, site, processes)
    if read is None:
        read = [_read_one(store, batch_id, site) for batch_id in ids]
    return [
        BatchFigures(summary.batch_id, recipe, one[0], summary.created_at, one[1])
        for summary, one in zip(summaries, read, strict=True)
        if one is not None
    ]


PARALLEL_MIN_BATCHES = 50
"""Fewer batches are read in the calling process (forking would cost more)."""


def _read_one(
    store: Store, batch_id: str, site: str | None
) -> tuple[str, dict[str, float | None]] | None:
    """(site, figures) of one batch, None when it is not at `site`."""
    with store.snapshot() as conn, gc_paused():
        entries = journal_entries(conn, batch_id)
        batch_site = _site(entries)
        if site is not None and batch_site != site:
            return None
        return batch_site, figures_on(conn, batch_id, entries)


def _in_processes(
    store: Store, ids: list[str], site: str | None, processes: int
) -> list[tuple[str, dict[str, float | None]] | None]:
    url = store.engine.url.render_as_string(hide_password=False)
    store.engine.dispose()  # children must not inherit open connections
    with ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_open_worker_store,
        initargs=(url,),
    ) as pool:
        work = functools.partial(_read_in_worker, site=site)
        return list(pool.map(work, ids, chunksize=max(1, len(ids) // (processes * 8))))


_worker_store: Store | None = None
"""The store of a trend worker process (see `_in_processes`)."""


def _open_worker_store(url: str) -> None:
    global _worker_store
    _worker_store = Store.open(url, create=False)


def _read_in_worker(batch_id: str, site: str | None) -> tuple[str, dict[str, float | None]] | None:
    assert _worker_store is not None
    return _read_one(_worker_store, batch_id, site)


def figures_on(
    conn: Connection, batch_id: str, entries: Sequence[Entry]
) -> dict[str, float | None]:
    """The figures of `batch_id`, whose journal `entries` were read on `conn` (a snapshot)."""
    with gc_paused():
        columns = read_sample_columns(conn, batch_id, _tags_needed(entries))
    return batch_figures(entries, columns)


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
