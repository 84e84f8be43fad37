"""Transition conditions (``until:``): comparisons joined by ``and``, ``or``, ``not``.

    culture.viable_density >= 1e7 cells/mL or elapsed >= 12 d
    (ph.pv < 7.0 or ph.pv > 7.4) and not elapsed < 30 min

A comparison is ``CAPABILITY OP VALUE`` or ``elapsed OP DURATION`` with OP one of
>=, <=, >, <. VALUE is a number with an optional unit (it must be the capability's
unit) or a ``$parameter`` of that unit; ``elapsed`` is the process time since the
phase started, compared with a duration (``12 d``, ``90 min``, or a time parameter).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from recipes.expressions import TIME_UNITS, ExpressionError
from recipes.model import COMPARISONS, Condition, ParamRef

ELAPSED = "elapsed"
MAX_NESTING = 32
"""How deep `not` and parentheses may nest in one condition."""
KEYWORDS = ("and", "or", "not")

_TOKEN = re.compile(
    r"\s*(?:(?P<lparen>\()|(?P<rparen>\))|(?P<op>>=|<=|>|<|==|=>|=<|=)"
    r"|(?P<param>\$[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<word>[A-Za-z_%°µ][A-Za-z0-9_./%°µ^]*)"
    r"|(?P<bad>\S))"
)


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token and its offset in the condition text."""

    kind: str
    text: str
    offset: int


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every term holds."""

    terms: tuple[Expr, ...]

    def __str__(self) -> str:
        return " and ".join(_paren(t) for t in self.terms)


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one term holds."""

    terms: tuple[Expr, ...]

    def __str__(self) -> str:
        return " or ".join(_paren(t) for t in self.terms)


@dataclass(frozen=True, slots=True)
class Not:
    """The term does not hold."""

    term: Expr

    def __str__(self) -> str:
        return f"not {_paren(self.term)}"


Expr = Condition | AllOf | AnyOf | Not


def _paren(expr: Expr) -> str:
    return f"({expr})" if isinstance(expr, AllOf | AnyOf) else str(expr)


def tags_of(expr: Expr) -> set[str]:
    """The capabilities an expression reads (``elapsed`` is not one)."""
    if isinstance(expr, Condition):
        return set() if expr.tag == ELAPSED else {expr.tag}
    if isinstance(expr, Not):
        return tags_of(expr.term)
    return set().union(*(tags_of(t) for t in expr.terms))


def evaluate(
    expr: Expr, value_of: Callable[[str], float | None], resolve: Callable[[object], float]
) -> bool:
    """Evaluate with ``value_of(tag)`` (None: unknown, the comparison is false) and
    ``resolve(operand)`` turning parameters into numbers (durations in seconds)."""
    if isinstance(expr, Condition):
        value = value_of(expr.tag)
        return value is not None and expr.holds(value, resolve(expr.operand))
    if isinstance(expr, Not):
        return not evaluate(expr.term, value_of, resolve)
    results = (evaluate(t, value_of, resolve) for t in expr.terms)
    return all(results) if isinstance(expr, AllOf) else any(results)


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens. Raises ExpressionError at a stray character."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            break
        kind = match.lastgroup or "bad"
        start = match.start(kind)
        if kind == "bad":
            raise ExpressionError(f"unexpected character '{match.group(kind)}'", start)
        tokens.append(Token(kind, match.group(kind), start))
        pos = match.end()
    return tokens


@dataclass(frozen=True, slots=True)
class RawComparison:
    """A comparison as written, before names and units are checked."""

    tag: Token
    op: Token
    value: Token
    unit: Token | None


RawExpr = RawComparison | tuple[str, list["RawExpr"]]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ExpressionError("the condition ends too early", len(self.text))
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text == word:
            self.i += 1
            return True
        return False

    def parse(self) -> RawExpr:
        if not self.tokens:
            raise ExpressionError("the condition is empty")
        expr = self.or_expr()
        extra = self.peek()
        if extra is not None:
            raise ExpressionError(
                f"unexpected '{extra.text}' (join comparisons with 'and' or 'or')", extra.offset
            )
        return expr

    def or_expr(self) -> RawExpr:
        terms = [self.and_expr()]
        while self.keyword("or"):
            terms.append(self.and_expr())
        return terms[0] if len(terms) == 1 else ("or", terms)

    def and_expr(self) -> RawExpr:
        terms = [self.not_expr()]
        while self.keyword("and"):
            terms.append(self.not_expr())
        return terms[0] if len(terms) == 1 else ("and", terms)

    def not_expr(self) -> RawExpr:
        self.depth += 1
        try:
            return self._not_expr()
        finally:
            self.depth -= 1

    def _not_expr(self) -> RawExpr:
        if self.depth > MAX_NESTING:
            token = self.peek()
            raise ExpressionError(
                f"the condition nests deeper than {MAX_NESTING} levels ('not' or parentheses)",
                token.offset if token else len(self.text),
            )
        if self.keyword("not"):
            return ("not", [self.not_expr()])
        token = self.peek()
        if token is not None and token.kind == "lparen":
            self.i += 1
            inner = self.or_expr()
            close = self.take()
            if close.kind != "rparen":
                raise ExpressionError(f"expected ')' but found '{close.text}'", close.offset)
            return inner
        return self.comparison()

    def comparison(self) -> RawComparison:
        tag = self.take()
        if tag.kind != "word" or tag.text in KEYWORDS:
            raise ExpressionError(
                f"expected a capability or 'elapsed', found '{tag.text}'", tag.offset
            )
        op = self.take()
        if op.kind != "op" or op.text not in COMPARISONS:
            raise ExpressionError(
                f"expected one of {', '.join(COMPARISONS)} after '{tag.text}', found '{op.text}'",
                op.offset,
            )
        value = self.take()
        if value.kind not in ("number", "param"):
            raise ExpressionError(
                f"operand '{value.text}' must be a number or $parameter", value.offset
            )
        if value.kind == "number":
            number = float(value.text)
            if not math.isfinite(number):
                raise ExpressionError(f"number '{value.text}' is not finite", value.offset)
            if tag.text == ELAPSED and number < 0:
                raise ExpressionError(
                    f"elapsed is never negative: '{value.text}' must not be", value.offset
                )
        unit = None
        follow = self.peek()
        if (
            value.kind == "number"
            and follow is not None
            and follow.kind == "word"
            and (follow.text not in KEYWORDS)
        ):
            unit = self.take()
        return RawComparison(tag, op, value, unit)


def parse_raw(text: str) -> RawExpr:
    """Parse the syntax of a condition. Raises ExpressionError with an offset."""
    return _Parser(text).parse()


def time_seconds(unit: str) -> float | None:
    """Seconds per time unit, or None if ``unit`` is not a time unit."""
    return TIME_UNITS.get(unit)


__all__ = [
    "ELAPSED",
    "AllOf",
    "AnyOf",
    "Expr",
    "Not",
    "ParamRef",
    "RawComparison",
    "RawExpr",
    "evaluate",
    "parse_raw",
    "tags_of",
    "tokenize",
]
