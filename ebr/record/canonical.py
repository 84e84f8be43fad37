"""RFC 8785 canonical JSON (the stored form of every data object) and digests.

`canonical_json` is exactly `rfc8785.dumps` (the reference implementation used by the
offline verifier). Values made only of plain dicts with ASCII keys, lists, strings,
bools, None, safe integers and floats written the same way by Python and ECMAScript
take a fast path through the C JSON encoder, which for exactly those values emits the
same text; anything else goes through `rfc8785`. tests/ebr checks the two agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import rfc8785

_MAX_SAFE_INT = 2**53 - 1


def _unexpected(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")  # _plain lets none through


def _make_encoder() -> Callable[[Any], str]:
    """Return a function writing compact, key-sorted, non-ASCII-preserving JSON.

    The C encoder made once, rather than per call as `json.JSONEncoder.encode` does;
    without it (another Python) the same settings through `json.JSONEncoder`.
    """
    make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
    if make is None:
        return json.JSONEncoder(
            sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode
    # (markers, default, encoder, indent, key_sep, item_sep, sort_keys, skipkeys, allow_nan):
    # no cycle markers, since _plain's copy is a tree.
    encoder = make(
        None, _unexpected, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
    return lambda value: "".join(encoder(value, 0))


_ENCODE = _make_encoder()


class _NotPlain(Exception):
    """The value needs the full RFC 8785 serializer."""


def _plain(value: Any) -> Any:
    """Return a detached copy of `value` that the C encoder writes exactly as RFC 8785 does.

    Integral floats become ints (RFC 8785 writes 37.0 as 37, as does a reader that
    parses the text back). Raises _NotPlain for anything outside the fast path.
    """
    kind = type(value)
    if kind is dict:
        copy = {}
        for key, item in value.items():
            # Code-point order equals RFC 8785's UTF-16 order for ASCII keys.
            if type(key) is not str or not key.isascii():
                raise _NotPlain
            # Common scalars inline (exactly the rules of _scalar): a call per value costs.
            item_kind = type(item)
            if (
                item_kind is str
                or item is None
                or item_kind is bool
                or (item_kind is int and -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT)
            ):
                copy[key] = item
            elif item_kind is dict or item_kind is list or item_kind is tuple:
                copy[key] = _plain(item)
            else:
                copy[key] = _scalar(item)
        return copy
    if kind is list or kind is tuple:
        return [
            _plain(item)
            if type(item) is dict or type(item) is list or type(item) is tuple
            else _scalar(item)
            for item in value
        ]
    return _scalar(value)


def _scalar(value: Any) -> Any:
    """Return a JSON scalar as RFC 8785 writes it; raise _NotPlain for anything else."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
        raise _NotPlain
    if kind is float:
        if value.is_integer():
            if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                return int(value)
            raise _NotPlain
        # Python's repr and ECMAScript agree on digits and use plain notation here.
        if 1e-4 <= abs(value) < 1e16:
            return value
        raise _NotPlain
    raise _NotPlain


def _encode(value: Any) -> tuple[str, Any]:
    """Return the canonical text of `value` and a detached copy equal to its parsed form."""
    try:
        try:
            copy = _plain(value)
        except _NotPlain:
            text = rfc8785.dumps(value).decode("utf-8")
            return text, parse_json(text)
        text = _ENCODE(copy)
        if not text.isascii():
            text.encode("utf-8")  # lone surrogates cannot be recorded
        return text, copy
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        raise ValueError(f"cannot be recorded as canonical JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValueError("cannot be recorded as canonical JSON: nested too deeply") from exc


def _parse_int(text: str) -> int | float:
    number = int(text)
    return number if -_MAX_SAFE_INT <= number <= _MAX_SAFE_INT else float(number)


def parse_json(text: str) -> Any:
    """Parse JSON text with the JSON number model: integers beyond ±(2**53 - 1) are doubles.

    RFC 8785 writes a double such as 1e16 as `10000000000000000`; reading it back as a
    float keeps it the same number, so it canonicalises to the same text again.
    """
    return json.loads(text, parse_int=_parse_int)


def as_json_numbers(value: Any) -> Any:
    """Return `value` with integers beyond ±(2**53 - 1) turned into doubles, as JSON means them.

    For data parsed by an ordinary JSON reader (e.g. a JSON export) before it is
    canonicalised again.
    """
    kind = type(value)
    if kind is int and not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        return float(value)
    if kind is dict:
        return {key: as_json_numbers(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [as_json_numbers(item) for item in value]
    return value


def canonical_json(value: Any) -> str:
    """Return the RFC 8785 canonical JSON text of `value`.

    Raises ValueError when `value` cannot be represented exactly (NaN, infinity,
    integers beyond ±(2**53 - 1), non-string keys, unsupported types, lone surrogates).
    """
    return _encode(value)[0]


def canonical_object(value: Any) -> tuple[str, dict[str, Any]]:
    """Canonicalise a JSON object; return its text and a detached copy equal to that text.

    The copy is what a reader of the record will see; later changes the caller makes
    to `value` cannot alter it.
    """
    if not isinstance(value, dict):
        raise TypeError(f"entry data must be a dict, not {type(value).__name__}")
    text, copy = _encode(value)
    return text, copy


def sha256_hex(text: str) -> str:
    """Return the SHA-256 hex digest of the UTF-8 encoding of `text`."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
