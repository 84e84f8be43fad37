"""Review depth: what a QA reviewer looks for first beyond the journal's own events.

- `acceptance`: an `until:` condition of the form ``CRITERION or FALLBACK`` (the fallback
  being a comparison on a tag the recipe's phase names in ``fallback:``, else on one of
  the rule's `fallback_tags`, by default ``elapsed``) that
  was met with the criterion false at that moment — e.g. a harvest whose
  ``viable_density >= $harvest_density or elapsed >= 1 d`` ended on the day's end with
  the density never reached. The criterion is judged with the values `condition.met`
  recorded and the batch's parameters.
- `cross_check`: a number typed at a prompt (e.g. a day-5 count) against the online
  value of the paired capability at that time (the latest sample at or before the
  answer, no older than `max_age_s`): beyond `tolerance_pct` of the online value it is
  an exception. Pairs are ``entry=capability`` in the rules file; a later correction
  (`entry.corrected`) is what is checked.
- `hold_time`: the recipe's ``hold_times:`` limits (harvest to freeze, DMSO exposure):
  the process time from an end (``Complete``) of element `from` to the next start
  (``Running``) of element `to`, from their `element.state` entries; above `max` (plus
  the rule's `margin_s`) it is an exception. A `to` that never started is not judged here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from ebr.record.kinds import Kind
from ebr.review.model import Evidence, Finding
from ebr.review.rules import RuleConfig
from ebr.review.samples import Block, UnreadableBlock
from ebr.review.view import BatchView, as_dict, fmt, fmt_s, number, parse_time

_TERM = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|>|<)\s*(\S+)(?:\s+\S+)?\s*$")
_COMPARE = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


def acceptance(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Acceptance criteria that ended on their fallback branch (see the module docstring)."""
    default_tags = set(rule["fallback_tags"])
    found = []
    for entry in view.kind(Kind.CONDITION_MET):
        text = str(entry.data.get("condition") or "")
        declared = view.phases.get(str(entry.data.get("element") or ""), {}).get("fallback")
        if isinstance(declared, str):
            declared = [declared]
        fallback_tags = set(map(str, declared)) if isinstance(declared, list) else default_tags
        if "(" in text or " and " in text or " not " in f" {text}":
            continue  # only a plain `a or b or …` is judged
        terms = [_TERM.match(part) for part in text.split(" or ")]
        if len(terms) < 2 or not all(terms):
            continue
        parsed = [(m.group(1), m.group(2), m.group(3)) for m in terms if m]
        written = dict(zip(parsed, (part.strip() for part in text.split(" or ")), strict=True))
        criteria = [t for t in parsed if t[0] not in fallback_tags]
        fallbacks = [t for t in parsed if t[0] in fallback_tags]
        if not criteria or not fallbacks:
            continue
        values = as_dict(entry.data.get("values"))
        judged = [_judge(view, values, term) for term in criteria]
        limits = [result[1] for result in judged if result is not None and not result[0]]
        if len(limits) < len(criteria):
            continue  # met (or not judgeable): the criterion decided
        shown = "; ".join(
            f"{tag} = {fmt(values.get(tag))} (criterion {tag} {op} {fmt(limit)})"
            for (tag, op, _raw), limit in zip(criteria, limits, strict=True)
        )
        element = str(entry.data.get("element") or "")
        fallback = " or ".join(written[t] for t in fallbacks)
        found.append(
            Finding(
                anchor=entry.seq,
                severity=rule.severity,
                title=f"{element}: ended by its fallback ({fallback}), criterion not met",
                detail=f"{shown}; condition {text}",
                evidence=Evidence(
                    (entry.seq,), facts={"condition": text, "values": values, "fallback": True}
                ),
                time=view.time(entry),
                element=element or None,
            )
        )
    return found


def _judge(
    view: BatchView, values: Mapping[str, Any], term: tuple[str, str, str]
) -> tuple[bool, float] | None:
    """(holds, limit) of one criterion comparison with the recorded value; None when
    the limit cannot be resolved. An unknown value does not hold (as the engine says)."""
    tag, op, raw = term
    if raw.startswith("$"):
        limit = number(as_dict(view.parameters.get(raw[1:])).get("value"))
    else:
        try:
            limit = float(raw)
        except ValueError:
            limit = None
    if limit is None:
        return None
    value = number(values.get(tag))
    return (value is not None and _COMPARE[op](value, limit)), limit


def cross_check(view: BatchView, rule: RuleConfig, blocks: Sequence[Block]) -> list[Finding]:
    """Typed numbers against the online value at that time (see the module docstring)."""
    pairs = dict(p.split("=", 1) for p in rule["pairs"] if "=" in p)
    if not pairs:
        return []
    typed = _typed_values(view)
    wanted = {cap for entry_name, cap in pairs.items() if any(entry_name in v for _e, v in typed)}
    if not wanted:
        return []
    series = _series(blocks, wanted)
    tolerance, max_age = float(rule["tolerance_pct"]), float(rule["max_age_s"])
    found = []
    for answer, values in typed:
        at = parse_time(view.time(answer))
        for name, cap in pairs.items():
            value = number(values.get(name))
            online = _online(series.get(cap, []), at, max_age)
            if value is None or online is None or at is None:
                continue
            tag, when, reading = online
            if reading == 0:
                continue
            off = (value - reading) / abs(reading) * 100
            if abs(off) <= tolerance:
                continue
            element = str(answer.data.get("element") or "")
            found.append(
                Finding(
                    anchor=answer.seq,
                    severity=rule.severity,
                    title=(
                        f"{element}: typed {name} {fmt(value)} vs online {tag} "
                        f"{fmt(reading)} ({off:+.0f} %)"
                    ),
                    detail=(
                        f"online value at {when}; tolerance ±{tolerance:g} % "
                        f"(rules file [cross_check])"
                    ),
                    evidence=Evidence(
                        (answer.seq,),
                        facts={"entry": name, "typed": value, "tag": tag, "online": reading},
                    ),
                    time=view.time(answer),
                    element=element or None,
                    key=name,
                )
            )
    return found


def _typed_values(view: BatchView) -> list[tuple[Any, dict[str, Any]]]:
    """Each prompt answer with its values as finally corrected."""
    corrected: dict[int, dict[str, Any]] = {}
    for fix in view.kind(Kind.ENTRY_CORRECTED):
        seq = fix.data.get("corrects")
        if isinstance(seq, int):
            corrected.setdefault(seq, {}).update(as_dict(fix.data.get("new")))
    return [
        (a, {**as_dict(a.data.get("values")), **corrected.get(a.seq, {})})
        for a in view.kind(Kind.PROMPT_ANSWERED)
    ]


def _series(
    blocks: Sequence[Block], capabilities: set[str]
) -> dict[str, list[tuple[str, str, float]]]:
    """capability → [(tag, time, value)] of good numeric samples whose tag is
    `<unit>.<capability>`, in recorded order."""
    out: dict[str, list[tuple[str, str, float]]] = {}
    for number_, block in enumerate(blocks, 1):
        for row in _rows(block, number_):
            tag, time, value, _unit, quality = row[:5]
            if quality != "good" or not isinstance(value, int | float):
                continue
            for cap in capabilities:
                if tag == cap or str(tag).endswith(f".{cap}"):
                    out.setdefault(cap, []).append((str(tag), str(time), float(value)))
    return out


def _rows(block: Block, number_: int) -> Iterator[Sequence[Any]]:
    if not isinstance(block, str):
        yield from block
        return
    try:
        rows = json.loads(block)["rows"]
    except (ValueError, KeyError, TypeError):
        raise UnreadableBlock(number_) from None
    yield from rows if isinstance(rows, list) else []


def _online(
    samples: list[tuple[str, str, float]], at: datetime | None, max_age_s: float
) -> tuple[str, str, float] | None:
    """The latest sample at or before `at`, no older than `max_age_s`."""
    best = None
    for tag, time, value in samples:
        when = parse_time(time)
        if when is None or at is None or when > at:
            continue
        if (at - when).total_seconds() <= max_age_s and (best is None or when >= best[0]):
            best = (when, tag, time, value)
    return None if best is None else (best[1], best[2], best[3])


def hold_times(view: BatchView, rule: RuleConfig) -> list[Finding]:
    """Hold-time / exposure limits between named steps exceeded (see the module docstring)."""
    limits = view.content.get("hold_times")
    margin = float(rule["margin_s"])
    found = []
    for limit in limits if isinstance(limits, list) else []:
        spec = as_dict(limit)
        name, start, end = (str(spec.get(k) or "") for k in ("name", "from", "to"))
        max_s = view.duration_s(spec.get("max"))
        if not (name and start and end) or max_s is None:
            continue
        ends = [c for c in view.states.get(start, []) if c.to == "Complete"]
        starts = [c for c in view.states.get(end, []) if c.to == "Running"]
        for done in ends:
            after = parse_time(done.time)
            nxt = next(
                (c for c in starts if (t := parse_time(c.time)) and after and t >= after), None
            )
            began = parse_time(nxt.time) if nxt is not None else None
            if nxt is None or began is None or after is None:
                continue
            elapsed = (began - after).total_seconds()
            if elapsed <= max_s + margin:
                continue
            found.append(
                Finding(
                    anchor=nxt.seq,
                    severity=rule.severity,
                    title=(
                        f"hold time {name}: {fmt_s(elapsed)} from the end of {start} to the "
                        f"start of {end} (limit {fmt_s(max_s)})"
                    ),
                    detail=f"{start} ended {done.time}; {end} started {nxt.time}",
                    evidence=Evidence(
                        (nxt.seq, done.seq),
                        facts={"limit": name, "elapsed_s": elapsed, "max_s": max_s},
                    ),
                    time=nxt.time,
                    element=end,
                    key=name,
                )
            )
    return found
