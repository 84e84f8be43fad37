"""Synthetic linked batches of one patient (expansion → wash → cryo) for lot tests,
written through the public journal API (tests/ebr/review_batches.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ebr import Store
from tests.ebr.review_batches import COI, CONTENT, Script, clean, finish, write

STEPS = ("expansion", "wash", "cryo")
CQAS: dict[str, list[dict[str, Any]]] = {
    "expansion": [
        {"name": "viability", "unit": "%", "method": "NC-200", "specification": {"low": 70}}
    ],
    "wash": [{"name": "recovery", "unit": "%", "method": "counts", "specification": {"low": 85}}],
    "cryo": [
        {
            "name": "post_thaw_viability",
            "unit": "%",
            "method": "NC-200",
            "specification": {"low": 70},
        },
        {"name": "sterility", "method": "BacT/ALERT", "specification": {"expect": "negative"}},
    ],
}
"""CQAs each step's recipe declares (as `cqas:` in the recipe content)."""


@dataclass
class LotScript(Script):
    """A batch script whose recipe content declares CQAs and whose plant names a site."""

    cqas: list[dict[str, Any]] = field(default_factory=list)
    site: str = "hub-a"

    def created(self) -> dict[str, Any]:
        """batch.created with `cqas` in the recipe content and the plant's site."""
        data = super().created()
        data["recipe"]["content"] = {**CONTENT, "cqas": self.cqas}
        data["plant"] = {"name": "demo", "site": self.site, "mode": "gmp"}
        return data


def lot_script(batch_id: str, step: str) -> LotScript:
    """A clean, completed batch of one lot step."""
    base = clean(batch_id)
    script = LotScript(batch_id, cqas=CQAS[step])
    script.ops, script.minute, script.sampled = base.ops, base.minute, base.sampled
    finish(script)
    return script


async def write_lot(store: Store, prefix: str = "L") -> list[str]:
    """Three ended batches of the lot `COI`; their IDs in order."""
    ids = []
    for step in STEPS:
        batch_id = f"{prefix}-{step}"
        await write(store, lot_script(batch_id, step))
        ids.append(batch_id)
    return ids


__all__ = ["COI", "STEPS", "write_lot"]
