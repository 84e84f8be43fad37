"""Parsing of the small text languages inside recipe values: ``$param`` and durations.

These functions work on plain strings and raise :class:`ExpressionError` with a
message and the offset of the offending character; callers turn that into a
positioned diagnostic.
"""

from __future__ import annotations

import math
import re

TIME_UNITS: dict[str, float] = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
"""Duration units and their length in seconds."""

MAX_DURATION_S = 366 * 86400.0
"""The longest duration, timeout or delay a recipe may state: a year."""


def duration_problem(seconds: float) -> str | None:
    """Why `seconds` cannot be a recipe duration (negative, not finite, over a year)."""
    if not math.isfinite(seconds):
        return "is not a finite number of seconds"
    if seconds < 0:
        return "must not be negative"
    if seconds > MAX_DURATION_S:
        return "is longer than a year (366 d), the longest a recipe may state"
    return None


_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_DURATION_RE = re.compile(rf"\s*(?P<number>{_NUMBER})\s*(?P<unit>[A-Za-z]+)\s*")


class ExpressionError(ValueError):
    """A malformed expression; ``offset`` is the index of the offending character."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def param_name(text: str) -> str | None:
    """``name`` if ``text`` is exactly ``$name``, else None."""
    match = _PARAM_RE.fullmatch(text.strip())
    return match.group(1) if match else None


def looks_like_param(text: str) -> bool:
    """True if ``text`` starts with ``$`` (so it is meant as a parameter reference)."""
    return text.strip().startswith("$")


def parse_duration(text: str) -> float:
    """Seconds in ``"<number> <unit>"`` with unit in s, min, h, d. Raises ExpressionError."""
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ExpressionError(
            f"bad duration '{text}': expected '<number> <unit>' with unit one of "
            + ", ".join(TIME_UNITS)
        )
    unit = match.group("unit")
    if unit not in TIME_UNITS:
        raise ExpressionError(
            f"bad duration '{text}': unknown time unit '{unit}' (use one of "
            + ", ".join(TIME_UNITS)
            + ")",
            match.start("unit"),
        )
    seconds = float(match.group("number")) * TIME_UNITS[unit]
    problem = duration_problem(seconds)
    if problem is not None:
        raise ExpressionError(f"bad duration '{text}': {problem}")
    return seconds
