"""Answering operator prompts at the terminal (``cellbatch run`` in the foreground)."""

from __future__ import annotations

import asyncio

import click

from controller.prompts import Answerer, Prompt, PromptBoard, PromptError

MAX_TRIES = 3


def terminal_operator(board: PromptBoard, user: str) -> Answerer:
    """Ask each entry on the terminal; a refused answer is asked again (bounded)."""

    def ask(prompt: Prompt) -> tuple[dict[str, str], str | None]:
        click.echo(f"\n[{prompt.element}] {prompt.text}")
        values: dict[str, str] = {}
        for name, spec in prompt.entries.items():
            hint = f" [{spec.unit}]" if spec.unit else ""
            if spec.choices:
                hint += f" ({'/'.join(spec.choices)})"
            values[name] = click.prompt(f"  {name}{hint}", type=str)
        verifier = click.prompt("  verified by (user ID)", type=str) if prompt.verify else None
        return values, verifier

    async def answer(prompt: Prompt) -> None:
        for attempt in range(1, MAX_TRIES + 1):
            values, verifier = await asyncio.to_thread(ask, prompt)
            try:
                await board.answer(prompt.id, values, user=user, verifier=verifier)
                return
            except PromptError as exc:
                click.echo(f"  refused: {exc}", err=True)
                if attempt == MAX_TRIES:
                    raise

    return answer
