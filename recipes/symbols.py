"""What the procedure and monitors may refer to: formula parameters and equipment units."""

from __future__ import annotations

from dataclasses import dataclass, field

from recipes.diagnostics import DiagnosticSink, Pos
from recipes.equipment import CapabilitySpec, EquipmentClass
from recipes.fields import suggest
from recipes.model import Parameter


@dataclass(slots=True)
class Symbols:
    """Declared names. Names declared with errors are kept so that uses are not reported twice."""

    parameters: dict[str, Parameter] = field(default_factory=dict)
    broken_parameters: set[str] = field(default_factory=set)
    units: dict[str, EquipmentClass | None] = field(default_factory=dict)
    """Equipment alias → its class, or None if the class was unknown (already reported)."""
    parameters_known: bool = True
    """False if the formula section was unusable: references are then not checked."""
    units_known: bool = True
    """False if the equipment section was missing or unusable: aliases are then not checked."""

    def unit_class(self, alias: str, pos: Pos, sink: DiagnosticSink) -> EquipmentClass | None:
        """The class of unit ``alias``; reports an undeclared alias at ``pos``."""
        if alias not in self.units:
            if not self.units_known:
                return None
            declared = ", ".join(self.units) or "none"
            sink.error(
                pos,
                f"unit '{alias}' is not declared in equipment{suggest(alias, self.units)}"
                f" (declared: {declared})",
            )
            return None
        return self.units[alias]

    def capability(
        self,
        alias: str | None,
        name: str,
        pos: Pos,
        sink: DiagnosticSink,
        *,
        writable: bool = False,
    ) -> CapabilitySpec | None:
        """Capability ``name`` of unit ``alias``; reports it at ``pos`` if absent or read-only.

        Returns None silently when the unit itself is unusable (already reported).
        """
        cls = self.units.get(alias) if alias is not None else None
        if cls is None:
            return None
        spec = cls.capabilities.get(name)
        if spec is None:
            sink.error(
                pos,
                f"unit '{alias}' ({cls.name}) has no capability '{name}'"
                f"{suggest(name, cls.capabilities)}",
            )
            return None
        if writable and not spec.writable:
            sink.error(pos, f"capability '{name}' of unit '{alias}' is read-only")
            return None
        return spec
