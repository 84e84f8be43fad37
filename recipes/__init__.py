"""ISA-88 master recipes: load, validate and hash YAML recipe files.

``load_recipe(path)`` returns an immutable :class:`Recipe` or raises
:class:`RecipeError` listing every problem with its file, line and column.
"""

from recipes.catalog import EQUIPMENT_CLASSES
from recipes.conditions import ELAPSED, AllOf, AnyOf, Expr, Not, evaluate, tags_of
from recipes.diagnostics import Diagnostic, RecipeError
from recipes.equipment import CapabilitySpec, EquipmentClass, MethodSpec
from recipes.expressions import TIME_UNITS
from recipes.loader import content_hash, load_recipe, parse_recipe
from recipes.model import (
    Condition,
    Cqa,
    Duration,
    EntrySpec,
    EquipmentRequirement,
    Flow,
    Header,
    Monitor,
    Operation,
    Parallel,
    Parameter,
    ParamRef,
    Phase,
    Procedure,
    Range,
    Recipe,
    UnitProcedure,
)
from recipes.phases import PHASE_TYPES
from recipes.phasespec import ArgSpec, PhaseContext, PhaseSpec, register_phase
from recipes.schema import recipe_json_schema

__all__ = [
    "ELAPSED",
    "EQUIPMENT_CLASSES",
    "PHASE_TYPES",
    "TIME_UNITS",
    "AllOf",
    "AnyOf",
    "ArgSpec",
    "CapabilitySpec",
    "Condition",
    "Cqa",
    "Diagnostic",
    "Duration",
    "EntrySpec",
    "EquipmentClass",
    "EquipmentRequirement",
    "Expr",
    "Flow",
    "Header",
    "MethodSpec",
    "Monitor",
    "Not",
    "Operation",
    "Parallel",
    "ParamRef",
    "Parameter",
    "Phase",
    "PhaseContext",
    "PhaseSpec",
    "Procedure",
    "Range",
    "Recipe",
    "RecipeError",
    "UnitProcedure",
    "content_hash",
    "evaluate",
    "load_recipe",
    "parse_recipe",
    "recipe_json_schema",
    "register_phase",
    "tags_of",
]
