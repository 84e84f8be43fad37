"""Where things are in a TOML file: the line and column of every key, so that a
schema error can be reported as ``FILE:LINE:COL: message``.

:func:`key_positions` scans the text once (strings, comments, inline tables and
arrays understood; values are not parsed — :mod:`tomllib` does that) and maps each
key path to the 1-based line and column where the key is written. Path elements are
key names, and array indexes for arrays of tables (``[[units]]``) and for tables
inside arrays (``args = [{ name = … }]``).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_DECODE_AT = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True, slots=True)
class Located:
    """A TOML document with the position of each of its keys."""

    file: str
    doc: dict[str, Any]
    positions: dict[Path, tuple[int, int]]

    def at(self, path: Sequence[str | int]) -> str:
        """``FILE:LINE:COL`` of ``path`` (or of its nearest written ancestor)."""
        key = tuple(path)
        while key and key not in self.positions:
            key = key[:-1]
        line, col = self.positions.get(key, (1, 1))
        return f"{self.file}:{line}:{col}"


class TomlSyntaxError(ValueError):
    """The file is not TOML; the message is ``FILE:LINE:COL: what``."""


def load_located(text: str, file: str) -> Located:
    """Parse ``text`` (TOML) and locate its keys; TomlSyntaxError names the position."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _DECODE_AT.search(message)
        line, col = (int(found.group(1)), int(found.group(2))) if found else (1, 1)
        what = _DECODE_AT.sub("", message).strip()
        raise TomlSyntaxError(f"{file}:{line}:{col}: {what}") from None
    return Located(file, doc, key_positions(text))


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.col = 1
        self.out: dict[Path, tuple[int, int]] = {}
        self.array_tables: dict[Path, int] = {}

    def peek(self, n: int = 0) -> str:
        j = self.i + n
        return self.text[j] if j < len(self.text) else ""

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.i >= len(self.text):
                return
            if self.text[self.i] == "\n":
                self.line += 1
                self.col = 1
            else:
                self.col += 1
            self.i += 1

    def skip_space(self, newlines: bool) -> None:
        while self.i < len(self.text):
            c = self.peek()
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance()
            elif c == "#":
                while self.i < len(self.text) and self.peek() != "\n":
                    self.advance()
            else:
                return

    def string(self) -> str:
        quote = self.peek()
        triple = self.text.startswith(quote * 3, self.i)
        end = quote * 3 if triple else quote
        self.advance(3 if triple else 1)
        start = self.i
        while self.i < len(self.text) and not self.text.startswith(end, self.i):
            if quote == '"' and self.peek() == "\\":
                self.advance()
            self.advance()
        value = self.text[start : self.i]
        self.advance(len(end))
        return value

    def key(self) -> list[tuple[str, tuple[int, int]]]:
        """A dotted key: its parts with their positions."""
        parts = []
        while True:
            self.skip_space(False)
            at = (self.line, self.col)
            if self.peek() in "\"'":
                parts.append((self.string(), at))
            else:
                found = _BARE.match(self.text, self.i)
                if found is None:
                    return parts
                parts.append((found.group(0), at))
                self.advance(found.end() - self.i)
            self.skip_space(False)
            if self.peek() != ".":
                return parts
            self.advance()

    def record(self, base: Path, parts: list[tuple[str, tuple[int, int]]]) -> Path:
        path = base
        for name, at in parts:
            path = (*path, name)
            self.out.setdefault(path, at)
        return path

    def value(self, path: Path) -> None:
        self.skip_space(False)
        c = self.peek()
        if c in "\"'":
            self.string()
        elif c == "{":
            self.advance()
            while True:
                self.skip_space(True)
                if self.peek() in ("}", ""):
                    self.advance()
                    return
                if self.peek() == ",":
                    self.advance()
                    continue
                inner = self.record(path, self.key())
                self.skip_space(False)
                if self.peek() == "=":
                    self.advance()
                    self.value(inner)
                else:
                    self.advance()
        elif c == "[":
            self.advance()
            index = 0
            while True:
                self.skip_space(True)
                if self.peek() in ("]", ""):
                    self.advance()
                    return
                if self.peek() == ",":
                    self.advance()
                    index += 1
                    continue
                element = (*path, index)
                self.out.setdefault(element, (self.line, self.col))
                self.value(element)
        else:
            while self.i < len(self.text) and self.peek() not in ",}]\n#":
                self.advance()

    def run(self) -> dict[Path, tuple[int, int]]:
        table: Path = ()
        while True:
            self.skip_space(True)
            if self.i >= len(self.text):
                return self.out
            if self.peek() == "[":
                array = self.text.startswith("[[", self.i)
                self.advance(2 if array else 1)
                parts = self.key()
                names: Path = tuple(name for name, _ in parts)
                if array:
                    index = self.array_tables.get(names, -1) + 1
                    self.array_tables[names] = index
                    self.record((), parts)
                    table = (*names, index)
                    self.out.setdefault(table, parts[-1][1] if parts else (self.line, 1))
                else:
                    table = self._resolve(names)
                    self.out.setdefault(table, parts[-1][1] if parts else (self.line, 1))
                while self.i < len(self.text) and self.peek() != "\n":
                    self.advance()
                continue
            parts = self.key()
            if not parts:
                self.advance()
                continue
            path = self.record(table, parts)
            self.skip_space(False)
            if self.peek() == "=":
                self.advance()
                self.value(path)

    def _resolve(self, names: Path) -> Path:
        """``[units.address]`` after ``[[units]]`` is inside the last units entry."""
        out: Path = ()
        for name in names:
            out = (*out, name)
            if out in self.array_tables:
                out = (*out, self.array_tables[out])
        return out


def key_positions(text: str) -> dict[Path, tuple[int, int]]:
    """Line and column (1-based) of every key path written in ``text``."""
    return _Scanner(text).run()


def did_you_mean(word: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known word, or ``""``."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
