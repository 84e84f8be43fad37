"""The phase type registry: what arguments each phase type takes and how each is checked.

A phase type is a :class:`PhaseSpec` registered in :data:`PHASE_TYPES`. New phase
types (the engine adds more) are registered with :func:`register_phase` without
touching the loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from recipes.diagnostics import DiagnosticSink
from recipes.equipment import EquipmentClass
from recipes.symbols import Symbols
from recipes.yamltree import MapNode, Node


@dataclass(slots=True)
class PhaseContext:
    """What an argument check may consult, and the arguments accepted so far."""

    symbols: Symbols
    sink: DiagnosticSink
    node: MapNode
    """The phase's YAML mapping (for positions of keys)."""
    phase: str
    """The phase name, for messages."""
    unit: str | None
    """The equipment alias of the enclosing unit procedure (None if it is invalid)."""
    args: dict[str, object] = field(default_factory=dict)

    @property
    def equipment_class(self) -> EquipmentClass | None:
        """The class of the phase's unit, if known."""
        return self.symbols.units.get(self.unit) if self.unit is not None else None

    def present(self, name: str) -> bool:
        """True if the phase mapping has field ``name`` (valid or not)."""
        return name in self.node.entries


ArgCheck = Callable[[Node, PhaseContext], object | None]
"""Validates one argument node; returns the model value, or None after reporting."""

FinishCheck = Callable[[PhaseContext], None]
"""Cross-argument rules, run after every argument was checked."""


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """One argument of a phase type."""

    name: str
    check: ArgCheck
    required: bool = True
    default: object | None = None
    """Value stored in ``Phase.args`` when an optional argument is absent (None: leave out)."""
    description: str = ""
    schema: dict[str, object] = field(default_factory=dict)
    """JSON Schema of the value, for editors (``cellbatch recipe schema``)."""


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    """A phase type: its arguments in checking order and optional cross-argument rules."""

    name: str
    description: str
    args: tuple[ArgSpec, ...]
    finish: FinishCheck | None = None
    idempotent: bool = True
    """False for a type whose logic acts on material or starts something once (a method
    call, a transfer, an instrument program): running it again from its start is not the
    same as running it once, so a supervisor may repeat it only where the phase declares
    ``repeatable: true`` (R7)."""

    @property
    def required(self) -> tuple[str, ...]:
        """Names of required arguments."""
        return tuple(a.name for a in self.args if a.required)

    @property
    def optional(self) -> tuple[str, ...]:
        """Names of optional arguments."""
        return tuple(a.name for a in self.args if not a.required)

    def check_args(self, ctx: PhaseContext) -> dict[str, object]:
        """Check every argument present in ``ctx.node``; return the accepted ones."""
        for arg in self.args:
            entry = ctx.node.entries.get(arg.name)
            if entry is None:
                if arg.default is not None:
                    ctx.args[arg.name] = arg.default
                continue
            value = arg.check(entry.value, ctx)
            if value is not None:
                ctx.args[arg.name] = value
        if self.finish is not None:
            self.finish(ctx)
        return ctx.args


PHASE_TYPES: dict[str, PhaseSpec] = {}
"""Every known phase type by name."""


def register_phase(spec: PhaseSpec) -> PhaseSpec:
    """Add a phase type to :data:`PHASE_TYPES` (names must be unique)."""
    if spec.name in PHASE_TYPES:
        raise ValueError(f"phase type '{spec.name}' is already registered")
    PHASE_TYPES[spec.name] = spec
    return spec
