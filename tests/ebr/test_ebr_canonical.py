"""Canonical JSON must be exactly RFC 8785 (rfc8785 is the reference), and record times
must have one fixed UTC text form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ebr.record.canonical import as_json_numbers, canonical_json, canonical_object, parse_json
from ebr.record.clock import format_ts, next_stamp, parse_ts

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats()
    | st.sampled_from([0.0, -0.0, 1e-4, 9.99e-5, 1e16, 1e21, 1e-7, 2.0**53, 0.1 + 0.2])
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_json_equals_the_reference(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value).decode("utf-8")
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(ValueError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_detached_copy_equals_what_a_reader_parses(value: dict[str, Any]) -> None:
    try:
        text, copy = canonical_object(value)
    except ValueError:
        return
    parsed = parse_json(text)
    assert canonical_json(copy) == text
    assert canonical_json(parsed) == text
    # An ordinary JSON reader (big integers as int) can still re-canonicalise it.
    assert canonical_json(as_json_numbers(json.loads(text))) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (
            {"b": 1, "a": [True, None, 37.0, 0.5, 1e-7, 1e21, 1e16]},
            '{"a":[true,null,37,0.5,1e-7,1e+21,10000000000000000],"b":1}',
        ),
        ({"\u00e9": 1, "e": 2, "\U0001f600": 3, "\ufb01": 4}, None),
        ({"s": 'quote " backslash \\ nl \n tab \t bell \x07 del \x7f é'}, None),
    ],
)
def test_known_forms(value: Any, text: str | None) -> None:
    assert canonical_json(value) == (text or rfc8785.dumps(value).decode())


def test_unrepresentable_values_are_refused() -> None:
    for value in ({"x": float("inf")}, {"x": 2**53}, {"x": "\ud800"}, {"x": object()}):
        with pytest.raises(ValueError, match="canonical JSON"):
            canonical_json(value)


def test_record_time_format() -> None:
    moment = datetime(2026, 3, 1, 9, 30, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_ts(moment) == "2026-03-01T08:30:00.000005Z"
    assert parse_ts("2026-03-01T08:30:00.000005Z") == moment
    with pytest.raises(ValueError, match="naive"):
        format_ts(datetime(2026, 3, 1))
    with pytest.raises(ValueError):
        parse_ts("2026-03-01 08:30:00")


def test_next_stamp_is_strictly_increasing() -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    assert next_stamp(t, None) == t
    assert next_stamp(t + timedelta(seconds=1), t) == t + timedelta(seconds=1)
    assert next_stamp(t, t) == t + timedelta(microseconds=1)
    assert next_stamp(t - timedelta(hours=1), t) == t + timedelta(microseconds=1)
