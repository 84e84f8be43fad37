"""Trends across batches: the figures and I-MR control charts of :mod:`ebr.review.trends`
(re-exported here), and equivalence of sites (two one-sided tests).

:func:`compare_sites` summarises each figure per site and runs Welch's TOST against a
reference site with a declared margin: equivalent when the 90 % confidence interval of
the difference lies within ±margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ebr.review.trends import (
    DENSITY,
    FINAL_STATES,
    VIABILITY,
    BatchFigures,
    Chart,
    batch_figures,
    charts,
    collect,
    control_chart,
    run_rules,
)

__all__ = [
    "DEFAULT_MARGINS",
    "DENSITY",
    "FINAL_STATES",
    "VIABILITY",
    "BatchFigures",
    "Chart",
    "Equivalence",
    "batch_figures",
    "charts",
    "collect",
    "compare_sites",
    "control_chart",
    "run_rules",
    "site_summary",
    "tost",
]

DEFAULT_MARGINS: Mapping[str, float] = {
    "lag_h": 8.0,
    "doubling_time_h": 3.0,
    "fold_expansion": 25.0,
    "final_viability_pct": 3.0,
    "duration_h": 12.0,
    "recovery_pct": 3.0,
}
"""Equivalence margins (± in the figure's unit) unless the command declares others."""


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
