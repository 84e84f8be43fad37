"""Review rule ``out_of_trend``: a batch whose trend figure breaks the control-chart run
rules against the declared baseline of its recipe.

The baseline is the first ``baseline`` batches of the same recipe (by creation) that
had ended before this batch was created; with fewer, the batch is part of the baseline
and is not judged. Limits come from the baseline (:func:`ebr.review.trends.control_chart`);
the run rules look at the baseline, the last 8 batches ended before this one was created
and this batch, and only this batch's violations count. Batches that ended before this
one was created never change (the store is append-only), so the same record gives the
same exceptions whenever it is reviewed. Unlike the other rules it reads other batches,
so only a review that has the store runs it (``review``, ``review_connection``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, select

from ebr.record.kinds import Kind
from ebr.record.model import SYSTEM_CHAINS, BatchRecord, Entry
from ebr.record.query import journal_entries
from ebr.record.schema import batches
from ebr.review.model import Evidence, Finding
from ebr.review.rules import RuleConfig
from ebr.review.trends import FINAL_STATES, control_chart, figures_on

RECENT = 8
"""Batches before this one the run rules need (rule 2: 9 in a row)."""


def _end(entries: Sequence[Entry]) -> Entry | None:
    """The batch.state entry that ended the batch (None while it runs)."""
    states = [e for e in entries if e.kind == Kind.BATCH_STATE]
    return states[-1] if states and states[-1].data.get("to") in FINAL_STATES else None


def out_of_trend(
    conn: Connection, batch: BatchRecord, entries: Sequence[Entry], rule: RuleConfig
) -> list[Finding]:
    """Findings of rule ``out_of_trend`` for an ended batch read on `conn` (a snapshot)."""
    end = _end(entries)
    if end is None:
        return []
    baseline_size = int(rule["baseline"])
    earlier: list[str] = list(
        conn.execute(
            select(batches.c.batch_id)
            .where(
                (batches.c.recipe_name == batch.header.recipe_name)
                & (batches.c.created_at < batch.created_at)
                & batches.c.batch_id.notin_(SYSTEM_CHAINS)
            )
            .order_by(batches.c.created_at, batches.c.batch_id)
        ).scalars()
    )
    if len(earlier) < baseline_size:
        return []
    ended: dict[str, dict[str, float | None]] = {}

    def figures(batch_id: str) -> dict[str, float | None] | None:
        """Figures of an earlier batch that ended before this one was created."""
        if batch_id not in ended:
            journal = journal_entries(conn, batch_id)
            stop = _end(journal)
            if stop is None or stop.ts >= batch.created_at:
                return None
            ended[batch_id] = figures_on(conn, batch_id, journal)
        return ended[batch_id]

    baseline = _first(earlier, figures, baseline_size)
    if len(baseline) < baseline_size:
        return []
    recent = _first(list(reversed(earlier)), figures, RECENT)[::-1]
    series = list(dict.fromkeys([*baseline, *recent]))
    mine = figures_on(conn, batch.batch_id, entries)
    wanted = {str(r) for r in rule["run_rules"]}
    found: list[Finding] = []
    for name in rule["figures"]:
        value = mine.get(name)
        known = [(b, v) for b in series if (v := ended[b].get(name)) is not None]
        if value is None or len(known) < 2:
            continue
        within = sum(1 for b, _ in known if b in baseline)
        ids = [b for b, _ in known] + [batch.batch_id]
        chart = control_chart(name, ids, [v for _, v in known] + [value], within)
        if chart is None:
            continue
        last = len(chart.values) - 1
        broken = [r for i, r in chart.violations if i == last and r.split(":")[0] in wanted]
        if broken:
            found.append(
                _finding(
                    rule,
                    end,
                    name,
                    value,
                    chart.centre,
                    chart.sigma,
                    within,
                    broken,
                    batch.header.recipe_name,
                )
            )
    return found


def _first(
    ids: Sequence[str], figures: Callable[[str], dict[str, float | None] | None], count: int
) -> list[str]:
    """The first `count` of `ids` that ended before this batch was created."""
    out: list[str] = []
    for batch_id in ids:
        if len(out) >= count:
            break
        if figures(batch_id) is not None:
            out.append(batch_id)
    return out


def _finding(
    rule: RuleConfig,
    end: Entry,
    name: str,
    value: float,
    centre: float,
    sigma: float,
    baseline: int,
    broken: list[str],
    recipe: str,
) -> Finding:
    low, high = centre - 3 * sigma, centre + 3 * sigma
    return Finding(
        anchor=end.seq,
        key=name,
        severity=rule.severity,
        title=(
            f"{name} {value:.4g} out of trend ({'; '.join(broken)}): centre {centre:.4g}, "
            f"limits {low:.4g} … {high:.4g}"
        ),
        detail=(
            f"Against the first {baseline} batches of {recipe} that ended before this one "
            f"was created (individuals chart, sigma {sigma:.4g} from the moving range)."
        ),
        evidence=Evidence(
            (end.seq,),
            facts={
                "figure": name,
                "value": value,
                "centre": centre,
                "sigma": sigma,
                "baseline": baseline,
                "rules": broken,
            },
        ),
        time=str(end.data.get("t") or end.ts),
    )
