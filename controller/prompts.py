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
from recipes import EntrySpec, Phase, Recipe
from recipes.diagnostics import FILE_START, DiagnosticSink
from recipes.fields import describe, suggest
from recipes.yamltree import MapNode, Node, ScalarNode, parse_yaml, to_plain

SIMULATED_OPERATOR = "simulated-operator"
SIMULATED_VERIFIER = "simulated-verifier"
SCAN = "scan"
#: the phase types that ask a person
PROMPT_PHASES = ("operator_prompt", "manual_sample", "identity_check")
#: what a prompt without typed entries asks: an acknowledgement
ACKNOWLEDGE = EntrySpec("done", "choice", choices=("done",), example="done")
#: the fields of an answer that are not entries
ANSWER_FIELDS = ("user", "verifier", "comment")


def asked_entries(phase: Phase, coi: str | None = None) -> dict[str, EntrySpec]:
    """What a prompt phase asks: its typed entries (an acknowledgement when it declares
    none); an identity check asks for the scan of the batch's chain-of-identity ID."""
    if phase.type == "identity_check":
        return {SCAN: EntrySpec(SCAN, "text", example=coi)}
    entries: dict[str, EntrySpec] = phase.args.get("entries") or {}  # type: ignore[assignment]
    return dict(entries) or {ACKNOWLEDGE.name: ACKNOWLEDGE}


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


def read_answers(text: str, source: str, recipe: Recipe | None) -> dict[str, dict[str, Any]]:
    """An answers file (YAML or JSON: phase path or name → its entries' values, ``user``,
    ``verifier`` where the prompt is verified, optional ``comment``), checked up front
    against the prompts of `recipe` (when known) so that a typo stops the run before the
    batch starts: unknown phases and entries (with a did-you-mean), values of the wrong
    type or out of limits, missing entries, users and verifiers, and prompts without an
    answer. Raises RecipeError listing every problem at FILE:LINE:COL."""
    sink = DiagnosticSink(source)
    root = parse_yaml(text, sink)
    if sink.count:
        raise sink.exception()
    if not isinstance(root, MapNode):
        where = FILE_START if root is None else root.pos
        sink.error(where, "expected a mapping of phase → {entry: value, user: ID, ...}")
        raise sink.exception()
    prompts = {} if recipe is None else _prompt_phases(recipe)
    names: dict[str, list[str]] = {}
    for path in prompts:
        names.setdefault(path.rsplit("/", 1)[-1], []).append(path)
    answered: set[str] = set()
    for key, item in root.entries.items():
        if recipe is not None:
            paths = [key] if key in prompts else names.get(key, [])
            if not paths:
                sink.error(
                    item.key_pos,
                    f"no prompt phase {key!r} in {recipe.header.name}"
                    f"{suggest(key, [*prompts, *names])} (prompts: {', '.join(prompts) or 'none'})",
                )
                continue
            answered.update(paths)
        else:
            paths = []
        if not isinstance(item.value, MapNode):
            sink.error(
                item.value.pos,
                f"the answer for {key!r} must be a mapping {{entry: value, user: ID, ...}}, "
                f"got {describe(item.value)}",
            )
            continue
        for path in paths:
            _check_answer(key, item.value, prompts[path], sink)
        if not paths:
            _check_people(key, item.value, False, sink)
    for path in prompts:
        if path not in answered:
            sink.error(FILE_START, f"no answer for the prompt {path!r}")
    if sink.count:
        raise sink.exception()
    return {str(k): dict(v) for k, v in to_plain(root).items()}


def _prompt_phases(recipe: Recipe) -> dict[str, Phase]:
    return {
        path: phase
        for path, _up, _op, phase in recipe.procedure.walk()
        if phase.type in PROMPT_PHASES
    }


def _check_answer(key: str, answer: MapNode, phase: Phase, sink: DiagnosticSink) -> None:
    entries = asked_entries(phase)
    for name, item in answer.entries.items():
        if name in ANSWER_FIELDS:
            continue
        spec = entries.get(name)
        if spec is None:
            sink.error(
                item.key_pos,
                f"{key}: no entry {name!r}{suggest(name, entries)} (entries: "
                f"{', '.join(entries)}; also {', '.join(ANSWER_FIELDS)})",
            )
            continue
        value = item.value.value if isinstance(item.value, ScalarNode) else to_plain(item.value)
        if phase.type == "identity_check":
            continue  # the scan is compared with the batch's ID when it is made
        try:
            spec.check(value)
        except ValueError as exc:
            sink.error(item.value.pos, f"{key}: {exc}")
    missing = [name for name in entries if name not in answer.entries]
    if missing:
        sink.error(answer.label_pos, f"{key}: missing entries {', '.join(missing)}")
    _check_people(key, answer, bool(phase.args.get("verify", False)), sink)


def _check_people(key: str, answer: MapNode, verify: bool, sink: DiagnosticSink) -> None:
    people: dict[str, str] = {}
    for field_name in ("user", "verifier"):
        item = answer.entries.get(field_name)
        if item is None:
            continue
        node: Node = item.value
        if not isinstance(node, ScalarNode) or not str(node.value or "").strip():
            sink.error(node.pos, f"{key}: {field_name} must be a user ID, got {describe(node)}")
            continue
        people[field_name] = str(node.value).strip()
    if "user" not in answer.entries:
        sink.error(answer.label_pos, f"{key}: names no user (user: ID, who answers)")
    if verify and "verifier" not in answer.entries:
        sink.error(answer.label_pos, f"{key}: the prompt is verified: give verifier: ID")
    if verify and people.get("user") and people.get("user") == people.get("verifier"):
        sink.error(
            answer.entries["verifier"].value.pos,
            f"{key}: the verifier must be a different person than {people['user']}",
        )
