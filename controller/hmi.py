"""`cellbatch hmi`: the operator's terminal HMI on a running controller (`controller serve`).

One screen: the batches with their state and open prompts, the selected batch's active
elements and prompts, and a message line. Keys send ISA-88 commands to the selected
batch (each journaled by the controller with the user and a reason); `n` answers the
batch's oldest open prompt (`name=value …`, `verifier=ID` for verified prompts). On a
GMP plant the operator signs in with a password at start; it is sent with each action
and checked by the controller.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Input, Static

from controller.service_client import ServiceError, call

REFRESH_S = 1.0


class BatchHmi(App[None]):
    """Batches of one controller: watch, command, answer prompts."""

    TITLE = "cellbatch HMI"
    CSS = """
    #batches { height: 1fr; }
    #detail { height: auto; max-height: 14; border: round $primary; padding: 0 1; }
    #message { height: 1; color: $warning; }
    #entry { display: none; }
    #entry.open { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "command('hold')", "Hold"),
        Binding("r", "command('restart')", "Restart"),
        Binding("p", "command('pause')", "Pause"),
        Binding("u", "command('resume')", "Resume"),
        Binding("s", "command('stop')", "Stop"),
        Binding("a", "command('abort')", "Abort"),
        Binding("n", "answer", "Answer prompt"),
        Binding("k", "acknowledge", "Acknowledge alarm"),
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, endpoint: str, user: str, password: str = "") -> None:
        """Watch the controller at `endpoint` as `user`."""
        super().__init__()
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.batches: list[dict[str, Any]] = []
        self.detail: dict[str, Any] = {}
        self._pending: tuple[str, str] | None = None  # (purpose, batch or prompt id)
        self._answer: tuple[str, dict[str, float | str], str] | None = None

    def compose(self) -> ComposeResult:
        """Batches table, detail panel, message line, entry field."""
        yield Header()
        with Vertical():
            yield DataTable(id="batches", cursor_type="row")
            yield Static(id="detail")
            yield Static(id="message")
            yield Input(id="entry")
        yield Footer()

    def on_mount(self) -> None:
        """Start refreshing."""
        table = self.query_one("#batches", DataTable)
        table.add_columns("batch", "state", "recipe", "COI", "prompts")
        self.sub_title = f"{self.endpoint} — {self.user}"
        self.refresh_view()
        self.set_interval(REFRESH_S, self.refresh_view)

    @property
    def selected(self) -> str | None:
        """ID of the batch under the cursor."""
        table = self.query_one("#batches", DataTable)
        if not self.batches or table.cursor_row is None:
            return None
        row = min(table.cursor_row, len(self.batches) - 1)
        return str(self.batches[row]["id"])

    def say(self, text: str) -> None:
        """Show one line of feedback."""
        self.query_one("#message", Static).update(text)

    @work(exclusive=True, group="refresh")
    async def refresh_view(self) -> None:
        """Read the batch list and the selected batch from the controller."""
        try:
            batches = await call(self.endpoint, "List")
            selected = self.selected or (batches[0]["id"] if batches else None)
            detail = await call(self.endpoint, "Show", selected) if selected else {}
        except ServiceError as exc:
            self.say(str(exc))
            return
        self.batches, self.detail = batches, detail
        table = self.query_one("#batches", DataTable)
        cursor = table.cursor_row
        table.clear()
        for b in batches:
            table.add_row(b["id"], b["state"], b["recipe"], b["coi"], str(b["prompts"] or ""))
        if batches:
            table.move_cursor(row=min(cursor or 0, len(batches) - 1))
        self.query_one("#detail", Static).update(self._detail_text(detail))

    @staticmethod
    def _detail_text(detail: dict[str, Any]) -> str:
        if not detail.get("ok"):
            return "no batch selected"
        lines = [f"{detail['id']}  {detail['state']}  alarms: {detail['alarms']}"]
        lines += [f"  {line}" for line in detail["active"]]
        lines += [_alarm_line(alarm) for alarm in detail.get("open_alarms", [])]
        for prompt in detail["open_prompts"]:
            lines.append(f"PROMPT {prompt['element']}: {prompt['text']}")
        return "\n".join(lines)

    def action_command(self, command: str) -> None:
        """Ask for a reason, then send `command` to the selected batch."""
        batch_id = self.selected
        if batch_id is None:
            self.say("no batch selected")
            return
        self._open_entry(("command:" + command, batch_id), f"reason for {command} {batch_id}")

    def action_answer(self) -> None:
        """Answer the selected batch's oldest open prompt."""
        prompts = self.detail.get("open_prompts") or []
        if not prompts:
            self.say("no open prompt on this batch")
            return
        prompt = prompts[0]
        self._open_entry(
            ("answer", str(prompt["id"])),
            f"{prompt['text']} — name=value …, verifier=ID if verified",
        )

    def action_acknowledge(self) -> None:
        """Acknowledge the selected batch's oldest open alarm, with a comment."""
        alarms = self.detail.get("open_alarms") or []
        batch_id = self.selected
        if batch_id is None or not alarms:
            self.say("no alarm to acknowledge on this batch")
            return
        alarm = alarms[0]
        self._open_entry(
            ("acknowledge", f"{batch_id} {alarm['seq']}"),
            f"comment for {_alarm_line(alarm).strip()} (Enter to acknowledge)",
        )

    def action_cancel(self) -> None:
        """Close the entry field."""
        self._pending = None
        self.query_one("#entry", Input).remove_class("open")

    def _open_entry(self, pending: tuple[str, str], placeholder: str, secret: bool = False) -> None:
        self._pending = pending
        entry = self.query_one("#entry", Input)
        entry.value = ""
        entry.password = secret
        entry.placeholder = placeholder
        entry.add_class("open")
        entry.focus()

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        """Send what the entry field asked for."""
        pending, self._pending = self._pending, None
        event.input.remove_class("open")
        self.query_one("#batches", DataTable).focus()
        if pending is None:
            return
        purpose, target = pending
        try:
            if purpose.startswith("command:"):
                command = purpose.removeprefix("command:")
                answer = await call(
                    self.endpoint, "Command", target, command, self.user, self.password, event.value
                )
                done = f"{target}: {command} accepted"
            elif purpose == "acknowledge":
                batch_id, alarm = target.split()
                answer = await call(
                    self.endpoint, "Acknowledge", batch_id, alarm, self.user, self.password,
                    event.value,
                )  # fmt: skip
                done = f"{batch_id}: alarm {alarm} acknowledged"
            elif purpose == "answer":
                prompt_id, values, verifier = target, *self._parse_answer(event.value)
                if verifier and self.password:  # GMP: the verifier signs with a password
                    self._answer = (prompt_id, values, verifier)
                    self._open_entry(("verifier", prompt_id), f"password for {verifier}", True)
                    return
                answer = await self._send_answer(prompt_id, values, verifier, "")
                done = f"{target}: answered"
            else:
                assert self._answer is not None
                prompt_id, values, verifier = self._answer
                self._answer = None
                answer = await self._send_answer(prompt_id, values, verifier, event.value)
                done = f"{target}: answered and verified"
        except (ServiceError, ValueError) as exc:
            self.say(str(exc))
            return
        self.say(done if answer.get("ok") else f"refused: {answer.get('message')}")
        self.refresh_view()

    @staticmethod
    def _parse_answer(text: str) -> tuple[dict[str, float | str], str]:
        """`name=value …` (numbers as numbers) and the `verifier=ID`, if any."""
        values: dict[str, float | str] = {}
        verifier = ""
        for item in shlex.split(text):
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r}: want name=value")
            if name == "verifier":
                verifier = value
                continue
            try:
                values[name] = float(value)
            except ValueError:
                values[name] = value
        return values, verifier

    async def _send_answer(
        self, prompt_id: str, values: dict[str, float | str], verifier: str, secret: str
    ) -> Any:
        return await call(
            self.endpoint, "Answer", prompt_id, json.dumps(values), self.user, self.password,
            verifier, secret, "",
        )  # fmt: skip


def _alarm_line(alarm: dict[str, Any]) -> str:
    """An open alarm as the detail pane shows it."""
    state = "cleared, not acknowledged" if alarm["cleared"] else "ACTIVE"
    return (
        f"ALARM {alarm['seq']} {alarm['level']} {alarm['monitor']}: {alarm['tag']} = "
        f"{alarm['value']} beyond {alarm['limit']} ({state})"
    )
