"""Operator prompts: the one interface through which people answer a running batch.

A phase asks; the question is journaled (``prompt.opened``) and waits on the
prompt board. Whoever answers — the terminal, an answers file, the HMI later, or
the simulated operator on a simulation plant — goes through ``PromptBoard.answer``,
which validates every entry, enforces a second person for verification and
journals the answer (``prompt.answered``) before the phase sees it.

Signed answers (GMP plants require them): whoever answers passes the authenticated
accounts (``SignedBy``); the board then journals a Part 11 signature right after the
answer — "performed" by the person who answered and, for verified prompts, "verified"
by the second person — each bound to the answer entry's content, so an edit of the
answer invalidates both. Roles are checked (admins never sign) and the two accounts
must differ, not just their names.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from controller.recorder import BatchRecorder
from ebr.people.duties import DutyRefused, check_may_act
from ebr.people.signatures import (
    SIGNATURE,
    SignatureError,
    check_may_sign,
    entry_content,
    signature_data,
)
from ebr.people.users import User
from ebr.record.kinds import Kind
from recipes import EntrySpec

SIMULATED_OPERATOR = "simulated-operator"
SIMULATED_VERIFIER = "simulated-verifier"
SCAN = "scan"


class PromptError(Exception):
    """An answer was refused (invalid value, same person verifying, unknown prompt)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a person (or the simulated operator) answered."""

    values: dict[str, float | str]
    user: str
    verifier: str | None = None
    simulated: bool = False
    comment: str | None = None


@dataclass
class Prompt:
    """An open question to the operator."""

    id: str
    batch_id: str
    element: str
    kind: str  # operator_prompt | manual_sample | identity_check
    text: str
    entries: dict[str, EntrySpec]
    verify: bool
    expected: str | None  # identity checks: the ID the scan must match
    recorder: BatchRecorder
    future: asyncio.Future[Answer] = field(repr=False)

    def example_answer(self) -> dict[str, float | str]:
        """The recipe's declared example answers (identity checks: the expected ID)."""
        values: dict[str, float | str] = {}
        for name, spec in self.entries.items():
            if name == SCAN and self.expected is not None:
                values[name] = self.expected
            elif spec.example is not None:
                values[name] = spec.example
        return values


@dataclass(frozen=True, slots=True)
class SignedBy:
    """The authenticated accounts behind an answer: who performed it and who verified."""

    user: User
    verifier: User | None = None


Answerer = Callable[[Prompt], Awaitable[None]]
"""Called when a prompt opens; may answer it through the board (or leave it open)."""


class PromptBoard:
    """The open prompts of every batch in this controller."""

    def __init__(
        self, answerer: Answerer | None = None, *, require_signatures: bool = False
    ) -> None:
        """`require_signatures`: refuse answers not signed by authenticated people (GMP)."""
        self.answerer = answerer
        self.require_signatures = require_signatures
        self.open: dict[str, Prompt] = {}
        self._ids = itertools.count(1)
        # Prompt IDs must stay unique in a batch's record across controller restarts.
        self._session = secrets.token_hex(3)
        self.changed = asyncio.Event()

    async def ask(
        self,
        recorder: BatchRecorder,
        *,
        element: str,
        kind: str,
        text: str,
        entries: dict[str, EntrySpec],
        verify: bool,
        expected: str | None = None,
    ) -> Answer:
        """Open a prompt, wait for its answer (journaled already), close it."""
        prompt = Prompt(
            id=f"{recorder.batch_id}#{self._session}.{next(self._ids)}",
            batch_id=recorder.batch_id,
            element=element,
            kind=kind,
            text=text,
            entries=entries,
            verify=verify,
            expected=expected,
            recorder=recorder,
            future=asyncio.get_running_loop().create_future(),
        )
        await recorder.record(
            Kind.PROMPT_OPENED,
            prompt=prompt.id,
            element=element,
            prompt_kind=kind,
            text=text,
            entries={n: _describe(s) for n, s in entries.items()},
            verify=verify,
        )
        self.open[prompt.id] = prompt
        self.changed.set()
        try:
            if self.answerer is not None:
                await self.answerer(prompt)
            return await prompt.future
        except asyncio.CancelledError:
            # Awaiting the future cancelled it too; an answer that made it is kept.
            if prompt.future.cancelled() or not prompt.future.done():
                prompt.future.cancel()
                await recorder.record(Kind.PROMPT_WITHDRAWN, prompt=prompt.id, element=element)
            raise
        finally:
            self.open.pop(prompt.id, None)
            self.changed.set()

    async def answer(
        self,
        prompt_id: str,
        values: dict[str, Any],
        *,
        user: str,
        verifier: str | None = None,
        simulated: bool = False,
        comment: str | None = None,
        signed_by: SignedBy | None = None,
    ) -> Answer:
        """Validate and journal an answer (and its signatures), then hand it to the phase."""
        prompt = self.open.get(prompt_id)
        if prompt is None or prompt.future.done():
            raise PromptError(f"prompt {prompt_id} is not open")
        unknown = sorted(set(values) - set(prompt.entries))
        missing = sorted(set(prompt.entries) - set(values))
        if unknown or missing:
            raise PromptError(
                f"prompt {prompt_id}: "
                + "; ".join(
                    part
                    for part in (
                        f"unknown entries {', '.join(unknown)}" if unknown else "",
                        f"missing entries {', '.join(missing)}" if missing else "",
                    )
                    if part
                )
            )
        try:
            checked = {name: prompt.entries[name].check(v) for name, v in values.items()}
        except ValueError as exc:
            raise PromptError(f"prompt {prompt_id}: {exc}") from None
        if prompt.verify:
            if not verifier:
                raise PromptError(f"prompt {prompt_id} needs a second person to verify")
            if verifier == user:
                raise PromptError(
                    f"prompt {prompt_id}: the verifier must be a different person than {user}"
                )
        self._check_signers(prompt, user, verifier, simulated, signed_by)
        answer = Answer(checked, user, verifier if prompt.verify else None, simulated, comment)
        entry = await prompt.recorder.record(
            Kind.PROMPT_ANSWERED,
            prompt=prompt.id,
            element=prompt.element,
            values=checked,
            user=user,
            verifier=answer.verifier,
            simulated=simulated,
            comment=comment,
        )
        if signed_by is not None:
            signers = [(signed_by.user, "performed")]
            if prompt.verify and signed_by.verifier is not None:
                signers.append((signed_by.verifier, "verified"))
            subject = {"type": "entry", "seq": entry.seq}
            for account, meaning in signers:
                data = signature_data(account, meaning, subject, entry_content(entry), comment)
                await prompt.recorder.record(SIGNATURE, **data)
        if not prompt.future.done():
            prompt.future.set_result(answer)
        return answer

    def _check_signers(
        self,
        prompt: Prompt,
        user: str,
        verifier: str | None,
        simulated: bool,
        signed_by: SignedBy | None,
    ) -> None:
        """Refuse answers whose signers are missing, mismatched or not allowed to sign."""
        if signed_by is None:
            if self.require_signatures and not simulated:
                raise PromptError(
                    f"prompt {prompt.id}: answers on a GMP plant must be signed by "
                    "authenticated people"
                )
            return
        if signed_by.user.username != user:
            raise PromptError(
                f"prompt {prompt.id}: signed by {signed_by.user.username}, not {user}"
            )
        try:
            check_may_sign(signed_by.user, "performed")
            check_may_act(signed_by.user.username, signed_by.user.roles, "answer")
            if prompt.verify:
                if signed_by.verifier is None or signed_by.verifier.username != verifier:
                    raise PromptError(f"prompt {prompt.id}: the verifier did not sign")
                if signed_by.verifier.user_id == signed_by.user.user_id:
                    raise PromptError(f"prompt {prompt.id}: the verifier must be another person")
                check_may_sign(signed_by.verifier, "verified")
                check_may_act(signed_by.verifier.username, signed_by.verifier.roles, "verify")
        except (SignatureError, DutyRefused) as exc:
            raise PromptError(f"prompt {prompt.id}: {exc}") from None


def _describe(spec: EntrySpec) -> dict[str, Any]:
    return {
        "type": spec.kind,
        "unit": spec.unit,
        "min": spec.min,
        "max": spec.max,
        "choices": list(spec.choices),
    }


def simulated_operator(board: PromptBoard) -> Answerer:
    """Answers every prompt with the recipe's declared example, as a simulated operator."""

    async def answer(prompt: Prompt) -> None:
        await board.answer(
            prompt.id,
            prompt.example_answer(),
            user=SIMULATED_OPERATOR,
            verifier=SIMULATED_VERIFIER if prompt.verify else None,
            simulated=True,
        )

    return answer


def answers_from(board: PromptBoard, answers: dict[str, dict[str, Any]], source: str) -> Answerer:
    """Answers prompts from a mapping keyed by phase path (or phase name).

    Each value holds the entry values plus ``user`` and, for verified prompts,
    ``verifier``; an optional ``comment``.
    """

    async def answer(prompt: Prompt) -> None:
        given = answers.get(prompt.element) or answers.get(prompt.element.rsplit("/", 1)[-1])
        if given is None:
            raise PromptError(f"{source} has no answer for {prompt.element}")
        values = {k: v for k, v in given.items() if k not in ("user", "verifier", "comment")}
        user = str(given.get("user", "")).strip()
        if not user:
            raise PromptError(f"{source}: the answer for {prompt.element} names no user")
        await board.answer(
            prompt.id,
            values,
            user=user,
            verifier=given.get("verifier"),
            comment=given.get("comment"),
        )

    return answer
