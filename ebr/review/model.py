"""What review by exception returns: exceptions with their evidence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SampleWindow:
    """The samples behind an excursion or a bad-quality run.

    `start`/`end` are the times of the first and last sample in the window; `returned`
    the first sample back to normal after it (None: not within the record);
    `duration_s` runs from `start` to `returned` (else to `end`).
    """

    tag: str
    start: str
    end: str
    returned: str | None
    duration_s: float
    samples: int
    unit: str
    peak: float | None = None
    limit: float | None = None
    limit_name: str | None = None  # e.g. "alert high"

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "tag": self.tag,
            "start": self.start,
            "end": self.end,
            "returned": self.returned,
            "duration_s": self.duration_s,
            "samples": self.samples,
            "unit": self.unit,
            "peak": self.peak,
            "limit": self.limit,
            "limit_name": self.limit_name,
        }


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where the record shows an exception: journal seqs (first is the anchor of the
    exception ID), a sample window, and the facts the title and detail were made from."""

    seqs: tuple[int, ...]
    window: SampleWindow | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "seqs": list(self.seqs),
            "window": None if self.window is None else self.window.to_dict(),
            "facts": dict(self.facts),
        }


@dataclass(frozen=True, slots=True)
class ReviewException:
    """One item QA must disposition before release.

    `id` is `<rule>-<seq>` (seq = the first evidence entry), plus `.<key>` where one
    entry yields several exceptions of a rule (a parameter name, a sample's row in its
    block). It depends only on entries recorded at or before that seq, so appending
    dispositions, signatures or anything else never changes it.
    """

    id: str
    rule: str
    category: str
    severity: str
    title: str
    detail: str
    evidence: Evidence
    time: str | None = None
    element: str | None = None

    def line(self) -> str:
        """One line for a list: ID, severity, category and title."""
        return f"{self.id:<24} {self.severity:<8} {self.category}: {self.title}"

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "id": self.id,
            "rule": self.rule,
            "category": self.category,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "time": self.time,
            "element": self.element,
            "evidence": self.evidence.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule found, before the review names it (id, category)."""

    anchor: int
    title: str
    detail: str
    evidence: Evidence
    severity: str
    key: str | None = None
    time: str | None = None
    element: str | None = None
