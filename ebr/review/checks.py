"""The registry of review rules that read only the journal (excursions and bad-quality
runs also need the samples: `review_process.excursions`, `bad_quality`)."""

from __future__ import annotations

from collections.abc import Callable

from ebr.review.depth import acceptance, hold_times
from ebr.review.model import Finding
from ebr.review.people import (
    comments,
    corrections,
    identity,
    manual_entries,
    overrides,
    parameters,
    qc_results,
    refused_commands,
    signatures,
    simulation,
)
from ebr.review.process import (
    alarms,
    comm_losses,
    interruptions,
    process_faults,
    step_durations,
)
from ebr.review.rules import RuleConfig
from ebr.review.view import BatchView

JournalRule = Callable[[BatchView, RuleConfig], list[Finding]]

JOURNAL_RULES: dict[str, JournalRule] = {
    "alarm": alarms,
    "interruption": interruptions,
    "parameter": parameters,
    "override": overrides,
    "manual_entry": manual_entries,
    "comm_loss": comm_losses,
    "step_duration": step_durations,
    "signature": signatures,
    "identity": identity,
    "comment": comments,
    "simulation": simulation,
    "process_fault": process_faults,
    "refused_command": refused_commands,
    "qc_result": qc_results,
    "correction": corrections,
    "acceptance": acceptance,
    "hold_time": hold_times,
}
"""The rules that read only the journal (excursion and bad-quality runs need samples)."""
