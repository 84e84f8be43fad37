"""The HMI's dialogs: a command with its reason (and confirmation), a prompt's form,
and the key help. Each is a modal screen; Escape closes it without sending anything."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from cellbatch.batch_text import entry_hint
from recipes import EntrySpec

#: commands whose reason is required, and those that also ask for confirmation
NEEDS_REASON = frozenset({"hold", "restart", "stop", "abort"})
NEEDS_CONFIRMATION = frozenset({"stop", "abort"})

KEYS = (
    ("h", "hold the selected batch (reason required)"),
    ("r", "restart a held batch (reason required)"),
    ("p / u", "pause / resume"),
    ("s", "stop: ends the batch (reason and confirmation)"),
    ("a", "abort: ends the batch at once (reason and confirmation)"),
    ("n", "answer the oldest open prompt (a form)"),
    ("k", "acknowledge the oldest unacknowledged alarm"),
    ("l", "sign in (GMP plants: user ID and password)"),
    ("1 2 3", "show process values, alarms, prompts"),
    ("↑ ↓", "select a batch"),
    ("?", "this help"),
    ("q", "quit the HMI (batches keep running)"),
    ("Esc", "close a dialog without sending"),
)

DIALOG_CSS = """
ModalScreen { align: center middle; }
.dialog { width: 90%; max-width: 100; height: auto; max-height: 95%;
          border: thick $accent; background: $surface; padding: 0 1; }
.dialog .error { color: $error; height: auto; }
.dialog .hint { color: $text-muted; height: auto; }
.dialog Input { margin: 0; }
"""


class HelpScreen(ModalScreen[None]):
    """Every key of the HMI, with what it does."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss_help", "Close")
    ]

    def compose(self) -> ComposeResult:
        """The key table."""
        text = Text("Keys (Esc or ? closes)\n", style="bold")
        for key, does in KEYS:
            text.append(f"{key:>6}  ", style="bold")
            text.append(f"{does}\n")
        with Vertical(classes="dialog"):
            yield Static(text, id="help")

    def action_dismiss_help(self) -> None:
        """Close the help."""
        self.dismiss(None)


class CommandScreen(ModalScreen[str | None]):
    """A command's reason (required for hold, restart, stop, abort), then for stop and
    abort a confirmation (y); dismissed with the reason, or None when cancelled."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("y", "confirm", "Confirm", show=False),
        Binding("n", "cancel", "Cancel", show=False),
    ]

    def __init__(self, command: str, batch_id: str) -> None:
        """Ask for `command` on `batch_id`."""
        super().__init__()
        self.command = command
        self.batch_id = batch_id
        self.reason: str | None = None

    def compose(self) -> ComposeResult:
        """Title, reason field, error and confirmation lines."""
        required = "required" if self.command in NEEDS_REASON else "optional"
        with Vertical(classes="dialog"):
            yield Static(Text(f"{self.command.upper()} {self.batch_id}", style="bold"))
            yield Static(
                f"Reason ({required}), journaled with your name. Enter sends, Esc cancels.",
                classes="hint",
            )
            yield Input(id="reason", placeholder=f"why {self.command}?")
            yield Static("", id="error", classes="error")

    def on_mount(self) -> None:
        """Type the reason first."""
        self.query_one("#reason", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Check the reason; ask for confirmation where the command ends the batch."""
        reason = event.value.strip()
        error = self.query_one("#error", Static)
        if not reason and self.command in NEEDS_REASON:
            error.update(f"A reason is required to {self.command}.")
            return
        if self.command not in NEEDS_CONFIRMATION:
            self.dismiss(reason)
            return
        self.reason = reason
        event.input.disabled = True
        error.update(
            Text(
                f"{self.command.upper()} ends batch {self.batch_id}; it cannot be "
                "continued. Press y to confirm, n or Esc to cancel.",
                style="bold",
            )
        )
        self.set_focus(None)

    def action_confirm(self) -> None:
        """y: send the confirmed command."""
        if self.reason is not None:
            self.dismiss(self.reason)

    def action_cancel(self) -> None:
        """Esc or n: nothing is sent."""
        self.dismiss(None)


Sender = Callable[[dict[str, float | str], str, str, str], Awaitable[dict[str, Any]]]
"""Sends (values, verifier, password, verifier password); returns the controller's answer."""


class PromptForm(ModalScreen[str | None]):
    """An open prompt as a form: one field per entry (name, type, unit, choices, limits,
    example), the verifier where a second person must verify, the passwords that sign it
    on a GMP plant. Entries are checked before sending; a refusal is shown whole and the
    form stays open. Dismissed with the confirmation line, or None when cancelled."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: dict[str, Any], user: str, gmp: bool, send: Sender) -> None:
        """A form for `prompt` (a ``prompt_forms`` item of ``Show``) answered by `user`."""
        super().__init__()
        self.prompt = prompt
        self.user = user
        self.gmp = gmp
        self.send = send
        self.specs = [
            EntrySpec(
                name=e["name"],
                kind=e["type"],
                unit=e.get("unit"),
                min=e.get("min"),
                max=e.get("max"),
                choices=tuple(e.get("choices") or ()),
                example=e.get("example"),
            )
            for e in prompt["entries"]
        ]

    def compose(self) -> ComposeResult:
        """The prompt's text and its fields."""
        p = self.prompt
        with VerticalScroll(classes="dialog"):
            yield Static(Text(f"PROMPT {p['element']}", style="bold"))
            yield Static(Text(p["text"]))
            for entry in p["entries"]:
                yield Static(Text(entry_hint(entry)), classes="hint")
                field_id, name = f"entry-{entry['name']}", entry["name"]
                if entry["type"] == "number":
                    yield Input(id=field_id, type="number", placeholder=name, compact=True)
                else:
                    yield Input(id=field_id, placeholder=name, compact=True)
            if p.get("verify"):
                yield Static("verified by: a second person's user ID (required)", classes="hint")
                yield Input(id="verifier", placeholder="verifier user ID", compact=True)
            if self.gmp:
                yield Static(f"password of {self.user}: signs the answer", classes="hint")
                yield Input(id="password", password=True, placeholder="password", compact=True)
                if p.get("verify"):
                    yield Static("password of the verifier", classes="hint")
                    yield Input(
                        id="verifier-password", password=True, placeholder="password", compact=True
                    )
            yield Static("Enter in the last field sends · Tab next field · Esc cancels",
                         classes="hint")  # fmt: skip
            yield Static("", id="error", classes="error")

    def on_mount(self) -> None:
        """The first field has the focus."""
        fields = list(self.query(Input))
        if fields:
            fields[0].focus()

    def _value(self, widget_id: str) -> str:
        found = self.query(f"#{widget_id}")
        return found.first(Input).value.strip() if found else ""

    def check(self) -> tuple[dict[str, float | str], list[str]]:
        """The entries as typed, checked against their specs; and every problem found."""
        values: dict[str, float | str] = {}
        problems: list[str] = []
        for spec in self.specs:
            text = self._value(f"entry-{spec.name}")
            if not text:
                problems.append(f"{spec.name}: required")
                continue
            try:
                values[spec.name] = spec.check(text)
            except ValueError as exc:
                problems.append(str(exc))
        if self.prompt.get("verify") and not self._value("verifier"):
            problems.append("verifier: a second person must verify this answer")
        if self.prompt.get("verify") and self._value("verifier") == self.user:
            problems.append("verifier: must be another person than the one answering")
        return values, problems

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter: the next field, or (in the last one) check and send."""
        fields = list(self.query(Input))
        if event.input is not fields[-1]:
            self.focus_next()
            return
        values, problems = self.check()
        error = self.query_one("#error", Static)
        if problems:
            error.update(Text("Not sent: " + "; ".join(problems)))
            return
        error.update("sending…")
        answer = await self.send(
            values,
            self._value("verifier"),
            self._value("password"),
            self._value("verifier-password"),
        )
        if not answer.get("ok"):
            error.update(Text(f"refused: {answer.get('message')}"))
            return
        verified = " and verified" if self.prompt.get("verify") else ""
        self.dismiss(f"{self.prompt['element']}: answered{verified} ({self.prompt['id']})")

    def action_cancel(self) -> None:
        """Esc: nothing is sent."""
        self.dismiss(None)
