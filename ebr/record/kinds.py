"""The record's vocabulary: every journal entry kind, and the payload fields it carries.

This is the one place an entry kind is spelled. Writers (the controller's phases,
batch, alarms, prompts and sessions; the people and review rooms) and readers (resume,
review, exports) use these members; ``tests/test_rooms.py`` fails on a kind spelled as a
bare string anywhere else in product code. ``Kind`` is a ``StrEnum``: a member *is* its
string, so stored records, hashes and exports are byte-for-byte what they were.

``FIELDS`` names the payload fields every entry of a kind carries (entries may carry
more); the engine's ``t`` (process seconds) is listed where the engine writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Kind(StrEnum):
    """A journal entry kind: ``<subject>.<event>``."""

    # -- a batch and its procedural elements --------------------------------------
    BATCH_CREATED = "batch.created"
    """First entry of a batch chain: header, recipe, parameters, equipment, plant."""
    BATCH_STATE = "batch.state"
    ELEMENT_STATE = "element.state"
    BATCH_INTERRUPTED = "batch.interrupted"
    """The process running the batch ended without it finishing (crash, kill)."""
    BATCH_RESTORED = "batch.restored"
    """A process took the batch over again from its journal (recovery)."""
    COMMAND_ACCEPTED = "command.accepted"
    COMMAND_REFUSED = "command.refused"
    PHASE_PROGRESS = "phase.progress"
    PHASE_FAILED = "phase.failed"
    HOLDING_FAILED = "holding.failed"
    RESTARTING_FAILED = "restarting.failed"
    STOPPING_FAILED = "stopping.failed"
    CONDITION_MET = "condition.met"
    CONDITION_TIMEOUT = "condition.timeout"
    MONITORS_ACTIVE = "monitors.active"
    TRANSFER_RESULT = "transfer.result"
    PROGRAM_COMPLETE = "program.complete"
    """An instrument program ended; the instrument's readable values at its end."""
    # -- acting on instruments (write-ahead: intent before, result after) -----------
    WRITE_INTENT = "write.intent"
    WRITE_RESULT = "write.result"
    METHOD_INTENT = "method.intent"
    METHOD_RESULT = "method.result"
    INSTRUMENT_LOST = "instrument.lost"
    """A unit's link went down: since when, the last good value of each recorded tag."""
    INSTRUMENT_RESTORED = "instrument.restored"
    """A unit's link came back: since when it was down, for how long (process s)."""
    CONFIG_CHANGED = "config.changed"
    """A batch resumed with a plant file or bound profile whose content differs from the
    one it started with: which file, both SHA-256, the new content and the difference."""
    INSTRUMENT_RESTARTED = "instrument.restarted"
    """A unit came back without the setpoints last written (it restarted): what differs,
    and the unit's ``on_restart`` policy (re-assert them, or hold the batch)."""
    # -- people at the batch -------------------------------------------------------
    PROMPT_OPENED = "prompt.opened"
    PROMPT_ANSWERED = "prompt.answered"
    PROMPT_WITHDRAWN = "prompt.withdrawn"
    IDENTITY_CONFIRMED = "identity.confirmed"
    IDENTITY_MISMATCH = "identity.mismatch"
    # -- alarms --------------------------------------------------------------------
    ALARM_RAISED = "alarm.raised"
    ALARM_CLEARED = "alarm.cleared"
    ALARM_ACKNOWLEDGED = "alarm.acknowledged"
    # -- process data and time -----------------------------------------------------
    SAMPLES_BLOCK = "samples.block"
    """A block of process samples: count, first/last time, tags and their SHA-256."""
    SAMPLES_INCOMPLETE = "samples.incomplete"
    CLOCK_STEPPED_BACK = "clock.stepped_back"
    # -- signatures, review and release --------------------------------------------
    SIGNATURE = "signature"
    SIGNATURE_FAILED = "signature.failed"
    REVIEW_DISPOSITION = "review.disposition"
    QC_RESULT = "qc.result"
    BATCH_DECISION = "batch.decision"
    # -- the site chain: recipes and people ----------------------------------------
    RECIPE_APPROVED = "recipe.approved"
    RECIPE_RETIRED = "recipe.retired"
    USER_CREATED = "user.created"
    USER_LOGIN = "user.login"
    USER_AUTH_FAILED = "user.auth_failed"
    USER_LOCKED = "user.locked"
    USER_UNLOCKED = "user.unlocked"
    USER_DISABLED = "user.disabled"
    USER_ROLES_CHANGED = "user.roles_changed"
    USER_PASSWORD_SET = "user.password_set"


def failed_kind(state: str) -> Kind:
    """The kind recording that the logic of an acting state failed (``holding`` …)."""
    return Kind(f"{state}.failed")


def intent_kind(action: str) -> Kind:
    """The write-ahead intent kind of an action (``write`` or ``method``)."""
    return Kind(f"{action}.intent")


def result_kind(action: str) -> Kind:
    """The write-ahead result kind of an action (``write`` or ``method``)."""
    return Kind(f"{action}.result")


_T = "t"
_STATE = frozenset({_T, "element", "from", "to", "level", "trigger"})

FIELDS: Mapping[Kind, frozenset[str]] = {
    Kind.BATCH_CREATED: frozenset(
        {"header", "recipe", "parameters", "equipment", "plant", "simulation", "software"}
    ),
    Kind.BATCH_STATE: _STATE,
    Kind.ELEMENT_STATE: _STATE,
    Kind.COMMAND_ACCEPTED: frozenset({_T, "command", "element", "scope", "state", "user"}),
    Kind.CONDITION_MET: frozenset({_T, "condition", "element", "elapsed_s", "values"}),
    Kind.IDENTITY_CONFIRMED: frozenset({_T, "element", "scanned"}),
    Kind.METHOD_INTENT: frozenset({_T, "element", "unit", "method", "args"}),
    Kind.METHOD_RESULT: frozenset({_T, "element", "intent", "method", "ok", "result"}),
    Kind.WRITE_INTENT: frozenset({_T, "element", "unit", "capability", "old", "new", "eu"}),
    Kind.WRITE_RESULT: frozenset({_T, "element", "intent", "capability", "ok", "readback"}),
    Kind.MONITORS_ACTIVE: frozenset({_T, "element", "monitors", "since"}),
    Kind.PHASE_PROGRESS: frozenset({_T, "element", "progress"}),
    Kind.PROMPT_OPENED: frozenset({_T, "element", "prompt", "prompt_kind", "text", "entries"}),
    Kind.PROMPT_ANSWERED: frozenset({_T, "element", "prompt", "user", "values"}),
    Kind.ALARM_RAISED: frozenset({_T}),
    Kind.ALARM_CLEARED: frozenset({_T}),
    Kind.INSTRUMENT_LOST: frozenset({_T, "unit", "since", "last_good"}),
    Kind.INSTRUMENT_RESTORED: frozenset({_T, "unit", "since", "down_process_s"}),
    Kind.INSTRUMENT_RESTARTED: frozenset({_T, "unit", "differs", "policy"}),
    Kind.CONFIG_CHANGED: frozenset({_T, "file", "was_sha256", "sha256", "diff"}),
    Kind.SAMPLES_BLOCK: frozenset({"block_no", "count", "first", "last", "sha256", "tags"}),
}
"""Payload fields every entry of a kind carries (a subset check; entries may add more)."""
