"""Typed, position-aware reading of YAML nodes, reporting every mismatch as a diagnostic.

Every reader returns None when the value is missing or wrong (after reporting it)
and never raises. Values already reported by the YAML layer (:class:`BadNode`)
are skipped silently so that one mistake gives one diagnostic.
"""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Iterable, Sequence

from recipes.diagnostics import DiagnosticSink, Pos
from recipes.yamltree import BadNode, MapNode, Node, ScalarNode, SeqNode

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
"""Names of procedural elements, equipment aliases and monitors."""

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""Names of formula parameters (they are referenced as ``$name`` inside expressions)."""

MAX_SAFE_INTEGER = 2**53
"""Largest integer that canonical JSON (RFC 8785) represents exactly."""


def describe(node: Node) -> str:
    """Short description of what a node holds, for messages ("a list", "string 'x'")."""
    if isinstance(node, MapNode):
        return "a mapping"
    if isinstance(node, SeqNode):
        return "a list"
    if isinstance(node, ScalarNode):
        value = node.value
        if value is None:
            return "nothing (null)"
        if isinstance(value, bool):
            return f"boolean {str(value).lower()}"
        if isinstance(value, int | float):
            return f"number {value}"
        if isinstance(value, datetime.date):
            return f"date {value.isoformat()}"
        return f"string '{value}'"
    return "an invalid value"


def suggest(word: str, choices: Iterable[str]) -> str:
    """A "; did you mean 'x'?" hint for a misspelt ``word``, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def as_map(node: Node, sink: DiagnosticSink, what: str) -> MapNode | None:
    """``node`` as a mapping, or None after reporting."""
    if isinstance(node, MapNode):
        return node
    if not isinstance(node, BadNode):
        sink.error(node.pos, f"{what} must be a mapping, got {describe(node)}")
    return None


def as_seq(
    node: Node, sink: DiagnosticSink, what: str, *, non_empty: bool = False
) -> SeqNode | None:
    """``node`` as a list (optionally non-empty), or None after reporting."""
    if isinstance(node, SeqNode):
        if non_empty and not node.items:
            sink.error(node.pos, f"{what} must not be empty")
            return None
        return node
    if not isinstance(node, BadNode):
        sink.error(node.pos, f"{what} must be a list, got {describe(node)}")
    return None


MAX_STRING = 10_000
"""Characters in one string value of a recipe."""
UNSAFE_CHARACTERS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)
"""Control characters (but tab and newline) and the invisible or bidirectional formatting
characters that make text read differently from what it is (e.g. U+202E)."""


def as_str(node: Node, sink: DiagnosticSink, what: str) -> str | None:
    """``node`` as a non-empty, printable string of sane length, or None after reporting."""
    if isinstance(node, ScalarNode) and isinstance(node.value, str):
        if not node.value.strip():
            sink.error(node.pos, f"{what} must not be empty")
            return None
        if len(node.value) > MAX_STRING:
            sink.error(node.pos, f"{what} is longer than {MAX_STRING} characters")
            return None
        bad = UNSAFE_CHARACTERS.search(node.value)
        if bad is not None:
            sink.error(
                node.pos,
                f"{what} contains the control or formatting character "
                f"U+{ord(bad.group()):04X}, which is not allowed",
            )
            return None
        return node.value
    if not isinstance(node, BadNode):
        sink.error(node.pos, f"{what} must be a string, got {describe(node)}")
    return None


def as_choice(node: Node, sink: DiagnosticSink, what: str, choices: Sequence[str]) -> str | None:
    """``node`` as one of ``choices``, or None after reporting."""
    text = as_str(node, sink, what)
    if text is not None and text not in choices:
        sink.error(
            node.pos,
            f"{what} must be one of {', '.join(choices)}, got '{text}'{suggest(text, choices)}",
        )
        return None
    return text


def as_bool(node: Node, sink: DiagnosticSink, what: str) -> bool | None:
    """``node`` as true or false, or None after reporting."""
    if isinstance(node, ScalarNode) and isinstance(node.value, bool):
        return node.value
    if not isinstance(node, BadNode):
        sink.error(node.pos, f"{what} must be true or false, got {describe(node)}")
    return None


def is_number(node: Node) -> bool:
    """True if ``node`` is an int or float scalar (booleans excluded)."""
    return (
        isinstance(node, ScalarNode)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    )


def as_number(node: Node, sink: DiagnosticSink, what: str) -> float | None:
    """``node`` as a float, or None after reporting."""
    if isinstance(node, ScalarNode) and is_number(node):
        assert isinstance(node.value, int | float)
        if isinstance(node.value, int) and abs(node.value) > MAX_SAFE_INTEGER:
            sink.error(node.pos, f"{what}: integer {node.value} is too large; write it as a float")
            return None
        return float(node.value)
    if not isinstance(node, BadNode):
        sink.error(node.pos, f"{what} must be a number, got {describe(node)}")
    return None


def as_name(
    node: Node, sink: DiagnosticSink, what: str, pattern: re.Pattern[str] = NAME_RE
) -> str | None:
    """``node`` as a name matching ``pattern``, or None after reporting."""
    text = as_str(node, sink, what)
    if text is None or not check_name(text, node.pos, sink, what, pattern):
        return None
    return text


def check_name(
    name: str, pos: Pos, sink: DiagnosticSink, what: str, pattern: re.Pattern[str]
) -> bool:
    """Check a name given as a mapping key; report at ``pos`` if it does not match."""
    if pattern.fullmatch(name):
        return True
    allowed = "letters, digits, '_'" + (" or '-'" if pattern is NAME_RE else "")
    sink.error(pos, f"{what} '{name}' must start with a letter or '_' and contain only {allowed}")
    return False


class FieldReader:
    """One YAML mapping's fields: reports unknown and missing ones, then reads typed values."""

    def __init__(
        self,
        node: MapNode,
        sink: DiagnosticSink,
        what: str,
        required: Sequence[str],
        optional: Sequence[str] = (),
    ) -> None:
        self.node = node
        self.sink = sink
        self.what = what
        known = (*required, *optional)
        for key, entry in node.entries.items():
            if key not in known:
                sink.error(
                    entry.key_pos,
                    f"unknown field '{key}' in {what}{suggest(key, known)}"
                    f" (allowed: {', '.join(known)})",
                )
        for key in required:
            if key not in node.entries:
                sink.error(node.label_pos, f"{what}: missing required field '{key}'")

    def has(self, name: str) -> bool:
        """True if the field is present."""
        return name in self.node.entries

    def get(self, name: str) -> Node | None:
        """The field's node, or None if absent."""
        entry = self.node.entries.get(name)
        return entry.value if entry else None

    def _label(self, name: str) -> str:
        return f"{self.what}: field '{name}'"

    def string(self, name: str) -> str | None:
        """A non-empty string field."""
        node = self.get(name)
        return None if node is None else as_str(node, self.sink, self._label(name))

    def name(self, name: str, pattern: re.Pattern[str] = NAME_RE) -> str | None:
        """A name field (letters, digits, '_' and '-')."""
        node = self.get(name)
        return None if node is None else as_name(node, self.sink, self._label(name), pattern)

    def number(self, name: str) -> float | None:
        """A numeric field."""
        node = self.get(name)
        return None if node is None else as_number(node, self.sink, self._label(name))

    def choice(self, name: str, choices: Sequence[str]) -> str | None:
        """A string field restricted to ``choices``."""
        node = self.get(name)
        return None if node is None else as_choice(node, self.sink, self._label(name), choices)

    def mapping(self, name: str) -> MapNode | None:
        """A mapping field."""
        node = self.get(name)
        return None if node is None else as_map(node, self.sink, self._label(name))

    def sequence(self, name: str, *, non_empty: bool = False) -> SeqNode | None:
        """A list field (optionally required to be non-empty)."""
        node = self.get(name)
        if node is None:
            return None
        return as_seq(node, self.sink, self._label(name), non_empty=non_empty)


def peek_str(node: MapNode, key: str) -> str | None:
    """The field ``key`` if it is a string, without reporting anything (for message labels)."""
    entry = node.entries.get(key)
    if entry is not None and isinstance(entry.value, ScalarNode):
        value = entry.value.value
        if isinstance(value, str):
            return value
    return None


class UniqueNames:
    """Reports a name used twice among siblings, at the second use."""

    def __init__(self, sink: DiagnosticSink, kind: str, parent: str = "") -> None:
        self._sink = sink
        self._kind = kind
        self._parent = f" in {parent}" if parent else ""
        self._first_line: dict[str, int] = {}

    def claim(self, name: str, pos: Pos) -> None:
        """Record ``name`` written at ``pos``; report it if already taken."""
        if name in self._first_line:
            self._sink.error(
                pos,
                f"duplicate {self._kind} name '{name}'{self._parent} "
                f"(first defined at line {self._first_line[name]})",
            )
        else:
            self._first_line[name] = pos.line
