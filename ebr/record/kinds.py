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
    ASSET_OVERRIDE = "asset.override"
    """QA let a batch start on units out of calibration or unqualified (R8): what was
    bypassed, the reason, who; followed by QA's signature."""
    STEP_FORCED = "step.forced"
    """A supervisor force-completed a running phase (R7 override); reason, who."""
    STEP_SKIPPED = "step.skipped"
    """A supervisor skipped a phase still to come (R7 override); reason, who."""
    STEP_REPEATED = "step.repeated"
    """A supervisor repeats a held phase from its start with the same parameters (R7
    override; the intent): reason, who, the progress discarded; followed by the
    supervisor's signature on a GMP plant, then the phase's entries again on restart."""
    STEP_REPEAT_ENDED = "step.repeat_ended"
    """How a repeated phase ended (the result of `step.repeated`, by its seq): complete,
    failed (with the error), forced, or stopped."""
    COMMAND_OVERRIDE = "command.override"
    """A supervisor's privileged override (R7): the command, the rule it bypassed and
    what blocked it; followed by the supervisor's signature on a GMP plant."""
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
    """A unit came back restarted: how that was told (``reason``: its OPC UA server start
    time changed, or a setpoint read back differs from the last written), the setpoints
    that differ, and the unit's ``on_restart`` policy (re-assert them, or hold)."""
    # -- people at the batch -------------------------------------------------------
    PROMPT_OPENED = "prompt.opened"
    PROMPT_ANSWERED = "prompt.answered"
    PROMPT_WITHDRAWN = "prompt.withdrawn"
    ENTRY_CORRECTED = "entry.corrected"
    """A typed entry corrected (R4): which answer, old and new values, reason, who;
    followed by the corrector's (and, where required, a verifier's) signature."""
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
    # -- deviations and CAPA (the `@deviations` chain) -------------------------------
    DEVIATION_OPENED = "deviation.opened"
    """A deviation opened by hand or automatically from a batch's exception."""
    DEVIATION_UPDATED = "deviation.updated"
    """Changed fields of a deviation (classification, impact, root cause, links…)."""
    CAPA_ADDED = "capa.added"
    """A corrective or preventive action: owner, due date."""
    CAPA_STATUS = "capa.status"
    """A CAPA action's new status: open, closed, carried over."""
    DEVIATION_CLOSED = "deviation.closed"
    """QA closed the deviation (after its `signature`), every CAPA closed or carried over."""
    # -- lots: one patient's product across batches (the `@lots` chain) -------------
    LOT_HANDOVER = "lot.handover"
    """Material handed from one batch to the next: volume, cells, containers, who, when."""
    LOT_DECISION = "lot.decision"
    """The QP's lot disposition over the package hash (after its `signature`)."""
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
    USER_ALERT = "user.alert"
    """Repeated failed logins or signatures for one username within the alert window."""
    CLIENT_ALERT = "client.alert"
    """Repeated failed network sign-ins from one client address (across accounts): its
    attempts are now throttled."""
    BIND_REFUSED = "bind.refused"
    """A batch start refused at bind for its units' asset status or identity (R8): the
    would-be batch id, recipe, each unit's expected and reported serial, the message."""
    USER_REFUSED = "user.refused"
    """A user-administration request refused by a separation-of-duties rule (named)."""
    # -- the site chain: signing keys and the batch index (issue 16) --------------
    KEY_TRUSTED = "key.trusted"
    """A checkpoint signing key is trusted from here on (public key, endorsement)."""
    KEY_RETIRED = "key.retired"
    """A signing key signs nothing recorded after this entry's time."""
    BATCH_REGISTERED = "batch.registered"
    """A batch was created (its id and first entry hash): the site's batch index."""
    BATCH_SEALED = "batch.sealed"
    """A batch's signed head after it ended (or after QA appended to it)."""


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
    Kind.COMMAND_OVERRIDE: frozenset({_T, "element", "command", "user", "reason", "rule"}),
    Kind.STEP_REPEATED: frozenset({_T, "element", "user", "reason", "discarded"}),
    Kind.STEP_REPEAT_ENDED: frozenset({_T, "element", "repeat", "outcome"}),
    Kind.CONDITION_MET: frozenset({_T, "condition", "element", "elapsed_s", "values"}),
    Kind.IDENTITY_CONFIRMED: frozenset({_T, "element", "scanned"}),
    Kind.METHOD_INTENT: frozenset({_T, "element", "unit", "method", "args"}),
    Kind.METHOD_RESULT: frozenset({_T, "element", "intent", "method", "ok", "result"}),
    Kind.WRITE_INTENT: frozenset({_T, "element", "unit", "capability", "old", "new", "eu"}),
    Kind.WRITE_RESULT: frozenset({_T, "element", "intent", "capability", "ok", "readback"}),
    Kind.MONITORS_ACTIVE: frozenset({_T, "element", "monitors", "since"}),
    Kind.PHASE_PROGRESS: frozenset({_T, "element", "progress"}),
    Kind.PROMPT_OPENED: frozenset({_T, "element", "prompt", "prompt_kind", "text", "entries"}),
    Kind.ENTRY_CORRECTED: frozenset({"corrects", "old", "new", "reason", "user", "user_id"}),
    Kind.PROMPT_ANSWERED: frozenset({_T, "element", "prompt", "user", "values"}),
    Kind.ALARM_RAISED: frozenset({_T}),
    Kind.ALARM_CLEARED: frozenset({_T}),
    Kind.USER_REFUSED: frozenset({"user_id", "by", "action", "rule", "message"}),
    Kind.INSTRUMENT_LOST: frozenset({_T, "unit", "since", "last_good"}),
    Kind.INSTRUMENT_RESTORED: frozenset({_T, "unit", "since", "down_process_s"}),
    Kind.INSTRUMENT_RESTARTED: frozenset({_T, "unit", "differs", "policy", "reason"}),
    Kind.CONFIG_CHANGED: frozenset({_T, "file", "was_sha256", "sha256", "diff"}),
    Kind.SAMPLES_BLOCK: frozenset({"block_no", "count", "first", "last", "sha256", "tags"}),
    Kind.DEVIATION_OPENED: frozenset(
        {"deviation_id", "classification", "title", "description", "links", "source", "user"}
    ),
    Kind.DEVIATION_UPDATED: frozenset({"deviation_id", "changes", "reason", "user"}),
    Kind.CAPA_ADDED: frozenset({"deviation_id", "capa_id", "action", "owner", "due", "user"}),
    Kind.CAPA_STATUS: frozenset({"deviation_id", "capa_id", "status", "comment", "user"}),
    Kind.DEVIATION_CLOSED: frozenset({"deviation_id", "comment", "signature_id"}),
    Kind.LOT_HANDOVER: frozenset(
        {"coi", "from_batch", "to_batch", "volume_ml", "viable_cells", "containers", "user"}
    ),
    Kind.LOT_DECISION: frozenset({"coi", "decision", "package_sha256", "signature_id"}),
    Kind.KEY_TRUSTED: frozenset(
        {"key_id", "algorithm", "public_key", "endorsed_by", "endorsement"}
    ),
    Kind.KEY_RETIRED: frozenset({"key_id"}),
    Kind.BATCH_REGISTERED: frozenset({"batch_id", "first_hash"}),
    Kind.BATCH_SEALED: frozenset({"batch_id", "head_seq", "head_hash"}),
}
"""Payload fields every entry of a kind carries (a subset check; entries may add more)."""
