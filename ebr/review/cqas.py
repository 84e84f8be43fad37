"""A batch's CQAs (from the recipe content it pinned) and its QC results judged against them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ebr.record.kinds import Kind
from ebr.record.model import Entry
from recipes import Cqa, Range


def recipe_cqas(entries: Iterable[Entry]) -> list[Cqa]:
    """The CQAs declared by the recipe content journaled in a batch's ``batch.created``."""
    for entry in entries:
        if entry.kind == Kind.BATCH_CREATED:
            recipe = entry.data.get("recipe")
            content = recipe.get("content") if isinstance(recipe, dict) else None
            items = content.get("cqas") if isinstance(content, dict) else None
            return [cqa for item in items or [] if (cqa := _cqa(item)) is not None]
    return []


def _cqa(item: Any) -> Cqa | None:
    if not isinstance(item, dict) or not isinstance(item.get("specification"), dict):
        return None
    spec = item["specification"]
    if "expect" in spec:
        return Cqa(
            str(item["name"]),
            item.get("unit"),
            str(item.get("method", "")),
            None,
            str(spec["expect"]),
        )
    return Cqa(
        str(item["name"]),
        item.get("unit"),
        str(item.get("method", "")),
        Range(spec.get("low"), spec.get("high")),
    )


@dataclass(frozen=True)
class QcCheck:
    """One CQA of a batch and the QC result recorded for it (if any)."""

    cqa: Cqa
    result: Mapping[str, Any] | None

    @property
    def status(self) -> str:
        """``pass``, ``missing``, ``out of specification`` or ``failed``."""
        if self.result is None:
            return "missing"
        value = self.result.get("value")
        if value is not None and not self.cqa.meets(value):
            return "out of specification"
        if self.result.get("outcome") != "pass":
            return "failed"
        return "pass"

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "cqa": self.cqa.name,
            "unit": self.cqa.unit,
            "method": self.cqa.method,
            "specification": self.cqa.specification(),
            "value": None if self.result is None else self.result.get("value"),
            "outcome": None if self.result is None else self.result.get("outcome"),
            "status": self.status,
        }


def qc_checks(cqas: Iterable[Cqa], results: Mapping[str, Mapping[str, Any]]) -> list[QcCheck]:
    """Every CQA with its result (by test name = CQA name)."""
    return [QcCheck(cqa, results.get(cqa.name)) for cqa in cqas]
