"""The validated master recipe: immutable ISA-88 header, formula, equipment, monitors, procedure."""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["draft", "approved", "retired"]
MonitorAction = Literal["alarm", "hold", "abort"]
Criticality = Literal["critical", "key", "non-critical"]
"""ICH Q8 classes of a process parameter: critical (CPP), key (KPP), or neither."""

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
"""Operators allowed in a condition, longest first (for parsing)."""


@dataclass(frozen=True, slots=True)
class ParamRef:
    """A reference to a formula parameter (``$name`` in YAML).

    ``scale`` converts the parameter's unit into the unit the phase expects:
    a duration given as ``$settle_time`` in ``h`` has ``scale=3600`` so that
    :meth:`Recipe.resolve` yields seconds. It is 1.0 everywhere else.
    """

    name: str
    scale: float = 1.0

    def __str__(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True, slots=True)
class Duration:
    """A literal duration, normalised to seconds."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Condition:
    """``tag op operand``, e.g. ``culture.viable_density >= $harvest_density``."""

    tag: str
    op: str
    operand: float | ParamRef

    def holds(self, value: float, operand: float) -> bool:
        """True if ``value op operand`` (operand already resolved)."""
        return COMPARISONS[self.op](value, operand)

    def __str__(self) -> str:
        return f"{self.tag} {self.op} {self.operand}"


@dataclass(frozen=True, slots=True)
class Header:
    """Recipe identification and approval status."""

    name: str
    version: str
    product: str
    status: Status
    author: str
    description: str | None = None
    site: str | None = None
    """Set on a site recipe (``recipe transfer``): the site it was transferred to."""
    master_sha256: str | None = None
    """Set on a site recipe: the content hash of the master recipe it came from."""


@dataclass(frozen=True, slots=True)
class Parameter:
    """A named formula value with its engineering unit and allowed range."""

    name: str
    value: float
    unit: str
    min: float | None = None
    max: float | None = None
    description: str | None = None

    def allows(self, value: float) -> bool:
        """True if ``value`` lies within [min, max] (open ends allowed)."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


@dataclass(frozen=True, slots=True)
class EquipmentRequirement:
    """A unit the recipe needs, by local alias and equipment class."""

    alias: str
    equipment_class: str


@dataclass(frozen=True, slots=True)
class Monitor:
    """A critical process parameter, watched for the whole batch or from an operation on."""

    name: str
    unit: str
    tag: str
    engineering_unit: str
    alert_low: float | None
    alert_high: float | None
    action_low: float | None
    action_high: float | None
    delay_s: float
    action: MonitorAction
    hysteresis: float = 0.0
    """An alarm clears only when the value is back inside its band by this margin."""
    active_from: str | None = None
    """Operation (``unit_procedure/operation``) from whose start the monitor watches;
    None: the whole batch (e.g. temperature is only a CPP once the cells are in)."""
    criticality: Criticality | None = None
    """Whether the parameter is a CPP (``critical``), a KPP (``key``) or neither."""
    nor: Range | None = None
    """Normal operating range: where the process runs."""
    par: Range | None = None
    """Proven acceptable range: where product quality was shown to hold."""
    rationale: str | None = None
    """Why the parameter has this criticality and these ranges."""


@dataclass(frozen=True, slots=True)
class Range:
    """A closed interval with open ends allowed (``None``)."""

    low: float | None = None
    high: float | None = None

    def contains(self, value: float) -> bool:
        """True if ``value`` lies within the range."""
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        low = "" if self.low is None else f"{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}"
        return f"[{low} … {high}]"


@dataclass(frozen=True, slots=True)
class HoldTime:
    """A limit on the process time from the end of element ``start`` to the start of
    element ``end`` (a hold-time or exposure limit, ``hold_times:`` section)."""

    name: str
    start: str
    end: str
    max_s: float
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Cqa:
    """A critical quality attribute: what QC measures and the specification it must meet.

    ``spec`` is a numeric range, or ``expect`` a text result (e.g. ``negative``).
    """

    name: str
    unit: str | None
    method: str
    spec: Range | None = None
    expect: str | None = None
    description: str | None = None

    def specification(self) -> str:
        """The specification as people read it: ``≥ 70 %``, ``[0 … 5] EU/mL``, ``negative``."""
        if self.expect is not None:
            return self.expect
        assert self.spec is not None
        unit = f" {self.unit}" if self.unit else ""
        if self.spec.low is not None and self.spec.high is None:
            return f"≥ {self.spec.low:g}{unit}"
        if self.spec.high is not None and self.spec.low is None:
            return f"≤ {self.spec.high:g}{unit}"
        return f"{self.spec}{unit}"

    def meets(self, value: float | str) -> bool:
        """Whether a result meets the specification (a text result compared case-blind)."""
        if self.expect is not None:
            return str(value).strip().casefold() == self.expect.casefold()
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return False
        assert self.spec is not None
        return self.spec.contains(value)


EntryKind = Literal["number", "text", "choice"]


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """One value a person types at a prompt: its type, unit, limits and a declared example.

    The example is what a simulated operator answers, so every recipe runs unattended
    in simulation.
    """

    name: str
    kind: EntryKind
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    example: float | str | None = None

    def check(self, value: object) -> float | str:
        """The value as typed by a person, validated; ValueError says what is wrong."""
        if self.kind == "number":
            if isinstance(value, bool):
                raise ValueError(f"{self.name}: expected a number, got {value!r}")
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError(f"{self.name}: expected a number, got {value!r}") from None
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(f"{self.name}: {value!r} is not a finite number")
            if self.min is not None and number < self.min:
                raise ValueError(f"{self.name}: {number:g} is below the minimum {self.min:g}")
            if self.max is not None and number > self.max:
                raise ValueError(f"{self.name}: {number:g} is above the maximum {self.max:g}")
            return number
        text = str(value).strip() if value is not None else ""
        if not text:
            raise ValueError(f"{self.name}: an answer is required")
        if self.kind == "choice" and text not in self.choices:
            raise ValueError(f"{self.name}: {text!r} is not one of {', '.join(self.choices)}")
        return text


@dataclass(frozen=True, slots=True)
class Phase:
    """The procedural element that drives equipment; ``args`` are validated phase arguments."""

    name: str
    type: str
    args: dict[str, object]
    line: int


@dataclass(frozen=True, slots=True)
class Parallel:
    """An AND split/join: every branch (a sequence of steps) runs at once; the next
    step starts when all have ended."""

    branches: tuple[tuple[str, Flow], ...]


FlowItem = str | Parallel
"""A step of a sequence: a child element by name, or a parallel block."""

Flow = tuple[FlowItem, ...]


def sequential(children: list[Any]) -> Flow:
    """The flow of children that simply run one after another."""
    return tuple(child.name for child in children)


@dataclass(frozen=True, slots=True)
class Operation:
    """Phases, in sequence or in parallel branches (``flow``)."""

    name: str
    phases: list[Phase]
    flow: Flow = ()

    @property
    def steps(self) -> Flow:
        """The order of the phases (sequential unless the recipe says otherwise)."""
        return self.flow or sequential(self.phases)


@dataclass(frozen=True, slots=True)
class UnitProcedure:
    """Operations run on one unit (an equipment alias), in sequence or in parallel."""

    name: str
    unit: str
    operations: list[Operation]
    flow: Flow = ()

    @property
    def steps(self) -> Flow:
        """The order of the operations."""
        return self.flow or sequential(self.operations)


@dataclass(frozen=True, slots=True)
class Procedure:
    """The top of the procedural model: unit procedures in sequence or in parallel."""

    name: str
    unit_procedures: list[UnitProcedure]
    flow: Flow = ()

    @property
    def steps(self) -> Flow:
        """The order of the unit procedures."""
        return self.flow or sequential(self.unit_procedures)

    def walk(self) -> Iterator[tuple[str, UnitProcedure, Operation, Phase]]:
        """Yield ``("unit_procedure/operation/phase", up, op, phase)`` in file order (the
        execution order, with parallel branches one after the other)."""
        for up in self.unit_procedures:
            for op in up.operations:
                for phase in op.phases:
                    yield f"{up.name}/{op.name}/{phase.name}", up, op, phase


@dataclass(frozen=True, slots=True)
class Recipe:
    """A validated master recipe and the hash that pins its content."""

    header: Header
    formula: dict[str, Parameter]
    equipment: dict[str, EquipmentRequirement]
    monitors: list[Monitor]
    procedure: Procedure
    content_hash: str
    source: str
    _document: dict[str, Any] = field(repr=False, compare=False)
    cqas: list[Cqa] = field(default_factory=list)
    """Critical quality attributes that QC results fill."""
    hold_times: list[HoldTime] = field(default_factory=list)
    """Hold-time / exposure limits between named steps."""

    def document(self) -> dict[str, Any]:
        """The parsed YAML as plain dicts, lists and scalars (a fresh copy)."""
        return copy.deepcopy(self._document)

    def resolve(self, value: object, overrides: Mapping[str, float] | None = None) -> float:
        """A phase argument as a number: parameters from ``overrides`` or the formula, durations
        in seconds. Raises KeyError for an unknown parameter, TypeError for a non-numeric value.
        """
        if isinstance(value, Duration):
            return value.seconds
        if isinstance(value, ParamRef):
            if overrides is not None and value.name in overrides:
                raw = overrides[value.name]
            else:
                raw = self.formula[value.name].value
            return float(raw) * value.scale
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"cannot resolve {value!r} to a number")
