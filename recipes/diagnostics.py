"""Positioned error messages and the exception that carries all of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Pos:
    """A 1-based line and column in a recipe file."""

    line: int
    col: int


FILE_START = Pos(1, 1)


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """One problem found in a recipe file, at a 1-based line and column."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class RecipeError(Exception):
    """A recipe could not be loaded; ``diagnostics`` lists every problem, sorted by position."""

    diagnostics: list[Diagnostic]

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = sorted(set(diagnostics))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class DiagnosticSink:
    """Collects the diagnostics of one file so that every error is reported, not only the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._diagnostics: list[Diagnostic] = []

    def error(self, pos: Pos, message: str) -> None:
        """Record an error at ``pos``."""
        self._diagnostics.append(Diagnostic(self.file, pos.line, pos.col, message))

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """The errors recorded so far, sorted by position."""
        return sorted(set(self._diagnostics))

    @property
    def count(self) -> int:
        """Number of errors recorded so far (compare before and after a check)."""
        return len(self._diagnostics)

    def exception(self) -> RecipeError:
        """A :class:`RecipeError` carrying every error recorded so far."""
        return RecipeError(self._diagnostics)
