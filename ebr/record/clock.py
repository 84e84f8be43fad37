"""UTC record time: the one text format of every timestamp, and strictly increasing stamps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
"""A source of aware wall-clock datetimes (injectable for tests)."""

ONE_MICROSECOND = timedelta(microseconds=1)
TS_LENGTH = len("2000-01-01T00:00:00.000000Z")


def utc_now() -> datetime:
    """Return the current UTC wall time."""
    return datetime.now(UTC)


def format_ts(moment: datetime) -> str:
    """Return `moment` as ISO 8601 UTC text with microseconds and `Z`.

    Raises ValueError for a naive datetime: record time must be unambiguous.
    """
    if moment.tzinfo is not UTC:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"naive datetime {moment!r}: record times must be timezone-aware")
        moment = moment.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (fastest form)
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


def parse_ts(text: str) -> datetime:
    """Parse text written by `format_ts` back into an aware UTC datetime."""
    if len(text) != TS_LENGTH or not text.endswith("Z"):
        raise ValueError(f"not a record timestamp: {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def next_stamp(now: datetime, previous: datetime | None) -> datetime:
    """Return the stamp for a new entry: `max(now, previous + 1 µs)`.

    Stamps of one batch therefore strictly increase even when the wall clock steps
    back or two entries fall in the same microsecond.
    """
    if previous is None or now > previous:
        return now
    return previous + ONE_MICROSECOND
