"""`cellbatch hmi`: the operator's terminal HMI on a running controller (`controller serve`).

One screen: the batches with their state and open prompts, the selected batch's active
elements, open alarms and prompts, and a message line. Keys send ISA-88 commands to the
selected batch (each journaled by the controller with the user and a reason); `n`
answers the batch's oldest open prompt (`name=value …`, `verifier=ID` for verified
prompts); `k` acknowledges its oldest open alarm. On a GMP plant the operator signs in
with user ID and password (checked by the controller); every prompt answer is a
signature and asks for the signer's password again (and the verifier's), and after the
idle timeout (15 min, as `ebr.people.signatures.IDLE_TIMEOUT`) the HMI signs out: `l` signs
someone in again with user ID and password (Part 11 §11.200, R10).
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Input, Static

from cellbatch.service_client import ServiceError, call
from controller.interface_security import Endpoint
from ebr.people.signatures import IDLE_TIMEOUT

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
        Binding("l", "sign_in", "Sign in"),
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        endpoint: Endpoint | str,
        user: str,
        password: str = "",
        *,
        idle_timeout_s: float = IDLE_TIMEOUT.total_seconds(),
    ) -> None:
        """Watch the controller at `endpoint` as `user`; a password (already checked)
        means a GMP plant, where `user` is signed in until `idle_timeout_s` without use."""
        super().__init__()
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.gmp = bool(password)
        self.idle_timeout_s = idle_timeout_s
        self.batches: list[dict[str, Any]] = []
        self.detail: dict[str, Any] = {}
        self._pending: tuple[str, str] | None = None  # (purpose, what it is about)
        self._draft: _Draft | None = None
        self._last_activity = time.monotonic()

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
        if self._session_open():
            self._open_entry(
                ("command", f"{command} {batch_id}"), f"reason for {command} {batch_id}"
            )

    def action_answer(self) -> None:
        """Answer the selected batch's oldest open prompt."""
        prompts = self.detail.get("open_prompts") or []
        if not prompts:
            self.say("no open prompt on this batch")
            return
        if self._session_open():
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
        if self._session_open():
            alarm = alarms[0]
            self._open_entry(
                ("acknowledge", f"{batch_id} {alarm['seq']}"),
                f"comment for {_alarm_line(alarm).strip()} (Enter to acknowledge)",
            )

    def action_sign_in(self) -> None:
        """Sign a person in: user ID, then password (GMP plants)."""
        if not self.gmp:
            self.say("simulation plant: no sign-in needed")
            return
        self._open_entry(("user", ""), "user ID")

    def action_cancel(self) -> None:
        """Close the entry field (an answer being signed is dropped)."""
        self._pending = None
        self._draft = None
        self.query_one("#entry", Input).remove_class("open")

    # -- the signing session (GMP) --------------------------------------------------

    def _session_open(self) -> bool:
        """Whether someone is signed in and active; an idle session is closed first."""
        if not self.gmp:
            return True
        if self.password and time.monotonic() - self._last_activity > self.idle_timeout_s:
            self._sign_out(f"signed out after {self.idle_timeout_s / 60:g} min idle")
            return False
        if not self.password:
            self.say("nobody signed in: press l, then user ID and password")
            return False
        self._last_activity = time.monotonic()
        return True

    def _sign_out(self, why: str) -> None:
        self.password = ""
        self.sub_title = f"{self.endpoint} — signed out"
        self.say(f"{why}: press l to sign in (user ID and password)")

    # -- the entry field ------------------------------------------------------------

    def _open_entry(self, pending: tuple[str, str], placeholder: str, secret: bool = False) -> None:
        self._pending = pending
        entry = self.query_one("#entry", Input)
        entry.value = ""
        entry.password = secret
        entry.placeholder = placeholder
        entry.add_class("open")
        entry.focus()

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        """Take what the entry field asked for; send it once complete."""
        pending, self._pending = self._pending, None
        event.input.remove_class("open")
        self.query_one("#batches", DataTable).focus()
        if pending is None:
            return
        purpose, target = pending
        steps = {
            "command": self._send_command,
            "acknowledge": self._send_acknowledgement,
            "answer": self._take_values,
            "sign": self._take_signature,
            "verifier": self._take_verifier_password,
            "user": self._take_user_id,
            "password": self._take_password,
        }
        try:
            sent = await steps[purpose](target, event.value)
        except (ServiceError, ValueError) as exc:
            self.say(str(exc))
            return
        if sent is None:  # another entry is open for the next part
            return
        answer, done = sent
        self.say(done if answer.get("ok") else f"refused: {answer.get('message')}")
        self.refresh_view()

    async def _send_command(self, target: str, reason: str) -> _Sent:
        command, batch_id = target.split()
        answer = await call(
            self.endpoint, "Command", batch_id, command, self.user, self.password, reason
        )
        return answer, f"{batch_id}: {command} accepted"

    async def _send_acknowledgement(self, target: str, comment: str) -> _Sent:
        batch_id, alarm = target.split()
        answer = await call(
            self.endpoint, "Acknowledge", batch_id, alarm, self.user, self.password, comment
        )
        return answer, f"{batch_id}: alarm {alarm} acknowledged"

    async def _take_values(self, prompt_id: str, text: str) -> _Sent | None:
        values, verifier = self._parse_answer(text)
        self._draft = _Draft(prompt_id, values, verifier)
        if self.gmp:  # every signature asks for the signer's password again (Part 11)
            self._open_entry(
                ("sign", prompt_id), f"password of {self.user}: signs the answer", secret=True
            )
            return None
        return await self._send_answer()

    async def _take_signature(self, prompt_id: str, password: str) -> _Sent | None:
        assert self._draft is not None
        self._draft.signature = password
        if self._draft.verifier:
            self._open_entry(
                ("verifier", prompt_id),
                f"password of {self._draft.verifier}: verifies the answer",
                secret=True,
            )
            return None
        return await self._send_answer()

    async def _take_verifier_password(self, _prompt_id: str, password: str) -> _Sent:
        assert self._draft is not None
        self._draft.verifier_signature = password
        return await self._send_answer()

    async def _send_answer(self) -> _Sent:
        draft, self._draft = self._draft, None
        assert draft is not None
        answer = await call(
            self.endpoint, "Answer", draft.prompt_id, json.dumps(draft.values), self.user,
            draft.signature, draft.verifier, draft.verifier_signature, "",
        )  # fmt: skip
        verified = " and verified" if draft.verifier else ""
        return answer, f"{draft.prompt_id}: answered{verified}"

    async def _take_user_id(self, _target: str, user: str) -> None:
        self._open_entry(("password", user.strip()), f"password of {user.strip()}", secret=True)

    async def _take_password(self, user: str, password: str) -> _Sent:
        answer = await call(self.endpoint, "SignIn", user, password)
        if answer.get("ok"):
            self.user, self.password = user, password
            self._last_activity = time.monotonic()
            self.sub_title = f"{self.endpoint} — {user}"
        return answer, f"signed in: {answer.get('name', user)}"

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


_Sent = tuple[dict[str, Any], str]
"""What the controller answered, and the line to show when it accepted."""


@dataclass
class _Draft:
    """A prompt answer being put together: values, then the passwords that sign it."""

    prompt_id: str
    values: dict[str, float | str]
    verifier: str
    signature: str = ""
    verifier_signature: str = ""


def _alarm_line(alarm: dict[str, Any]) -> str:
    """An open alarm as the detail pane shows it."""
    state = "cleared, not acknowledged" if alarm["cleared"] else "ACTIVE"
    return (
        f"ALARM {alarm['seq']} {alarm['level']} {alarm['monitor']}: {alarm['tag']} = "
        f"{alarm['value']} beyond {alarm['limit']} ({state})"
    )
