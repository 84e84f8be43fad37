"""A batch as text for people: `batch show`, `batch watch` and the HMI share these lines.

Everything here reads the controller's ``Show`` answer (`controller.batch_view` fields)
and writes plain text, so state is always given by words, never by colour alone.
"""

from __future__ import annotations

from typing import Any

from controller.address_space import alarm_line
from controller.isa88 import FINAL_STATES

SPARKS = "▁▂▃▄▅▆▇█"


def is_final(state: str) -> bool:
    """True for Complete, Stopped and Aborted."""
    return state in {str(s) for s in FINAL_STATES}


def duration(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 04 h`` (process time)."""
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172_800:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def batch_day(seconds: float | None) -> str:
    """Process time since the batch was created as ``day N HH:MM`` (day 0 first)."""
    if seconds is None:
        return "day ?"
    s = int(seconds)
    return f"day {s // 86400} {s % 86400 // 3600:02d}:{s % 3600 // 60:02d}"


def number(value: float | None, digits: int = 4) -> str:
    """A value with `digits` significant digits, ``–`` when there is none."""
    return "–" if value is None else f"{value:.{digits}g}"


def sparkline(values: list[float], width: int = 12) -> str:
    """The last `width` values as block characters (flat when constant)."""
    points = values[-width:]
    if not points:
        return ""
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    return "".join(SPARKS[int((v - low) / span * (len(SPARKS) - 1))] for v in points)


def limits(pair: list[float | None]) -> str:
    """``36.5–37.5``, ``≥ 6.8`` or ``≤ 7.6`` (``–`` when unset)."""
    low, high = pair
    if low is not None and high is not None:
        return f"{low:g}–{high:g}"
    if low is not None:
        return f"≥ {low:g}"
    if high is not None:
        return f"≤ {high:g}"
    return "–"


def cpp_line(cpp: dict[str, Any], stale: bool = False) -> str:
    """One CPP on one line: name, PV, SP, unit, limits, quality, age, trend."""
    quality = "STALE" if stale else cpp["quality"]
    return (
        f"{cpp['unit']}.{cpp['name']}  PV {number(cpp['pv'])} {cpp['eu']}  "
        f"SP {number(cpp['sp'])}  alert {limits(cpp['alert'])}  "
        f"action {limits(cpp['action'])}  {quality}  age {duration(cpp['age_s'])}  "
        f"{sparkline(cpp['trend'])}"
    ).rstrip()


def element_line(element: dict[str, Any]) -> str:
    """An active element with its state and time in it (of the expected time)."""
    line = f"{element['path']}  {element['state']}"
    if element.get("running_s") is not None and element["level"] != "batch":
        line += f"  {duration(element['running_s'])}"
        if element.get("expected_s"):
            line += f" of {duration(element['expected_s'])}"
    return line


def entry_hint(entry: dict[str, Any]) -> str:
    """What to type for one prompt entry: name, type, unit, choices, limits, example."""
    parts = [f"{entry['name']}: {entry['type']}"]
    if entry.get("unit"):
        parts.append(f"in {entry['unit']}")
    if entry.get("choices"):
        parts.append("one of " + "/".join(entry["choices"]))
    if entry.get("min") is not None or entry.get("max") is not None:
        parts.append(limits([entry.get("min"), entry.get("max")]))
    example = entry.get("example")
    if isinstance(example, float):
        parts.append(f"e.g. {example:g}")
    elif example is not None:
        parts.append(f"e.g. {example}")
    return ", ".join(parts)


def prompt_lines(prompt: dict[str, Any]) -> list[str]:
    """A prompt: id, element, text, each entry's hint and whether a verifier signs."""
    lines = [f"{prompt['id']}  {prompt['element']}: {prompt['text']}"]
    lines += [f"    {entry_hint(e)}" for e in prompt["entries"]]
    if prompt.get("verify"):
        lines.append("    a second person must verify (verifier=USER)")
    return lines


def alarm_counts(alarms: list[dict[str, Any]]) -> str:
    """``3 alarms: 1 active, 2 to acknowledge`` (from the batch's whole record)."""
    active = sum(1 for a in alarms if a["active"])
    unacked = sum(1 for a in alarms if not a["acknowledged_by"])
    return f"{len(alarms)} alarm(s): {active} active, {unacked} to acknowledge"


def show_lines(detail: dict[str, Any]) -> list[str]:
    """`batch show`: the whole batch as text."""
    lines = [
        f"{detail['id']}  {detail['state']}  {detail['recipe_name']} "
        f"{detail['recipe_version']}  COI {detail['coi']}"
    ]
    if detail.get("why"):
        lines.append(f"  why: {detail['why']}")
    lines.append(f"  process time: {batch_day(detail.get('process_time_s'))}")
    units = ", ".join(f"{u['alias']}={u['unit']}" for u in detail.get("units", []))
    if units:
        lines.append(f"  units: {units}")
    lines.append("active elements:")
    lines += [f"  {element_line(e)}" for e in detail["elements"]]
    if detail["cpps"]:
        lines.append("process values:")
        lines += [f"  {cpp_line(c)}" for c in detail["cpps"]]
    alarms = detail["alarm_list"]
    lines.append(f"alarms: {alarm_counts(alarms)}" if alarms else "alarms: none")
    lines += [f"  {alarm_line(a)}" for a in alarms]
    prompts = detail["prompt_forms"]
    lines.append(f"open prompts: {len(prompts)}" if prompts else "open prompts: none")
    for prompt in prompts:
        lines += [f"  {line}" for line in prompt_lines(prompt)]
    return lines
