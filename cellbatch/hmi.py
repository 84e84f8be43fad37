"""`cellbatch hmi`: the operator's terminal HMI on a running controller (`controller serve`).

One screen, usable from 80×24: a status line (endpoint, who is signed in, ONLINE or
UNREACHABLE), a banner while the controller cannot be reached (every value is then
marked STALE with its age), a STORAGE banner while the controller's store cannot commit
(since when and why; its running batches are then held in their safe state), the
batches, the selected batch's line (state in words, recipe, batch day, and why it is
held or stopped), its active phase with the time in it, and three views: `1` process
values (every CPP with PV, SP, unit, alert and action limits, quality, age and a trend),
`2` alarms (all of the batch's alarms, active or cleared, acknowledged by whom), `3`
open prompts (what to enter). Keys send ISA-88 commands to the selected batch, each with
a reason (required for hold, restart, stop and abort; stop and abort ask for
confirmation); `n` opens the oldest prompt as a form checked before sending; `k`
acknowledges the oldest unacknowledged alarm; `?` lists every key. Results and refusals
are shown whole (wrapped).

On a GMP plant the operator signs in with user ID and password (checked by the
controller); every prompt answer is a signature and asks for the signer's password
again (and the verifier's), and after the idle timeout (15 min, as
`ebr.people.signatures.IDLE_TIMEOUT`) the HMI signs out: `l` signs someone in again
(Part 11 §11.200, R10).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Input, Static, TabbedContent, TabPane

from cellbatch.batch_text import (
    alarm_counts,
    batch_day,
    duration,
    element_line,
    limits,
    number,
    prompt_lines,
    sparkline,
)
from cellbatch.hmi_forms import CommandScreen, HelpScreen, PromptForm
from cellbatch.service_client import (
    Connection,
    ServiceError,
    alert_line,
    call,
    storage_banner,
)
from controller.interface_security import Endpoint
from ebr.people.signatures import IDLE_TIMEOUT

REFRESH_S = 1.0
#: from this width on, each CPP takes one line (two below)
WIDE = 110


class BatchHmi(App[None]):
    """Batches of one controller: watch values and alarms, command, answer prompts."""

    TITLE = "cellbatch HMI"
    CSS = """
    #status { height: 1; background: $primary; color: $text; }
    #status.unreachable { background: $error; }
    #banner { display: none; height: auto; background: $error; color: $text; padding: 0 1; }
    #banner.shown { display: block; }
    #storage { display: none; height: auto; background: $error; color: $text; padding: 0 1; }
    #storage.shown { display: block; }
    #alerts { display: none; height: auto; background: $warning; color: $text; padding: 0 1; }
    #alerts.shown { display: block; }
    #batches { height: auto; max-height: 5; }
    #batchline { height: auto; padding: 0 1; }
    #path { height: auto; padding: 0 1; color: $text-muted; }
    TabbedContent { height: 1fr; }
    TabPane { padding: 0 1; }
    .stale { text-style: dim; }
    #message { height: auto; max-height: 4; color: $warning; padding: 0 1; }
    #entry { display: none; }
    #entry.open { display: block; }
    #keys { height: auto; background: $panel; padding: 0 1; }
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
        Binding("1", "view('values')", "Values", show=False),
        Binding("2", "view('alarms')", "Alarms", show=False),
        Binding("3", "view('prompts')", "Prompts", show=False),
        Binding("question_mark", "help", "Keys"),
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
        refresh_s: float | None = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Watch the controller at `endpoint` as `user`; a password (already checked)
        means a GMP plant, where `user` is signed in until `idle_timeout_s` without use.
        `refresh_s` None: no polling (the screen shows what `show` is given); `clock`
        gives wall seconds (for the age of stale values)."""
        super().__init__()
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.gmp = bool(password)
        self.idle_timeout_s = idle_timeout_s
        self.refresh_s = refresh_s
        self.clock = clock
        self.batches: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []  # account alerts (R12), `Alerts` answer
        self.storage: str | None = None  # the controller's store cannot commit: why
        self.detail: dict[str, Any] = {}
        self.unreachable: str | None = None  # why, while the controller cannot be reached
        self.updated_at: float | None = None  # clock() of the last good update
        self._pending: tuple[str, str] | None = None  # (purpose, what it is about)
        self._last_activity = time.monotonic()
        self._session: Connection | None = None
        # Made once and kept: a refresh finishing while the app shuts down must not
        # look them up in a screen that is already gone.
        self._table: DataTable[Any] = DataTable(id="batches", cursor_type="row")
        self._w = {name: Static(id=name) for name in _STATICS}

    def compose(self) -> ComposeResult:
        """Status, banner, batches, batch line, path, the three views, message, keys."""
        w = self._w
        yield w["status"]
        yield w["banner"]
        yield w["storage"]
        yield w["alerts"]
        yield self._table
        yield w["batchline"]
        yield w["path"]
        with TabbedContent(id="views"):
            with TabPane("1 Values", id="values"), VerticalScroll():
                yield w["cpps"]
            with TabPane("2 Alarms", id="alarms"), VerticalScroll():
                yield w["alarmlist"]
            with TabPane("3 Prompts", id="prompts"), VerticalScroll():
                yield w["promptlist"]
        yield w["message"]
        yield Input(id="entry")
        yield w["keys"]

    def on_mount(self) -> None:
        """Start refreshing."""
        table = self._table
        table.add_columns("batch", "state", "alarms", "prompts")
        self._render_all()
        if self.refresh_s is not None:
            self.refresh_view()
            self.set_interval(self.refresh_s, self.refresh_view)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While a dialog is open, the screen's keys (quit too) act only in it."""
        if len(self.screen_stack) > 1 and action not in {"dismiss_help", "cancel", "confirm"}:
            return None
        return True

    def on_resize(self, _event: events.Resize) -> None:
        """Lay the values out for the new width."""
        self._render_all()

    @property
    def selected(self) -> str | None:
        """ID of the batch under the cursor."""
        table = self._table
        if not self.batches or table.cursor_row is None:
            return None
        row = min(table.cursor_row, len(self.batches) - 1)
        return str(self.batches[row]["id"])

    def say(self, text: str) -> None:
        """Show feedback, whole (it wraps)."""
        self._w["message"].update(Text(text))

    # -- what the controller says -------------------------------------------------------

    @work(exclusive=True, group="refresh")
    async def refresh_view(self) -> None:
        """Read the batch list and the selected batch from the controller (over one
        session, kept open between refreshes and opened again after a failure)."""
        try:
            if self._session is None:
                self._session = await Connection(self.endpoint).__aenter__()
            batches = await self._session.call("List")
            ids = [str(b["id"]) for b in batches]
            selected = self.selected if self.selected in ids else (ids[0] if ids else None)
            detail = await self._session.call("Show", selected) if selected else {}
            alerts = await self._session.call("Alerts")
            info = await self._session.call("Info")
        except (ServiceError, OSError, TimeoutError) as exc:
            await self._close_session()
            self.lost(str(exc) or type(exc).__name__)
            return
        self.show(batches, detail, alerts, info)

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.__aexit__(None, None, None)

    async def on_unmount(self) -> None:
        """Stop refreshing and close the refresh session."""
        self.workers.cancel_group(self, "refresh")
        await self._close_session()

    def show(
        self,
        batches: list[dict[str, Any]],
        detail: dict[str, Any],
        alerts: list[dict[str, Any]] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Show a `List` and a `Show` answer of the controller (it is reachable), and
        its `Alerts` and `Info` answers when given (None: keep the last one)."""
        self.batches, self.detail = batches, detail
        if isinstance(alerts, list):  # a refusal (the store unreadable) keeps the last ones
            self.alerts = alerts
        if info is not None:
            self.storage = storage_banner(info)
        self.unreachable = None
        self.updated_at = self.clock()
        table = self._table
        cursor = table.cursor_row
        table.clear()
        for b in batches:
            prompts = str(b["prompts"]) if b["prompts"] else "–"
            alarms = str(b.get("open_alarms") or "–")
            table.add_row(b["id"], str(b["state"]).upper(), alarms, prompts)
        ids = [str(b["id"]) for b in batches]
        if detail.get("id") in ids:
            table.move_cursor(row=ids.index(str(detail["id"])))
        elif batches:
            table.move_cursor(row=min(cursor or 0, len(batches) - 1))
        self._render_all()

    def lost(self, why: str) -> None:
        """The controller cannot be reached: keep the last values, marked stale."""
        self.unreachable = why
        self._render_all()

    # -- drawing --------------------------------------------------------------------

    def _render_all(self) -> None:
        stale = self.unreachable is not None
        self._w["keys"].update(_keys_text(max(20, self.size.width - 2)))
        who = self.user if (self.password or not self.gmp) else "signed out"
        status = self._w["status"]
        state = "UNREACHABLE" if stale else ("ONLINE" if self.updated_at else "CONNECTING")
        status.update(Text(f" cellbatch HMI · {self.endpoint} · {who} · {state}"))
        status.set_class(stale, "unreachable")
        banner = self._w["banner"]
        banner.set_class(stale, "shown")
        if stale:
            banner.update(Text(self._banner_text()))
        storage = self._w["storage"]
        storage.set_class(self.storage is not None, "shown")
        storage.update(Text(self.storage or ""))
        alerts = self._w["alerts"]
        alerts.set_class(bool(self.alerts), "shown")
        alerts.update(Text("\n".join(alert_line(a) for a in self.alerts)))
        self._table.set_class(stale, "stale")
        for name in ("batchline", "path", "cpps", "alarmlist", "promptlist"):
            self._w[name].set_class(stale, "stale")
        detail = self.detail
        if not detail.get("ok"):
            empty = "no batch selected" if not self.batches else "reading the batch…"
            for name in ("batchline", "path", "cpps", "alarmlist", "promptlist"):
                self._w[name].update(empty if name == "batchline" else "")
            return
        self._w["batchline"].update(self._batch_text(detail))
        self._w["path"].update(Text(self._path_text(detail)))
        self._w["cpps"].update(self._cpps_text(detail))
        self._w["alarmlist"].update(self._alarms_text(detail))
        self._w["promptlist"].update(self._prompts_text(detail))

    def _stale_s(self) -> float:
        return 0.0 if self.updated_at is None else max(0.0, self.clock() - self.updated_at)

    def _banner_text(self) -> str:
        since = (
            f"last update {duration(self._stale_s())} ago"
            if self.updated_at is not None
            else "no update yet"
        )
        return f"CONTROLLER UNREACHABLE — values are STALE ({since}); retrying. {self.unreachable}"

    @staticmethod
    def _batch_text(d: dict[str, Any]) -> Text:
        text = Text()
        text.append(f"{d['id']}  ")
        text.append(str(d["state"]).upper(), style="bold")
        text.append(f"  {d['recipe_name']} {d['recipe_version']}\n")
        text.append(f"COI {d['coi']} · process time {batch_day(d.get('process_time_s'))}")
        if d.get("why"):
            text.append("\nWHY: ", style="bold")
            text.append(str(d["why"]))
        return text

    @staticmethod
    def _path_text(d: dict[str, Any]) -> str:
        phases = [e for e in d["elements"] if e["level"] == "phase"] or d["elements"][-1:]
        return "\n".join(f"at {element_line(e)}" for e in phases) or "no active phase"

    def _cpps_text(self, d: dict[str, Any]) -> Text:
        cpps = d.get("cpps") or []
        if not cpps:
            return Text("no monitored process values in this recipe")
        stale = self.unreachable is not None
        extra = self._stale_s() if stale else 0.0
        wide = self.size.width >= WIDE
        text = Text()
        for cpp in cpps:
            quality = "STALE" if stale else str(cpp["quality"]).upper()
            age = duration(cpp["age_s"]) + (f" + {duration(extra)}" if stale else "")
            text.append(f"{cpp['unit']}.{cpp['name']}", style="bold")
            text.append(
                f"  PV {number(cpp['pv'])} {cpp['eu']}  SP {number(cpp['sp'])}  {quality}"
                f"  age {age}" + ("  " if wide else "\n")
            )
            trend = sparkline(cpp["trend"], 10) if wide else f"trend {sparkline(cpp['trend'], 16)}"
            text.append(
                ("" if wide else "    ")
                + f"alert {limits(cpp['alert'])}  action {limits(cpp['action'])}  {trend}\n",
                style="" if wide else "dim",
            )
        return text

    def _alarms_text(self, d: dict[str, Any]) -> Text:
        alarms = d.get("alarm_list") or []
        if not alarms:
            return Text("no alarms in this batch")
        wide = self.size.width >= WIDE
        text = Text(alarm_counts(alarms) + "\n", style="bold")
        for a in alarms:
            state = "ACTIVE" if a["active"] else f"cleared {_clock_of(a['cleared'])}"
            acked = (
                f"acknowledged by {a['acknowledged_by']}"
                if a["acknowledged_by"]
                else "NOT ACKNOWLEDGED"
            )
            text.append(f"#{a['seq']} {str(a['level']).upper()} ", style="bold")
            text.append(
                f"{a['monitor']}: {a['tag']} = {number(a['value'])} beyond {number(a['limit'])}"
                + ("  " if wide else "\n    ")
                + f"raised {_clock_of(a['raised'])} · {state} · {acked}\n"
            )
        return text

    @staticmethod
    def _prompts_text(d: dict[str, Any]) -> Text:
        prompts = d.get("prompt_forms") or []
        if not prompts:
            return Text("no open prompt")
        text = Text()
        for i, prompt in enumerate(prompts):
            first, *rest = prompt_lines(prompt)
            text.append(("n answers: " if i == 0 else "then: ") + first + "\n", style="bold")
            text.append("".join(f"{line}\n" for line in rest))
        return text

    # -- keys ------------------------------------------------------------------------

    def action_view(self, pane: str) -> None:
        """Show one of the three views."""
        self.query_one("#views", TabbedContent).active = pane

    def action_help(self) -> None:
        """List every key."""
        self.push_screen(HelpScreen())

    def action_command(self, command: str) -> None:
        """Ask for a reason (and confirmation), then send `command` to the selected batch."""
        batch_id = self.selected
        if batch_id is None:
            self.say("no batch selected")
            return
        if not self._session_open():
            return

        async def send(reason: str | None) -> None:
            if reason is None:
                self.say(f"{command} cancelled: nothing sent")
                return
            await self._send_and_say(self._send_command, f"{command} {batch_id}", reason)

        self.push_screen(CommandScreen(command, batch_id), send)

    def action_answer(self) -> None:
        """Answer the selected batch's oldest open prompt in a form."""
        prompts = self.detail.get("prompt_forms") or []
        if not prompts:
            self.say("no open prompt on this batch")
            return
        if not self._session_open():
            return
        prompt = prompts[0]

        async def send(
            values: dict[str, float | str], verifier: str, password: str, verifier_password: str
        ) -> dict[str, Any]:
            try:
                return dict(
                    await call(
                        self.endpoint,
                        "Answer",
                        str(prompt["id"]),
                        json.dumps(values),
                        self.user,
                        password,
                        verifier,
                        verifier_password,
                        "",
                    )
                )
            except ServiceError as exc:
                return {"ok": False, "message": str(exc)}

        def done(line: str | None) -> None:
            self.say(line or "answer cancelled: nothing sent")
            if line:
                self.refresh_view() if self.refresh_s is not None else None

        self.push_screen(PromptForm(prompt, self.user, self.gmp, send), done)

    def action_acknowledge(self) -> None:
        """Acknowledge the selected batch's oldest unacknowledged alarm, with a comment."""
        alarms = [a for a in self.detail.get("alarm_list") or [] if not a["acknowledged_by"]]
        batch_id = self.selected
        if batch_id is None or not alarms:
            self.say("no alarm to acknowledge on this batch")
            return
        if self._session_open():
            alarm = alarms[0]
            self._open_entry(
                ("acknowledge", f"{batch_id} {alarm['seq']}"),
                f"comment for alarm #{alarm['seq']} {alarm['monitor']} (Enter acknowledges)",
            )

    def action_sign_in(self) -> None:
        """Sign a person in: user ID, then password (GMP plants)."""
        if not self.gmp:
            self.say("simulation plant: no sign-in needed")
            return
        self._open_entry(("user", ""), "user ID")

    def action_cancel(self) -> None:
        """Close the entry field."""
        self._pending = None
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
        self._render_all()
        self.say(f"{why}: press l to sign in (user ID and password)")

    # -- the entry field (acknowledgement comment, sign-in) ------------------------

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
        if event.input.id != "entry":
            return
        pending, self._pending = self._pending, None
        event.input.remove_class("open")
        self._table.focus()
        if pending is None:
            return
        purpose, target = pending
        steps = {
            "acknowledge": self._send_acknowledgement,
            "user": self._take_user_id,
            "password": self._take_password,
        }
        await self._send_and_say(steps[purpose], target, event.value)

    async def _send_and_say(self, step: Callable[[str, str], Any], target: str, value: str) -> None:
        try:
            sent = await step(target, value)
        except ServiceError as exc:
            self.say(str(exc))
            return
        if sent is None:  # another entry is open for the next part
            return
        answer, done = sent
        self.say(done if answer.get("ok") else f"refused: {answer.get('message')}")
        if self.refresh_s is not None:
            self.refresh_view()

    async def _send_command(self, target: str, reason: str) -> _Sent:
        command, batch_id = target.split()
        answer = await call(
            self.endpoint, "Command", batch_id, command, self.user, self.password, reason
        )
        return answer, f"{batch_id}: {command} accepted ({answer.get('state')})"

    async def _send_acknowledgement(self, target: str, comment: str) -> _Sent:
        batch_id, alarm = target.split()
        answer = await call(
            self.endpoint, "Acknowledge", batch_id, alarm, self.user, self.password, comment
        )
        return answer, f"{batch_id}: alarm {alarm} acknowledged"

    async def _take_user_id(self, _target: str, user: str) -> None:
        self._open_entry(("password", user.strip()), f"password of {user.strip()}", secret=True)

    async def _take_password(self, user: str, password: str) -> _Sent:
        answer = await call(self.endpoint, "SignIn", user, password)
        if answer.get("ok"):
            self.user, self.password = user, password
            self._last_activity = time.monotonic()
            self._render_all()
        return answer, f"signed in: {answer.get('name', user)}"


_STATICS = ("status", "banner", "storage", "alerts", "batchline", "path", "cpps", "alarmlist",
            "promptlist", "message", "keys")  # fmt: skip
"""The HMI's text areas, by id."""

_Sent = tuple[dict[str, Any], str]
"""What the controller answered, and the line to show when it accepted."""


KEY_HINTS = ("h hold", "r restart", "p pause", "u resume", "s stop", "a abort", "n answer",
             "k ack", "l sign in", "1 2 3 views", "? keys", "q quit")  # fmt: skip
"""The bottom lines: every key, in the order of the help (`KEYS`)."""


def _keys_text(width: int) -> Text:
    """Every key on as many bottom lines as `width` needs, never split inside a hint."""
    lines: list[str] = []
    for hint in KEY_HINTS:
        if lines and len(lines[-1]) + 3 + len(hint) <= width:
            lines[-1] += f" · {hint}"
        else:
            lines.append(hint)
    return Text("\n".join(lines))


def _clock_of(when: str | None) -> str:
    """``HH:MM:SS`` of a recorded process time (``?`` when missing)."""
    if not when:
        return "?"
    text = str(when)
    return text[11:19] if len(text) >= 19 and text[10] == "T" else text
