"""Entry points: load a master recipe file, validate it completely, and pin its content hash."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import rfc8785

from recipes.cqas import read_cqas
from recipes.diagnostics import FILE_START, Diagnostic, DiagnosticSink, RecipeError
from recipes.fields import FieldReader, describe
from recipes.holdtimes import read_hold_times
from recipes.model import Recipe
from recipes.monitors import active_from_positions, check_active_from, read_monitors
from recipes.procedure import read_procedure
from recipes.sections import read_equipment, read_formula, read_header
from recipes.symbols import Symbols
from recipes.yamltree import BadNode, MapNode, parse_yaml, to_plain

SECTIONS_REQUIRED = ("recipe", "equipment", "procedure")
SECTIONS_OPTIONAL = ("formula", "monitors", "cqas", "hold_times")


MAX_RECIPE_CHARS = 1_000_000
"""The largest recipe file read (a real one is a few kB)."""


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate the recipe file at ``path``. Raises :class:`RecipeError`."""
    filename = str(path)
    try:
        with Path(path).open("rb") as handle:  # bounded: a huge file is not read whole
            data = handle.read(4 * MAX_RECIPE_CHARS + 1)
        if len(data) > 4 * MAX_RECIPE_CHARS:
            raise RecipeError(
                [
                    Diagnostic(
                        filename, 1, 1, f"recipe file is larger than {4 * MAX_RECIPE_CHARS} bytes"
                    )
                ]
            )
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RecipeError([Diagnostic(filename, 1, 1, f"cannot read recipe: {reason}")]) from None
    return parse_recipe(text, filename)


def parse_recipe(text: str, filename: str) -> Recipe:
    """Validate recipe ``text``; ``filename`` names it in diagnostics. Raises RecipeError."""
    sink = DiagnosticSink(filename)
    if len(text) > MAX_RECIPE_CHARS:
        sink.error(FILE_START, f"recipe file is larger than {MAX_RECIPE_CHARS} characters")
        raise sink.exception()
    root = parse_yaml(text, sink)
    if root is None and not sink.count:
        sink.error(FILE_START, "recipe file is empty")
    elif root is not None and not isinstance(root, MapNode | BadNode):
        sink.error(FILE_START, f"a recipe must be a mapping at the top level, got {describe(root)}")
    if not isinstance(root, MapNode):
        raise sink.exception()

    symbols = Symbols()
    top = FieldReader(root, sink, "recipe file", SECTIONS_REQUIRED, SECTIONS_OPTIONAL)
    header_node = top.mapping("recipe")
    header = read_header(header_node, sink) if header_node else None
    formula_node = top.mapping("formula")
    formula = read_formula(formula_node, symbols, sink) if formula_node else {}
    symbols.parameters_known = formula_node is not None or not top.has("formula")
    equipment_node = top.mapping("equipment")
    symbols.units_known = equipment_node is not None
    equipment = read_equipment(equipment_node, symbols, sink) if equipment_node else {}
    monitors_node = top.sequence("monitors")
    monitors = read_monitors(monitors_node, symbols, sink) if monitors_node else []
    cqas_node = top.sequence("cqas")
    cqas = read_cqas(cqas_node, sink) if cqas_node else []
    procedure_node = top.mapping("procedure")
    procedure = read_procedure(procedure_node, symbols, sink) if procedure_node else None
    hold_node = top.sequence("hold_times")
    hold_times = read_hold_times(hold_node, procedure, sink) if hold_node else []
    if monitors_node and procedure is not None:
        check_active_from(monitors, active_from_positions(monitors_node), procedure, sink)
    if sink.count:
        raise sink.exception()
    if header is None or procedure is None:  # unreachable: every None is reported first
        raise RecipeError([Diagnostic(filename, 1, 1, "internal error: incomplete recipe")])

    document = to_plain(root)
    return Recipe(
        header=header,
        formula=formula,
        equipment=equipment,
        monitors=monitors,
        procedure=procedure,
        content_hash=content_hash(document),
        source=filename,
        _document=document,
        cqas=cqas,
        hold_times=hold_times,
    )


def content_hash(document: Any) -> str:
    """SHA-256 hex of the RFC 8785 canonical JSON of a plain document."""
    return hashlib.sha256(rfc8785.dumps(document)).hexdigest()
