"""Separation of duties (R6, R15): who may do what, as named rules checked in the store layer.

Every entry point (CLI, the controller's OPC UA methods, the HMI through them) reaches
these checks, because they sit where accounts are changed (`users.Directory`), where
signatures are made (`signatures.check_may_sign`) and where commands are authorised
(`check_may_act`). A refusal is a `DutyRefused` whose message starts with the rule's
name, e.g. ``refused by SOD-ADMIN-NEVER-SIGNS: …``; the caller journals it.

Roles: operator, supervisor (runs batches; supervisor also overrides), qa (reviews,
approves recipes), qc (enters QC results), qp (releases), admin (administers accounts,
nothing else).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ebr.record.errors import EbrError

ROLES = ("operator", "supervisor", "qa", "qc", "qp", "admin")
ADMIN = "admin"

RULES: Mapping[str, str] = {
    "SOD-SELF": "no account changes its own roles or password policy",
    "SOD-ADMIN-NEVER-SIGNS": "an admin account never holds a signing role and never signs",
    "SOD-ROLE": "the action needs one of the roles listed for it",
    "SOD-REVIEWER-RELEASES": "the person who reviewed a batch cannot release it",
    "SOD-QC-ONLY": "only the qc role enters QC results",
    "SIM-NOT-PRODUCT": "a simulation record is never released for use",
    "REASON-REQUIRED": "hold, stop, abort and restart need a non-empty reason",
    "PERMISSIVE-ALARM": "restart is refused while an action alarm is active or unacknowledged",
    "OVERRIDE": "only a running phase is force-completed, only a phase to come is skipped, "
    "only a held phase is repeated",
    "REPEAT-NOT-IDEMPOTENT": "a phase whose type is not idempotent (a method call, a transfer, "
    "an instrument program) is repeated only where the recipe declares it repeatable",
    "PERMISSIVE-UNIT-ALARM": "start is refused while a bound unit reports an alarm",
    "QC-OOS": "an out-of-specification QC result blocks release",
    "ASSET-STATUS": "a unit out of calibration or unqualified starts nothing without a QA override",
    "ASSET-SERIAL": "an instrument reporting another serial number than the plant file's "
    "asset starts nothing without a QA override",
    "RECORD-INVALID": "a record that fails verification is never reviewed, signed or released",
}
"""Every rule a refusal can name, with what it says (also listed in ebr/README.md)."""

ACTION_ROLES: Mapping[str, frozenset[str]] = {
    "operate": frozenset({"operator", "supervisor"}),
    "verify": frozenset({"operator", "supervisor", "qa"}),
    "override": frozenset({"supervisor"}),
    "qc_result": frozenset({"qc"}),
    "asset_override": frozenset({"qa"}),
}
"""Roles allowed per controller action: `operate` covers start, hold, restart, pause,
resume, stop, abort, acknowledge and answering prompts; `verify` a second person's
verification of a manual entry (R14); `override` the privileged
overrides (R7); `qc_result` entering a QC result; `asset_override` starting on a
unit out of calibration or unqualified (R8)."""

COMMAND_ACTIONS: Mapping[str, str] = {
    "override": "override",
    **{
        name: "operate"
        for name in (
            "sign in",
            "start",
            "hold",
            "restart",
            "pause",
            "resume",
            "stop",
            "abort",
            "acknowledge",
            "answer",
        )
    },
}
"""Controller commands and the action whose roles they need."""


class DutyRefused(EbrError):
    """A request broke a separation-of-duties rule; `rule` names it."""

    def __init__(self, rule: str, detail: str) -> None:
        """`rule` is a key of RULES; `detail` says who and what."""
        self.rule = rule
        self.detail = detail
        super().__init__(f"refused by {rule} ({RULES[rule]}): {detail}")


def check_may_act(username: str, roles: Iterable[str], action: str) -> None:
    """Raise DutyRefused unless an account with `roles` may do `action`.

    `action` is a key of ACTION_ROLES or COMMAND_ACTIONS.
    """
    held = frozenset(roles)
    if ADMIN in held:
        raise DutyRefused("SOD-ADMIN-NEVER-SIGNS", f"{username} is an admin account ({action})")
    needed = ACTION_ROLES[COMMAND_ACTIONS.get(action, action)]
    if not held & needed:
        raise DutyRefused(
            "SOD-ROLE",
            f"{username} ({', '.join(sorted(held))}) cannot {action}; "
            f"that needs one of: {', '.join(sorted(needed))}",
        )


def require_reason(command: str, reason: str | None) -> str:
    """Return the stripped reason, or raise DutyRefused naming REASON-REQUIRED."""
    text = (reason or "").strip()
    if not text:
        raise DutyRefused("REASON-REQUIRED", f"{command} needs a reason")
    return text
