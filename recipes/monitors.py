"""Reader for the ``monitors:`` section: CPP limits watched for the whole batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from recipes.diagnostics import DiagnosticSink, Pos
from recipes.expressions import (
    ExpressionError,
    duration_problem,
    looks_like_param,
    parse_duration,
)
from recipes.fields import (
    FieldReader,
    UniqueNames,
    as_map,
    as_number,
    describe,
    is_number,
    peek_str,
)
from recipes.model import Criticality, Monitor, MonitorAction, Procedure, Range
from recipes.symbols import Symbols
from recipes.yamltree import BadNode, MapNode, Node, ScalarNode, SeqNode

ACTIONS = ("alarm", "hold", "abort")
CRITICALITIES = ("critical", "key", "non-critical")


@dataclass(frozen=True, slots=True)
class _Band:
    """A low/high pair of limits and where each was written."""

    low: float | None = None
    high: float | None = None
    low_pos: Pos | None = None
    high_pos: Pos | None = None


def read_monitors(node: SeqNode, symbols: Symbols, sink: DiagnosticSink) -> list[Monitor]:
    """Every monitor; names must be unique."""
    monitors: list[Monitor] = []
    names = UniqueNames(sink, "monitor")
    for item in node.items:
        mapping = as_map(item, sink, "monitor")
        if mapping is None:
            continue
        monitor = _read_monitor(mapping, symbols, sink, names)
        if monitor is not None:
            monitors.append(monitor)
    return monitors


def active_from_positions(node: SeqNode) -> dict[str, Pos]:
    """Where each monitor's ``active_from`` is written, by monitor name."""
    found: dict[str, Pos] = {}
    for item in node.items:
        if isinstance(item, MapNode) and "active_from" in item.entries:
            name = peek_str(item, "name")
            if name:
                found[name] = item.entries["active_from"].value.pos
    return found


def check_active_from(
    monitors: list[Monitor], positions: dict[str, Pos], procedure: Procedure, sink: DiagnosticSink
) -> None:
    """Each ``active_from`` names an operation of a unit procedure on the monitor's unit."""
    for m in monitors:
        if m.active_from is None:
            continue
        ops = [
            f"{up.name}/{op.name}"
            for up in procedure.unit_procedures
            if up.unit == m.unit
            for op in up.operations
        ]
        if m.active_from not in ops:
            sink.error(
                positions[m.name],
                f"monitor '{m.name}': active_from '{m.active_from}' is not an operation on "
                f"unit '{m.unit}' (one of: {', '.join(ops) or 'none'})",
            )


def _read_monitor(
    node: MapNode, symbols: Symbols, sink: DiagnosticSink, names: UniqueNames
) -> Monitor | None:
    before = sink.count
    label = peek_str(node, "name")
    what = f"monitor '{label}'" if label else "monitor"
    fields = FieldReader(
        node,
        sink,
        what,
        required=("name", "unit", "tag", "engineering_unit", "on_action"),
        optional=(
            "alert",
            "action",
            "delay",
            "hysteresis",
            "active_from",
            "criticality",
            "nor",
            "par",
            "rationale",
        ),
    )
    name = fields.name("name")
    if name is not None:
        names.claim(name, node.entries["name"].value.pos)
    unit = fields.string("unit")
    cls = symbols.unit_class(unit, node.entries["unit"].value.pos, sink) if unit else None
    tag = fields.string("tag")
    eng_unit = fields.string("engineering_unit")
    if cls is not None and tag is not None:
        spec = symbols.capability(unit, tag, node.entries["tag"].value.pos, sink)
        if spec is not None and eng_unit is not None and eng_unit != spec.unit:
            sink.error(
                node.entries["engineering_unit"].value.pos,
                f"{what}: engineering unit '{eng_unit}' does not match unit '{spec.unit}' of {tag}",
            )
    alert = _band(fields, "alert", what)
    action = _band(fields, "action", what)
    if not fields.has("alert") and not fields.has("action"):
        sink.error(node.label_pos, f"{what}: needs an 'alert' or 'action' band")
    if alert is not None and action is not None:
        _check_nested(alert, action, what, sink)
    delay = _delay(fields.get("delay"), what, sink)
    hysteresis = fields.number("hysteresis") if fields.has("hysteresis") else 0.0
    if hysteresis is not None and hysteresis < 0:
        sink.error(node.entries["hysteresis"].value.pos, f"{what}: hysteresis must not be negative")
    on_action = fields.choice("on_action", ACTIONS)
    active_from = fields.string("active_from") if fields.has("active_from") else None
    criticality = fields.choice("criticality", CRITICALITIES) if fields.has("criticality") else None
    nor = _band(fields, "nor", what)
    par = _band(fields, "par", what)
    rationale = fields.string("rationale")
    _check_ranges(node, criticality, nor, par, action, rationale, what, sink)
    if sink.count > before:
        return None
    if not (name and unit and tag and eng_unit and on_action) or delay is None:
        return None  # a field that was already reported where it was read (YAML)
    alert = alert or _Band()
    action = action or _Band()
    return Monitor(
        name=name,
        unit=unit,
        tag=tag,
        engineering_unit=eng_unit,
        alert_low=alert.low,
        alert_high=alert.high,
        action_low=action.low,
        action_high=action.high,
        delay_s=delay,
        action=cast(MonitorAction, on_action),
        hysteresis=hysteresis or 0.0,
        active_from=active_from,
        criticality=cast(Criticality | None, criticality),
        nor=None if nor is None else Range(nor.low, nor.high),
        par=None if par is None else Range(par.low, par.high),
        rationale=rationale,
    )


def _check_ranges(
    node: MapNode,
    criticality: str | None,
    nor: _Band | None,
    par: _Band | None,
    action: _Band | None,
    rationale: str | None,
    what: str,
    sink: DiagnosticSink,
) -> None:
    """A CPP or KPP declares its PAR and a rationale; NOR ⊆ PAR; the action band ⊆ PAR."""
    if criticality in ("critical", "key"):
        if par is None:
            sink.error(node.label_pos, f"{what}: a {criticality} parameter needs a 'par' range")
        if rationale is None and not node.entries.get("rationale"):
            sink.error(node.label_pos, f"{what}: a {criticality} parameter needs a 'rationale'")
    if (nor is not None or par is not None or rationale is not None) and criticality is None:
        sink.error(node.label_pos, f"{what}: 'nor', 'par' and 'rationale' need a 'criticality'")
    if par is None:
        return
    for inner, name in ((nor, "nor"), (action, "action band")):
        if inner is None:
            continue
        if inner.low is not None and par.low is not None and inner.low < par.low:
            sink.error(
                inner.low_pos or node.pos,
                f"{what}: {name} low {inner.low:g} is below the par low {par.low:g} "
                "(it must lie within the proven acceptable range)",
            )
        if inner.high is not None and par.high is not None and inner.high > par.high:
            sink.error(
                inner.high_pos or node.pos,
                f"{what}: {name} high {inner.high:g} is above the par high {par.high:g} "
                "(it must lie within the proven acceptable range)",
            )


def _band(fields: FieldReader, key: str, what: str) -> _Band | None:
    """An ``{low, high}`` band; at least one limit, low below high."""
    mapping = fields.mapping(key)
    if mapping is None:
        return None
    sink = fields.sink
    band_what = f"{what}: {key} band"
    limits = FieldReader(mapping, sink, band_what, required=(), optional=("low", "high"))
    low, high = limits.number("low"), limits.number("high")
    low_pos = mapping.entries["low"].value.pos if "low" in mapping.entries else None
    high_pos = mapping.entries["high"].value.pos if "high" in mapping.entries else None
    if not mapping.entries:
        sink.error(mapping.pos, f"{band_what} needs 'low' or 'high'")
        return None
    if low is not None and high is not None and low >= high:
        sink.error(low_pos or mapping.pos, f"{band_what}: low {low:g} must be below high {high:g}")
        return None
    return _Band(low, high, low_pos, high_pos)


def _check_nested(alert: _Band, action: _Band, what: str, sink: DiagnosticSink) -> None:
    """The action band must contain the alert band."""
    rule = "the action band must contain the alert band"
    if action.low is not None and action.low_pos is not None:
        if alert.low is None:
            sink.error(
                action.low_pos, f"{what}: action low {action.low:g} has no alert low ({rule})"
            )
        elif action.low > alert.low:
            sink.error(
                action.low_pos,
                f"{what}: action low {action.low:g} is above alert low {alert.low:g} ({rule})",
            )
    if action.high is not None and action.high_pos is not None:
        if alert.high is None:
            sink.error(
                action.high_pos, f"{what}: action high {action.high:g} has no alert high ({rule})"
            )
        elif action.high < alert.high:
            sink.error(
                action.high_pos,
                f"{what}: action high {action.high:g} is below alert high {alert.high:g} ({rule})",
            )


def literal_seconds(node: Node, label: str, sink: DiagnosticSink) -> float | None:
    """A literal duration (a number of seconds or ``"<number> <unit>"``, never a
    $parameter) in seconds; None, with the error reported at the node, otherwise."""
    if is_number(node):
        return as_number(node, sink, label)
    if isinstance(node, ScalarNode) and isinstance(node.value, str):
        if looks_like_param(node.value):
            sink.error(node.pos, f"{label} must be a literal duration, not a $parameter")
            return None
        try:
            return parse_duration(node.value)
        except ExpressionError as exc:
            sink.error(node.pos, f"{label}: {exc.message}")
            return None
    if not isinstance(node, BadNode):
        sink.error(node.pos, f"{label} must be a duration, got {describe(node)}")
    return None


def _delay(node: Node | None, what: str, sink: DiagnosticSink) -> float | None:
    """Seconds as a number or ``"<number> <unit>"``; 0 when absent."""
    if node is None:
        return 0.0
    label = f"{what}: delay"
    seconds = literal_seconds(node, label, sink)
    if seconds is None:
        return None
    problem = duration_problem(seconds)
    if problem is not None:
        sink.error(node.pos, f"{label} {problem}")
        return None
    return seconds
