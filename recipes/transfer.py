"""Tech transfer: a site recipe made from a master recipe, with ranges only ever narrowed.

A site receives a process with its CPPs and CQAs attached and may tighten what it
runs to — formula limits, monitor alert/action bands, NOR and PAR, CQA
specifications — but never widen them: a wider range would be a process the master
never proved. The site's narrowings are written in a small *ranges* file::

    formula:
      temperature: {min: 36.8, max: 37.2}
    monitors:
      temperature: {alert: {low: 36.7, high: 37.3}, nor: {low: 36.8, high: 37.2}}
    cqas:
      viability: {low: 75}

:func:`transfer` checks every bound against the master (a widened or dropped bound is
reported at its line and column in the ranges file), applies them to the master's
YAML (comments kept), stamps the header with the site and the master's content hash,
sets the status to ``draft`` (the site approves its own copy) and validates the result.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from recipes.diagnostics import Diagnostic, DiagnosticSink, Pos, RecipeError
from recipes.fields import as_map, as_number, suggest
from recipes.loader import load_recipe, parse_recipe
from recipes.model import Recipe
from recipes.yamltree import MapNode, parse_yaml

BANDS = ("alert", "action", "nor", "par")
"""Monitor ranges a site may narrow."""


@dataclass(frozen=True, slots=True)
class Narrowing:
    """One bound to set in the site recipe: where in the document, which key, the value."""

    path: tuple[str | int, ...]
    key: str
    value: float


def transfer(master_path: str | Path, site: str, ranges_path: str | Path | None = None) -> str:
    """The site recipe's YAML text. Raises RecipeError (positions in the ranges file)."""
    master = load_recipe(master_path)
    if not site.strip():
        raise RecipeError([Diagnostic(str(master_path), 1, 1, "the site name is empty")])
    changes = _read_ranges(master, ranges_path) if ranges_path is not None else []
    yaml = YAML(typ="rt")
    yaml.width = 100
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    document = yaml.load(Path(master_path).read_text(encoding="utf-8"))
    for change in changes:
        target: Any = document
        for step in change.path:
            target = target[step]
        target[change.key] = change.value
    header = document["recipe"]
    header["status"] = "draft"
    header["site"] = site.strip()
    header["master_sha256"] = master.content_hash
    out = io.StringIO()
    yaml.dump(document, out)
    text = out.getvalue()
    parse_recipe(text, f"site recipe for {site} (not written)")  # raises if the result is invalid
    return text


def _read_ranges(master: Recipe, path: str | Path) -> list[Narrowing]:
    """Every narrowing of the ranges file, each bound checked against the master."""
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RecipeError([Diagnostic(filename, 1, 1, f"cannot read ranges: {reason}")]) from None
    sink = DiagnosticSink(filename)
    root = parse_yaml(text, sink)
    root_map = as_map(root, sink, "ranges file") if root is not None else None
    if root is None and not sink.count:
        sink.error(Pos(1, 1), "ranges file is empty")
    changes: list[Narrowing] = []
    if root_map is not None:
        _Ranges(master, sink, changes).read(root_map)
    if sink.count:
        raise sink.exception()
    return changes


class _Ranges:
    """Reads the ranges file's three sections against the master recipe."""

    def __init__(self, master: Recipe, sink: DiagnosticSink, changes: list[Narrowing]) -> None:
        self.master = master
        self.sink = sink
        self.changes = changes

    def read(self, root: MapNode) -> None:
        sections: dict[str, Callable[[MapNode], None]] = {
            "formula": self._formula,
            "monitors": self._monitors,
            "cqas": self._cqas,
        }
        for key, entry in root.entries.items():
            handler = sections.get(key)
            if handler is None:
                self.sink.error(
                    entry.key_pos,
                    f"unknown section '{key}'{suggest(key, sections)} (allowed: formula, "
                    "monitors, cqas)",
                )
                continue
            mapping = as_map(entry.value, self.sink, f"section '{key}'")
            if mapping is not None:
                handler(mapping)

    def _formula(self, node: MapNode) -> None:
        for name, entry in node.entries.items():
            param = self.master.formula.get(name)
            if param is None:
                self._unknown(entry.key_pos, "parameter", name, self.master.formula)
                continue
            what = f"parameter '{name}'"
            mapping = as_map(entry.value, self.sink, what)
            if mapping is None:
                continue
            got = self._bounds(mapping, what, ("min", "max"), (param.min, param.max))
            for key, value in got.items():
                self.changes.append(Narrowing(("formula", name), key, value))
            low, high = got.get("min", param.min), got.get("max", param.max)
            if (low is not None and param.value < low) or (high is not None and param.value > high):
                self.sink.error(
                    mapping.pos,
                    f"{what}: the narrowed range excludes the master's value {param.value:g}",
                )

    def _monitors(self, node: MapNode) -> None:
        by_name = {m.name: (i, m) for i, m in enumerate(self.master.monitors)}
        for name, entry in node.entries.items():
            found = by_name.get(name)
            if found is None:
                self._unknown(entry.key_pos, "monitor", name, by_name)
                continue
            index, monitor = found
            what = f"monitor '{name}'"
            mapping = as_map(entry.value, self.sink, what)
            if mapping is None:
                continue
            master_bands = {
                "alert": (monitor.alert_low, monitor.alert_high),
                "action": (monitor.action_low, monitor.action_high),
                "nor": (monitor.nor.low, monitor.nor.high) if monitor.nor else None,
                "par": (monitor.par.low, monitor.par.high) if monitor.par else None,
            }
            for band, band_entry in mapping.entries.items():
                if band not in BANDS:
                    self.sink.error(
                        band_entry.key_pos,
                        f"{what}: '{band}' is not a range a site may narrow{suggest(band, BANDS)}"
                        f" (allowed: {', '.join(BANDS)})",
                    )
                    continue
                limits = master_bands[band]
                band_map = as_map(band_entry.value, self.sink, f"{what}: {band}")
                if band_map is None:
                    continue
                if limits is None or limits == (None, None):
                    self.sink.error(
                        band_entry.key_pos,
                        f"{what}: the master declares no {band} range to narrow",
                    )
                    continue
                got = self._bounds(band_map, f"{what}: {band}", ("low", "high"), limits)
                for key, value in got.items():
                    self.changes.append(Narrowing(("monitors", index, band), key, value))

    def _cqas(self, node: MapNode) -> None:
        by_name = {c.name: (i, c) for i, c in enumerate(self.master.cqas)}
        for name, entry in node.entries.items():
            found = by_name.get(name)
            if found is None:
                self._unknown(entry.key_pos, "cqa", name, by_name)
                continue
            index, cqa = found
            what = f"cqa '{name}'"
            mapping = as_map(entry.value, self.sink, what)
            if mapping is None:
                continue
            if cqa.spec is None:
                self.sink.error(entry.key_pos, f"{what}: a text specification cannot be narrowed")
                continue
            got = self._bounds(mapping, what, ("low", "high"), (cqa.spec.low, cqa.spec.high))
            for key, value in got.items():
                self.changes.append(Narrowing(("cqas", index, "specification"), key, value))

    def _bounds(
        self,
        node: MapNode,
        what: str,
        keys: tuple[str, str],
        master: tuple[float | None, float | None],
    ) -> dict[str, float]:
        """The bounds given, each refused where it widens the master's."""
        got: dict[str, float] = {}
        for key, entry in node.entries.items():
            if key not in keys:
                self.sink.error(
                    entry.key_pos,
                    f"unknown field '{key}' in {what}{suggest(key, keys)} "
                    f"(allowed: {', '.join(keys)})",
                )
                continue
            value = as_number(entry.value, self.sink, f"{what}: {key}")
            if value is None:
                continue
            is_low = key == keys[0]
            limit = master[0] if is_low else master[1]
            widens = limit is not None and (value < limit if is_low else value > limit)
            if widens:
                side = "below" if is_low else "above"
                self.sink.error(
                    entry.value.pos,
                    f"{what}: {key} {value:g} is {side} the master's {key} {limit:g} "
                    "(a site recipe may only narrow ranges)",
                )
                continue
            got[key] = value
        low, high = got.get(keys[0], master[0]), got.get(keys[1], master[1])
        if low is not None and high is not None and low > high:
            self.sink.error(node.pos, f"{what}: {keys[0]} {low:g} is above {keys[1]} {high:g}")
        return got

    def _unknown(self, pos: Pos, kind: str, name: str, known: Any) -> None:
        self.sink.error(
            pos,
            f"the master recipe has no {kind} '{name}'{suggest(name, list(known))}",
        )
