"""Answering operator prompts at the terminal (``cellbatch run`` in the foreground)."""

from __future__ import annotations

import asyncio

import click

from controller.prompts import Answerer, Prompt, PromptBoard, PromptError, SignedBy
from ebr import EbrError
from ebr.people.signatures import SigningSession

MAX_TRIES = 3


def terminal_operator(
    board: PromptBoard, user: str, signing: SigningSession | None = None
) -> Answerer:
    """Ask each entry on the terminal; a refused answer is asked again (bounded).

    With a signing session (GMP plants) every answer is signed: the operator gives the
    password (and the user ID again after the idle timeout), a verifier gives ID and
    password; both are authenticated before the answer is journaled.
    """

    def sign(prompt: Prompt, verifier: str | None) -> SignedBy:
        assert signing is not None
        name = user if signing.needs_user_id else None
        password = click.prompt(f"  password for {user} (signing: performed)", hide_input=True)
        account = signing.authenticate(password, f"answer {prompt.id}", username=name)
        checker = None
        if verifier:
            secret = click.prompt(f"  password for {verifier} (signing: verified)", hide_input=True)
            checker = signing.directory.authenticate(verifier, secret, f"verify {prompt.id}")
        return SignedBy(account, checker)

    def ask(prompt: Prompt) -> tuple[dict[str, str], str | None, SignedBy | None]:
        click.echo(f"\n[{prompt.element}] {prompt.text}")
        values: dict[str, str] = {}
        for name, spec in prompt.entries.items():
            hint = f" [{spec.unit}]" if spec.unit else ""
            if spec.choices:
                hint += f" ({'/'.join(spec.choices)})"
            values[name] = click.prompt(f"  {name}{hint}", type=str)
        verifier = click.prompt("  verified by (user ID)", type=str) if prompt.verify else None
        return values, verifier, (sign(prompt, verifier) if signing is not None else None)

    async def answer(prompt: Prompt) -> None:
        for attempt in range(1, MAX_TRIES + 1):
            try:
                values, verifier, signed = await asyncio.to_thread(ask, prompt)
                await board.answer(
                    prompt.id, values, user=user, verifier=verifier, signed_by=signed
                )
                return
            except (PromptError, EbrError) as exc:
                click.echo(f"  refused: {exc}", err=True)
                if attempt == MAX_TRIES:
                    raise

    return answer
