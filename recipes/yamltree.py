"""Parse YAML text into a small tree of nodes that know their position.

ruamel.yaml's round-trip loader keeps the line and column of every mapping key,
mapping value and sequence item (``.lc``) and reports syntax errors with a mark.
This module turns its output into :class:`MapNode`, :class:`SeqNode` and
:class:`ScalarNode` objects carrying 1-based positions, so that the validators
never touch ruamel types. Syntax errors, duplicate keys, non-string keys and
unsupported values become diagnostics.
"""

from __future__ import annotations

import datetime
import math
import warnings
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, SequenceNode
from ruamel.yaml.nodes import Node as ComposedNode
from ruamel.yaml.nodes import ScalarNode as ComposedScalar
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from recipes.diagnostics import FILE_START, DiagnosticSink, Pos

Scalar = str | int | float | bool | None | datetime.date
"""Python values a scalar node may hold (dates come from unquoted ISO dates)."""

MAX_NODES = 100_000
"""Upper bound on nodes after alias expansion (guards against alias bombs)."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML node: ``pos`` is where its text starts, ``label_pos`` the key or item naming it."""

    pos: Pos
    label_pos: Pos


@dataclass(frozen=True, slots=True)
class ScalarNode(Node):
    """A scalar; ``text_col`` is the column where a one-line string's text starts, if known."""

    value: Scalar
    text_col: int | None = None

    def pos_at(self, offset: int) -> Pos:
        """Position of the character ``offset`` inside a one-line string (else the scalar)."""
        if self.text_col is None:
            return self.pos
        return Pos(self.pos.line, self.text_col + offset)


@dataclass(frozen=True, slots=True)
class Entry:
    """One mapping entry: the key's position and the value node."""

    key_pos: Pos
    value: Node


@dataclass(frozen=True, slots=True)
class MapNode(Node):
    """A mapping with string keys, in file order."""

    entries: dict[str, Entry]


@dataclass(frozen=True, slots=True)
class SeqNode(Node):
    """A sequence."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class BadNode(Node):
    """A value that was already reported as unusable; readers skip it silently."""


def parse_yaml(text: str, sink: DiagnosticSink) -> Node | None:
    """Parse ``text``; return the root node, or None if empty or unparseable (then reported)."""
    text = text.removeprefix("\ufeff")
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = True  # reported below, all of them, at the duplicate
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            composed = yaml.compose(text)
            data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(mark.line + 1, mark.column + 1) if mark is not None else FILE_START
        sink.error(pos, f"YAML syntax error: {exc.problem or exc.context or 'invalid document'}")
        return None
    except ReaderError as exc:
        sink.error(_offset_pos(text, exc.position), f"YAML syntax error: {exc.reason}")
        return None
    except YAMLError as exc:
        sink.error(FILE_START, f"YAML syntax error: {exc}")
        return None
    except Exception as exc:  # ruamel may fail on odd input (e.g. unhashable complex keys)
        sink.error(FILE_START, f"YAML document cannot be loaded: {type(exc).__name__}: {exc}")
        return None
    if composed is not None:
        _report_duplicate_keys(composed, sink)
    if data is None:
        return None
    return _Converter(text, sink).convert(data, _root_pos(data), FILE_START)


def to_plain(node: Node) -> Any:
    """The node as plain dicts, lists and scalars (dates as ISO strings)."""
    if isinstance(node, MapNode):
        return {key: to_plain(entry.value) for key, entry in node.entries.items()}
    if isinstance(node, SeqNode):
        return [to_plain(item) for item in node.items]
    if isinstance(node, ScalarNode):
        if isinstance(node.value, datetime.date):
            return node.value.isoformat()
        return node.value
    return None


def _offset_pos(text: str, offset: int) -> Pos:
    """1-based position of the character at ``offset`` in ``text``."""
    before = text[:offset]
    return Pos(before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


def _root_pos(data: Any) -> Pos:
    lc = getattr(data, "lc", None)
    if lc is None or lc.line is None:
        return FILE_START
    return Pos(lc.line + 1, lc.col + 1)


def _report_duplicate_keys(root: ComposedNode, sink: DiagnosticSink) -> None:
    """Report every duplicate mapping key at the duplicate (ruamel only sees the first)."""
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                stack.append(value_node)
                if not isinstance(key_node, ComposedScalar) or key_node.tag == _MERGE_TAG:
                    continue
                ident = (str(key_node.tag), str(key_node.value))
                mark = key_node.start_mark
                if ident in first:
                    sink.error(
                        Pos(mark.line + 1, mark.column + 1),
                        f"duplicate key '{key_node.value}' (first defined at line {first[ident]})",
                    )
                else:
                    first[ident] = mark.line + 1
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


class _Converter:
    """Converts ruamel round-trip data into position-carrying nodes."""

    def __init__(self, text: str, sink: DiagnosticSink) -> None:
        self._lines = text.splitlines()
        self._sink = sink
        self._budget = MAX_NODES
        self._active: set[int] = set()

    def convert(self, data: Any, pos: Pos, label_pos: Pos) -> Node:
        """Convert one value found at ``pos`` (and named at ``label_pos``)."""
        self._budget -= 1
        if self._budget < 0:
            if self._budget == -1:
                self._sink.error(pos, f"document too large (more than {MAX_NODES} nodes)")
            return BadNode(pos, label_pos)
        if isinstance(data, CommentedMap | CommentedSeq):
            if id(data) in self._active:
                self._sink.error(pos, "recursive alias is not allowed")
                return BadNode(pos, label_pos)
            self._active.add(id(data))
            try:
                if isinstance(data, CommentedMap):
                    return self._mapping(data, pos, label_pos)
                return self._sequence(data, pos, label_pos)
            finally:
                self._active.discard(id(data))
        return self._scalar(data, pos, label_pos)

    def _mapping(self, data: CommentedMap, pos: Pos, label_pos: Pos) -> Node:
        entries: dict[str, Entry] = {}
        for key, value in data.items():
            where = data.lc.data.get(key)
            key_pos = Pos(where[0] + 1, where[1] + 1) if where else pos
            value_pos = Pos(where[2] + 1, where[3] + 1) if where else pos
            if not isinstance(key, str):
                self._sink.error(key_pos, f"mapping key {key!r} must be a string")
                continue
            entries[str(key)] = Entry(key_pos, self.convert(value, value_pos, key_pos))
        return MapNode(pos, label_pos, entries)

    def _sequence(self, data: CommentedSeq, pos: Pos, label_pos: Pos) -> Node:
        items: list[Node] = []
        for index, value in enumerate(data):
            where = data.lc.data.get(index)
            item_pos = Pos(where[0] + 1, where[1] + 1) if where else pos
            items.append(self.convert(value, item_pos, item_pos))
        return SeqNode(pos, label_pos, tuple(items))

    def _scalar(self, data: Any, pos: Pos, label_pos: Pos) -> Node:
        value: Scalar
        if isinstance(data, bool | ScalarBoolean):
            value = bool(data)
        elif isinstance(data, int):
            value = int(data)
        elif isinstance(data, float):
            value = float(data)
            if not math.isfinite(value):
                self._sink.error(pos, f"number {data} is not finite")
                return BadNode(pos, label_pos)
        elif isinstance(data, str):
            value = str(data)
            return ScalarNode(pos, label_pos, value, self._text_col(value, pos))
        elif data is None or isinstance(data, datetime.date):
            value = data
        else:
            tag = getattr(getattr(data, "tag", None), "value", None)
            what = f"tag '{tag}'" if tag else f"type {type(data).__name__}"
            self._sink.error(pos, f"unsupported YAML value ({what})")
            return BadNode(pos, label_pos)
        return ScalarNode(pos, label_pos, value)

    def _text_col(self, value: str, pos: Pos) -> int | None:
        """Column where ``value`` appears verbatim at ``pos`` (after an opening quote), if so."""
        if "\n" in value or pos.line > len(self._lines):
            return None
        line = self._lines[pos.line - 1]
        start = pos.col - 1
        if line.startswith(value, start):
            return pos.col
        if line[start : start + 1] in ("'", '"') and line.startswith(value, start + 1):
            return pos.col + 1
        return None
