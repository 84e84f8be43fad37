"""Running one batch: the control recipe's procedure on ISA-88 state machines.

The batch and each active procedural element (unit procedure, operation, phase)
has its own state machine. Phase logic runs as a task; commands go to the batch
and act on the chain of active elements: hold, pause, stop and abort interrupt
the phase at a safe point (never inside a journaled intent/result pair),
restart and resume run it again from its journaled progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.alarms import ACKNOWLEDGED, ALARM_KINDS, OpenAlarm, follow_alarms
from controller.clock import ScaledClock
from controller.isa88 import FINAL_STATES, Command, Element, State
from controller.monitors import AlarmEvent, MonitorState
from controller.phases import (
    KEPT_ON_REPEAT,
    PHASE_LOGIC,
    PhaseContext,
    PhaseFailed,
    hold_equipment,
    journaled,
    restore_equipment,
    stop_equipment,
)
from controller.prompts import PromptBoard
from controller.recorder import BatchRecorder, iso
from controller.resume import ResumePoint
from controller.sampler import LinkEvent, RecordedTag, Sampler, declared_period
from controller.who import Who, local_terminal
from drivers import ConnectionStatus, Device, DriverError, same_value
from ebr import Entry
from ebr.people.duties import RULES
from ebr.people.signatures import SIGNATURE, entry_content, signature_data
from ebr.people.users import User
from ebr.record.kinds import Kind, failed_kind
from recipes import PHASE_TYPES, Flow, Operation, Phase, Recipe, UnitProcedure, tags_of

ENGINE = "engine"
REASONED = frozenset({Command.HOLD, Command.STOP, Command.ABORT, Command.RESTART})
"""Commands that need a non-empty reason (REASON-REQUIRED)."""


@dataclass
class ControlRecipe:
    """A master recipe made concrete for one batch: parameters, units, identity."""

    batch_id: str
    recipe: Recipe
    parameters: dict[str, float]
    units: dict[str, Device]  # equipment alias → bound device
    coi: str
    simulation: bool
    extra: dict[str, Any] = field(default_factory=dict)
    #: per unit name: ``reassert`` (default) or ``hold`` when its instrument restarted
    on_restart: dict[str, str] = field(default_factory=dict)


def _writer(unit: Device, capability: str, value: Any) -> Callable[[], Awaitable[Any]]:
    """The write of one value, for :func:`journaled`."""
    return lambda: unit.write(capability, value)


@dataclass(frozen=True, slots=True)
class _BatchScope:
    """Journaled actions of the batch itself (not of a phase), e.g. re-asserted writes."""

    path: str
    recorder: BatchRecorder


class BatchRun:
    """Executes a control recipe and records everything it does."""

    def __init__(
        self,
        control: ControlRecipe,
        recorder: BatchRecorder,
        clock: ScaledClock,
        resume: ResumePoint | None = None,
        prompts: PromptBoard | None = None,
    ) -> None:
        self.control = control
        self.recipe = control.recipe
        self.recorder = recorder
        self.clock = clock
        self.resume = resume
        self.prompts = prompts or PromptBoard()
        initial = State.HELD if resume is not None else State.IDLE
        self.batch = Element(control.batch_id, "batch", self._on_state, initial)
        self.chain: list[Element] = [self.batch]
        self.sampler = Sampler(
            recorder.journal, control.batch_id, self._recorded_tags(), clock, on_link=self._on_link
        )
        self.alarms: list[AlarmEvent] = []
        #: link outages of the units: unit, since, last_good, back, duration_s (process s)
        self.outages: list[dict[str, Any]] = []
        #: alarms raised and not yet acknowledged, by the seq of their `alarm.raised` entry
        self.open_alarms: dict[int, OpenAlarm] = dict(resume.alarms) if resume else {}
        recorder.listeners.append(self._follow_alarms)
        #: the last value written and read back, by (unit name, capability)
        self.written: dict[tuple[str, str], Any] = {}
        self._intents: dict[int, tuple[str, str]] = {}
        recorder.listeners.append(self._follow_writes)
        #: per unit: when its instrument last started, as it said at the last check
        self._known_start: dict[str, datetime | None] = {}
        self._unwatch: list[Callable[[], None]] = []
        #: wall seconds from a CPP value's instrument time to its monitor evaluation
        self.monitor_lateness: deque[float] = deque(maxlen=20_000)
        self._monitors = {
            f"{m.unit}.{m.tag}": MonitorState(m, f"{m.unit}.{m.tag}") for m in self.recipe.monitors
        }
        self._lock = asyncio.Lock()
        self._critical = asyncio.Lock()
        self._phase_tasks: dict[str, asyncio.Task[None]] = {}
        self._decisions: dict[str, asyncio.Future[Command]] = {}
        self._contexts: dict[str, PhaseContext] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.last_refusal: str | None = None
        self._skips: set[str] = set()  # phases skipped by an override (R7)
        self._forced: set[str] = set()  # running phases force-completed by an override
        #: held phases a supervisor repeats from their start: path → `step.repeated` seq
        self._repeats: dict[str, int] = {}
        self._entered: set[str] = set()  # phases this run has started
        #: the terminal of commands given without one (the engine, a local process)
        self.terminal = f"{local_terminal()} controller"
        self._waiting: set[asyncio.Task[Any]] = set()
        self._deadlines: set[str] = set()  # monitors whose delay is being timed
        self.state_changed = asyncio.Event()
        self.ready = asyncio.Event()  # set once the batch waits for or runs its first step
        self.watchers: list[Callable[[Element, State, State], None]] = []

    # -- what is recorded ------------------------------------------------------------

    def _recorded_tags(self) -> list[RecordedTag]:
        wanted: list[tuple[str, str]] = [(m.unit, m.tag) for m in self.recipe.monitors]
        for _path, up, _op, phase in self.recipe.procedure.walk():
            cond = phase.args.get("until")
            if cond is not None:
                wanted += [(up.unit, tag) for tag in sorted(tags_of(cond))]  # type: ignore[arg-type]
            if phase.type == "transfer":
                wanted.append((str(phase.args["balance"]), "balance.weight"))
                wanted.append((str(phase.args["pump"]), "pump.speed_pv"))
        cpps = {(m.unit, m.tag) for m in self.recipe.monitors}
        seen: dict[tuple[str, str], RecordedTag] = {}
        for alias, cap in wanted:
            device = self.control.units[alias]
            # CPPs are recorded at their declared period, whatever the server notifies.
            period, confirm = declared_period(device, cap) if (alias, cap) in cpps else (None, None)
            seen.setdefault((alias, cap), RecordedTag(alias, device, cap, period, confirm))
        return list(seen.values())

    async def _on_state(self, el: Element, src: State, dst: State, trigger: str) -> None:
        kind = Kind.BATCH_STATE if el is self.batch else Kind.ELEMENT_STATE
        await self.recorder.record(
            kind,
            element=el.path,
            level=el.level,
            **{"from": src.value},
            to=dst.value,
            trigger=trigger,
        )
        self.state_changed.set()
        for watch in self.watchers:
            watch(el, src, dst)

    def _on_reading(self, tag: str, reading: Any) -> None:
        monitor = self._monitors.get(tag)
        if monitor is None or not monitor.active:
            return
        at = reading.source_time or self.clock.now()
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        self.monitor_lateness.append((self.clock.now() - at).total_seconds() / self.clock.scale)
        event = monitor.update(reading, at)
        if event is not None:
            self._spawn(self._alarm(event))
        elif monitor.deadline is not None and tag not in self._deadlines:
            self._deadlines.add(tag)
            self._spawn(self._at_deadline(tag, monitor), waits=True)

    async def _at_deadline(self, tag: str, monitor: MonitorState) -> None:
        """Raise a pending breach when its delay runs out on the clock, even if the
        instrument sends no further value; re-armed while a breach stays pending."""
        try:
            while (deadline := monitor.deadline) is not None:
                await self.clock.sleep((deadline - self.clock.now()).total_seconds())
                event = monitor.check(self.clock.now())
                if event is not None:
                    await self._alarm(event)
                    return
        finally:
            self._deadlines.discard(tag)

    def _on_link(self, event: LinkEvent) -> None:
        self._spawn(self._instrument(event), waits=event.lost)

    def _watch_restarts(self) -> None:
        """Note each unit's start time now, and check for a restart after every
        reconnection the status masked (an outage is checked when it is journaled)."""
        for unit in {d.name: d for d in self.control.units.values()}.values():
            self._known_start[unit.name] = unit.instrument_started

            def recovered(masked: bool, unit: Device = unit) -> None:
                if masked:
                    self._spawn(self._check_restart(unit))

            self._unwatch.append(unit.watch_recovery(recovered))

    async def _instrument(self, event: LinkEvent) -> None:
        """Journal a unit's link lost / regained (when, last good values, duration); a
        link that stays down until it is judged failed holds the batch."""
        device = event.device
        if not event.lost:
            outage = next((o for o in reversed(self.outages) if o["unit"] == device), None)
            if outage is not None:
                outage.update(back=iso(event.at), duration_s=round(event.duration_s or 0.0, 3))
            await self.recorder.record(
                Kind.INSTRUMENT_RESTORED,
                unit=device,
                since=iso(event.since),
                down_process_s=round(event.duration_s or 0.0, 3),
            )
            back = next((d for d in self.control.units.values() if d.name == device), None)
            if back is not None:
                await self._check_restart(back)
            return
        self.outages.append(
            {
                "unit": device,
                "since": iso(event.since),
                "last_good": event.last_good,
                "back": None,
                "duration_s": None,
            }
        )
        await self.recorder.record(
            Kind.INSTRUMENT_LOST,
            unit=device,
            since=iso(event.since),
            silent_process_s=round((event.at - event.since).total_seconds(), 3),
            last_good=event.last_good,
        )
        unit = next((d for d in self.control.units.values() if d.name == device), None)
        if unit is None:
            return
        while unit.connection_status is ConnectionStatus.RECONNECTING:
            await self._link_change(unit)
        if unit.connection_status is ConnectionStatus.FAILED and self.batch.allows(Command.HOLD):
            await self.command(
                Command.HOLD,
                user=f"{ENGINE}:instrument {device}",
                reason=f"link to {device} failed",
            )

    async def _link_change(self, unit: Device) -> None:
        """Wait for the next change of a unit's connection status."""
        changed = asyncio.Event()
        unwatch = unit.watch_status(lambda _status: changed.set())
        try:
            await changed.wait()
        finally:
            unwatch()

    def _spawn(self, coro: Any, *, waits: bool = False) -> None:
        """Run ``coro`` beside the batch; one that ``waits`` (for a deadline or a link)
        is cancelled when the batch ends, the others are awaited."""
        task = asyncio.create_task(coro)
        pool = self._waiting if waits else self._background
        pool.add(task)
        task.add_done_callback(pool.discard)

    async def _alarm(self, event: AlarmEvent) -> None:
        self.alarms.append(event)
        await self.recorder.record(
            Kind.ALARM_RAISED if event.raised else Kind.ALARM_CLEARED,
            monitor=event.monitor,
            tag=event.tag,
            level=event.level,
            value=event.value,
            limit=event.limit,
            at=iso(event.at),
            action=event.action,
        )
        if event.raised and event.level == "action" and event.action in ("hold", "abort"):
            await self.command(
                Command(event.action),
                user=f"{ENGINE}:monitor {event.monitor}",
                reason=(
                    f"monitor {event.monitor}: {event.tag} = {event.value:g} beyond its "
                    f"action limit {event.limit:g}"
                    if event.value is not None and event.limit is not None
                    else f"monitor {event.monitor}: {event.tag} at action level"
                ),
            )

    def _follow_writes(self, entry: Entry) -> None:
        if entry.kind == Kind.WRITE_INTENT:
            self._intents[entry.seq] = (str(entry.data["unit"]), str(entry.data["capability"]))
        elif entry.kind == Kind.WRITE_RESULT:
            target = self._intents.pop(int(entry.data["intent"]), None)
            if target is not None and entry.data.get("ok"):
                self.written[target] = entry.data.get("readback")

    async def _check_restart(self, unit: Device) -> None:
        """After a unit's link came back: did the instrument restart (lose its state)?

        Told by the instrument itself where it can (OPC UA ``ServerStatus.StartTime``
        changed since the last check or the batch's start), else by reading back the
        setpoints last written to it (one that differs: it restarted). Journal that
        with the reason, then per the unit's policy re-assert the setpoints (journaled
        writes with the reason: every one after a new start time, the differing ones
        otherwise) or hold.
        """
        async with self._critical:
            started_before = self._known_start.get(unit.name)
            started = unit.instrument_started
            new_start = started_before is not None and started not in (None, started_before)
            if not new_start and started is not None:
                self._known_start[unit.name] = started  # first known: the baseline from now
            caps = sorted(c for (u, c) in self.written if u == unit.name)
            if not caps and not new_start:
                return
            try:
                found = await unit.read(caps) if caps else []
            except DriverError:
                return  # down again: the next return is checked, against the same start
            if started is not None:
                self._known_start[unit.name] = started
            differs = {
                r.capability: {"written": self.written[(unit.name, r.capability)], "found": r.value}
                for r in found
                if not same_value(r.value, self.written[(unit.name, r.capability)])
            }
            if not differs and not new_start:
                return
            if new_start and started_before is not None and started is not None:
                reason = (
                    f"server start time changed from {iso(_utc(started_before))} "
                    f"to {iso(_utc(started))}"
                )
            else:
                reason = "setpoint read back differs from the last written value"
            policy = self.control.on_restart.get(unit.name, "reassert")
            await self.recorder.record(
                Kind.INSTRUMENT_RESTARTED,
                unit=unit.name,
                differs=differs,
                policy=policy,
                reason=reason,
            )
            failed = None
            if policy == "reassert":
                scope = _BatchScope(self.batch.path, self.recorder)
                readings = {r.capability: r for r in found}
                for cap in caps if new_start else sorted(differs):
                    written = self.written[(unit.name, cap)]
                    intent = {
                        "unit": unit.name,
                        "capability": cap,
                        "old": readings[cap].value,
                        "new": written,
                        "eu": readings[cap].unit,
                        "reason": f"{unit.name} restarted: re-asserting the last written setpoint",
                    }
                    try:
                        await journaled(
                            scope,
                            "write",
                            intent,
                            _writer(unit, cap, written),
                            "readback",
                            f"re-asserting {cap} failed",
                        )
                    except PhaseFailed as exc:
                        failed = str(exc)
                        break
        if (policy == "hold" or failed is not None) and self.batch.allows(Command.HOLD):
            lost = " and lost its setpoints" if differs else f" ({reason})"
            await self.command(
                Command.HOLD,
                user=f"{ENGINE}:instrument {unit.name}",
                reason=failed or f"{unit.name} restarted{lost}",
            )

    def _follow_alarms(self, entry: Entry) -> None:
        if entry.kind in ALARM_KINDS:
            follow_alarms(self.open_alarms, entry)

    async def acknowledge(
        self, alarm: int, *, user: str, comment: str = "", who: Who | None = None
    ) -> bool:
        """Acknowledge an open alarm (the seq of its `alarm.raised` entry) for ``user``.

        Journals `alarm.acknowledged`; an alarm that is not open here is refused, and
        the refusal journaled like any refused command. Once the batch has ended its
        record is closed: nothing is acknowledged or journaled any more.
        """
        if self.batch.current in FINAL_STATES:
            return False  # the record is closed; the review shows what stayed unacknowledged
        who = who or Who(user, self.terminal)
        found = self.open_alarms.pop(alarm, None)  # taken now: a second ack is refused
        if found is None:
            await self.recorder.record(
                Kind.COMMAND_REFUSED,
                element=self.batch.path,
                command="acknowledge",
                state=self.batch.state,
                blocked_by=None,
                **who.fields(),
                reason=f"alarm {alarm} is not an open alarm of this batch",
            )
            return False
        try:
            await self.recorder.record(
                ACKNOWLEDGED,
                alarm=alarm,
                monitor=found.monitor,
                tag=found.tag,
                level=found.level,
                cleared=not found.active,
                **who.fields(),
                comment=comment,
            )
        except BaseException:
            self.open_alarms[alarm] = found  # not recorded: still open
            raise
        return True

    # -- commands -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The batch's ISA-88 state."""
        return self.batch.current

    def action_alarms(self) -> list[str]:
        """What blocks a restart (PERMISSIVE-ALARM): action-level alarms not yet
        acknowledged, and monitors whose value is at action level now."""
        blockers = [
            f"alarm {a.seq} ({a.monitor}, {'cleared' if a.cleared else 'active'}, unacknowledged)"
            for a in self.open_alarms.values()
            if a.level == "action"
        ]
        blockers += [
            f"monitor {m.monitor.name} at action level ({m.tag})"
            for m in self._monitors.values()
            if m.level == "action"
        ]
        return blockers

    async def _refuse(
        self, command: Command, element: str | None, who: Who, rule: str, detail: str
    ) -> bool:
        """Journal a command refused by a named rule (`command.refused` with `rule`)."""
        self.last_refusal = f"refused by {rule} ({RULES[rule]}): {detail}"
        await self.recorder.record(
            Kind.COMMAND_REFUSED,
            element=element or self.batch.path,
            command=command.value,
            state=self.batch.state,
            blocked_by=None,
            **who.fields(),
            reason=self.last_refusal,
            rule=rule,
        )
        return False

    async def command(
        self,
        command: Command,
        *,
        user: str = ENGINE,
        reason: str = "",
        element: str | None = None,
        override: bool = False,
        signer: User | None = None,
        who: Who | None = None,
    ) -> bool:
        """Apply an ISA-88 command to the batch, or to one active element (``element``:
        its path); a refusal is journaled with its reason and the state it met
        (`last_refusal` says why).

        Pause and resume act on the element and what runs under it. Hold, restart, stop
        and abort propagate upward: given to a phase, they act on the whole batch. Hold,
        stop, abort and restart need a reason (REASON-REQUIRED). Restart is refused while
        `action_alarms()` lists anything (PERMISSIVE-ALARM) unless `override`: a
        supervisor's privileged override (R7), journaled as `command.override` naming
        what it bypassed and, on a GMP plant, signed by `signer` (authenticated and
        role-checked by the caller). `who` (default: `user` at this process's terminal)
        is stamped into every entry: user ID, printed name, terminal, software (R2, R8).
        """
        self.last_refusal = None
        who = who or Who(user, self.terminal)
        if command in REASONED and not reason.strip():
            return await self._refuse(
                command, element, who, "REASON-REQUIRED", f"{command.value} needs a reason"
            )
        blockers = self.action_alarms() if command is Command.RESTART else []
        if blockers and not override:
            return await self._refuse(
                command,
                element,
                who,
                "PERMISSIVE-ALARM",
                f"{', '.join(blockers)}; acknowledge and correct first, or a supervisor "
                "overrides with a signature",
            )
        if blockers and command is Command.RESTART and self.batch.allows(command):
            await self._override(command, who, reason, "PERMISSIVE-ALARM", blockers, signer)
        async with self._lock:
            target = self._element(element)
            scoped = (
                target is not None
                and target is not self.batch
                and command
                in (
                    Command.PAUSE,
                    Command.RESUME,
                )
            )
            # An element must allow the command itself, and so must the batch when the
            # command propagates to it; a scoped pause or resume needs its parents running.
            judges = [] if target is None else [target] if scoped else [target, self.batch]
            blocked = next((el for el in judges if not el.allows(command)), None)
            if scoped and blocked is None and target is not None:
                blocked = next(
                    (el for el in self._ancestors(target) if el.current is not State.RUNNING),
                    None,
                )
            if target is None or blocked is not None:
                await self.recorder.record(
                    Kind.COMMAND_REFUSED,
                    element=element or self.batch.path,
                    command=command.value,
                    state=None if blocked is None else blocked.state,
                    blocked_by=None if blocked is None else blocked.path,
                    **who.fields(),
                    reason=(
                        f"{element} is not an active element"
                        if blocked is None
                        else f"{command.value} is not allowed: {blocked.path} is {blocked.state}"
                    ),
                )
                return False
            await self.recorder.record(
                Kind.COMMAND_ACCEPTED,
                element=target.path,
                command=command.value,
                state=target.state,
                **who.fields(),
                reason=reason,
                scope="element" if scoped else "batch",
            )
            scope = self._subtree(target) if scoped else self.chain
            if command in (Command.HOLD, Command.PAUSE, Command.STOP, Command.ABORT):
                await self._interrupt(command, scope)
            elif command in (Command.RESTART, Command.RESUME):
                await self._continue(command, scope)
            else:
                await self.batch.apply(command.value)
            return True

    async def _override(
        self,
        command: Command,
        who: Who,
        reason: str,
        rule: str,
        bypassed: list[str],
        signer: User | None,
    ) -> None:
        """Journal a privileged override (R7) and, when there is a signer, their signature
        over it (meaning performed); review lists it as an exception (rule override)."""
        entry = await self.recorder.record(
            Kind.COMMAND_OVERRIDE,
            element=self.batch.path,
            command=command.value,
            **who.fields(),
            reason=reason,
            rule=rule,
            bypassed=bypassed,
        )
        if signer is not None:
            subject = {"type": "entry", "seq": entry.seq}
            data = signature_data(signer, "performed", subject, entry_content(entry), reason)
            await self.recorder.record(SIGNATURE, **data)

    async def override_step(
        self,
        action: str,
        path: str,
        *,
        who: Who,
        reason: str,
        signer: User | None = None,
    ) -> bool:
        """A supervisor's privileged override of one phase (R7), journaled (`step.forced`
        / `step.skipped` / `step.repeated` with the reason, and the signer's signature on
        a GMP plant); review lists it. `force` completes the running phase `path` now (its
        logic is cancelled at a safe point); `skip` completes a phase that has not
        started, without running it, when the procedure reaches it; `repeat` takes a held
        phase back to its start: its journaled progress is discarded and the next restart
        runs it again from the beginning with the same parameters (`step.repeat_ended`
        records how that run ended). A phase type that is not idempotent (a method call,
        a transfer, an instrument program) is repeated only where the recipe declares the
        phase ``repeatable: true`` (REPEAT-NOT-IDEMPOTENT). Refused (journaled,
        `last_refusal`) without a reason or for a path the action does not fit."""
        self.last_refusal = None
        if not reason.strip():
            return await self._refuse_step(action, path, who, "REASON-REQUIRED", "needs a reason")
        phases = {
            f"{up.name}/{op.name}/{ph.name}": ph for _p, up, op, ph in self.recipe.procedure.walk()
        }
        if action == "force":
            task = self._phase_tasks.get(path)
            el = next((e for e in self.chain if e.path == path), None)
            if task is None or task.done() or el is None or el.current is not State.RUNNING:
                return await self._refuse_step(action, path, who, "OVERRIDE", "not a running phase")
        elif action == "skip":
            started = path in self._entered or self._completed_before(path)
            if path not in phases or started or path in self._skips:
                return await self._refuse_step(
                    action, path, who, "OVERRIDE", "not a phase still to come"
                )
        elif action == "repeat":
            return await self._repeat(path, phases.get(path), who, reason, signer)
        else:
            return await self._refuse_step(action, path, who, "OVERRIDE", "force, skip or repeat")
        kind = Kind.STEP_FORCED if action == "force" else Kind.STEP_SKIPPED
        entry = await self.recorder.record(kind, element=path, **who.fields(), reason=reason)
        await self._sign_override(entry, signer, reason)
        if action == "skip":
            self._skips.add(path)
            return True
        self._forced.add(path)
        async with self._critical:
            task = self._phase_tasks.get(path)
            if task is not None and not task.done():
                task.cancel()
        return True

    async def _sign_override(self, entry: Entry, signer: User | None, reason: str) -> None:
        if signer is not None:
            subject = {"type": "entry", "seq": entry.seq}
            data = signature_data(signer, "performed", subject, entry_content(entry), reason)
            await self.recorder.record(SIGNATURE, **data)

    async def _repeat(
        self, path: str, phase: Phase | None, who: Who, reason: str, signer: User | None
    ) -> bool:
        """`override_step("repeat")`: the phase must be active and Held (the batch held
        after it failed, or by a command); on restart it runs again from its start."""
        async with self._lock:
            el = next((e for e in self.chain if e.path == path), None)
            ctx = self._contexts.get(path)
            if phase is None or el is None or ctx is None or el.current is not State.HELD:
                return await self._refuse_step(
                    "repeat", path, who, "OVERRIDE", "not a held phase (hold the batch first)"
                )
            task = self._phase_tasks.get(path)
            if task is not None and task.done() and not task.cancelled() and not task.exception():
                # Its logic ended just as the hold came: restart completes it, it would
                # not run again.
                return await self._refuse_step(
                    "repeat", path, who, "OVERRIDE", "its logic has already completed"
                )
            if not PHASE_TYPES[phase.type].idempotent and not phase.args.get("repeatable"):
                return await self._refuse_step(
                    "repeat",
                    path,
                    who,
                    "REPEAT-NOT-IDEMPOTENT",
                    f"a {phase.type} phase acts once; the recipe does not declare it repeatable",
                )
            # The holding logic's memory stays: restart still puts its setpoints back.
            kept = {k: v for k, v in ctx.progress.items() if k in KEPT_ON_REPEAT}
            entry = await self.recorder.record(
                Kind.STEP_REPEATED,
                element=path,
                **who.fields(),
                reason=reason,
                discarded={k: v for k, v in ctx.progress.items() if k not in kept},
            )
            await self._sign_override(entry, signer, reason)
            ctx.progress.clear()
            ctx.progress.update(kept)
            self._repeats[path] = entry.seq
        return True

    async def _repeat_ended(self, path: str, outcome: str) -> None:
        """Journal how a repeated phase's run ended (the result of its `step.repeated`)."""
        seq = self._repeats.pop(path, None)
        if seq is not None:
            await self.recorder.record(
                Kind.STEP_REPEAT_ENDED, element=path, repeat=seq, outcome=outcome
            )

    async def _refuse_step(self, action: str, path: str, who: Who, rule: str, why: str) -> bool:
        self.last_refusal = f"refused by {rule} ({RULES[rule]}): {action} {path}: {why}"
        await self.recorder.record(
            Kind.COMMAND_REFUSED,
            element=path,
            command=action,
            state=self.batch.state,
            blocked_by=None,
            **who.fields(),
            reason=self.last_refusal,
            rule=rule,
        )
        return False

    def _element(self, path: str | None) -> Element | None:
        if path is None or path == self.batch.path:
            return self.batch
        return next((el for el in self.chain if el.path == path), None)

    def _ancestors(self, el: Element) -> list[Element]:
        """The batch and the active elements above ``el``."""
        return [self.batch] + [
            a for a in self.chain if a is not self.batch and el.path.startswith(a.path + "/")
        ]

    def _subtree(self, top: Element) -> list[Element]:
        """``top`` and every active element under it (in entry order)."""
        prefix = top.path + "/"
        return [el for el in self.chain if el is top or el.path.startswith(prefix)]

    async def _interrupt(self, command: Command, scope: list[Element]) -> None:
        paths = {el.path for el in scope}
        # Stop the phase logic first, at a safe point (no intent is left without its
        # result), so that nothing more happens while the states are being journaled.
        async with self._critical:
            tasks = [t for p, t in self._phase_tasks.items() if p in paths and not t.done()]
            for task in tasks:
                task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for el in scope:
            if el.allows(command):
                await el.apply(command.value)
        if command is Command.HOLD:
            await self._equipment_logic("holding", hold_equipment, paths)
        elif command in (Command.STOP, Command.ABORT):
            await self._equipment_logic("stopping", stop_equipment, paths)
        for el in reversed(scope):
            await el.apply("finish")
        if command in (Command.STOP, Command.ABORT):
            self._decide(command, paths)

    async def _continue(self, command: Command, scope: list[Element]) -> None:
        paths = {el.path for el in scope}
        for el in scope:
            if el.allows(command):
                await el.apply(command.value)
        if command is Command.RESTART:
            await self._equipment_logic("restarting", restore_equipment, paths)
            for el in reversed(scope):
                await el.apply("finish")
        self._decide(command, paths)

    async def _equipment_logic(
        self, what: str, logic: Callable[[PhaseContext], Awaitable[None]], paths: set[str]
    ) -> None:
        """Run holding, restart or stop logic for the active phases in ``paths``; a failure
        is journaled and leaves the batch where the state model puts it."""
        for ctx in [c for p, c in self._contexts.items() if p in paths]:
            try:
                await logic(ctx)
            except (DriverError, PhaseFailed) as exc:
                await self.recorder.record(failed_kind(what), element=ctx.path, error=str(exc))

    def _decide(self, command: Command, paths: set[str]) -> None:
        for path, decision in self._decisions.items():
            if path not in paths:
                continue
            if not decision.done():
                decision.set_result(command)

    # -- execution ----------------------------------------------------------------------

    async def run(self) -> State:
        """Run the procedure to its end; returns the batch's final state."""
        self.sampler.listen(self._on_reading)
        self._watch_restarts()
        await self.sampler.start()
        try:
            if self.resume is None:
                await self.command(Command.START, user=ENGINE)
                await self._activate_monitors(None)
            else:
                await self._restore(self.resume)
            procedure = self.recipe.procedure
            ups = {up.name: up for up in procedure.unit_procedures}
            if await self._run_flow(procedure.steps, lambda n: self._run_unit_procedure(ups[n])):
                async with self._lock:
                    await self.batch.apply("complete")
        finally:
            await self._wind_down()
        return self.state

    async def _wind_down(self) -> None:
        """The last samples, then every task of the batch ended — even when the store
        refuses those last entries (store down, or the unit lease lost to another
        controller): the refusal is raised once everything has stopped."""
        ended = self.clock.now()
        try:
            if not await self.sampler.drain(ended):
                await self.recorder.record(
                    Kind.SAMPLES_INCOMPLETE,
                    until=iso(ended),
                    reason="instruments did not deliver values up to the end of the batch",
                )
        finally:
            try:
                await self.sampler.stop()
            finally:
                for unwatch in self._unwatch:
                    unwatch()
                # Phase logic still running here was cut off (the run cancelled: its
                # controller let go of the batch): it ends with the rest.
                cut_off = [*self._waiting, *self._phase_tasks.values()]
                for task in cut_off:
                    task.cancel()
                    task.add_done_callback(_consume)  # even if this wait is cut short too
                for task in cut_off:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                for task in list(self._background):
                    with contextlib.suppress(Exception):
                        await task

    async def _restore(self, point: ResumePoint) -> None:
        """Come back Held where the journal says the batch stood; restart continues."""
        now = self.clock.now()
        for m in self._monitors.values():
            if m.monitor.name in point.monitors:
                m.active_since = now
        await self.recorder.record(
            Kind.BATCH_RESTORED,
            state=State.HELD.value,
            was=point.last_state.value,
            active=point.active,
            completed=sorted(point.completed),
            monitors=point.monitors,
        )

    async def _enter(self, path: str, level: str) -> Element | None:
        """Start a child element once the batch runs; None when the batch ended instead.

        On a resumed batch, an element that was active comes back Held: it restarts
        with the batch.
        """
        if self.resume is not None and path in self.resume.active:
            self.resume.active.remove(path)
            el = Element(path, level, self._on_state, State.HELD)
            self.chain.append(el)
            return el
        while True:
            async with self._lock:
                if self.state in FINAL_STATES:
                    return None
                if self.state is State.RUNNING:
                    el = Element(path, level, self._on_state)
                    self.chain.append(el)
                    await el.apply("start")
                    await self._activate_monitors(path)
                    return el
            self.ready.set()
            await self._state_change()

    async def _activate_monitors(self, started: str | None) -> None:
        """Monitors watch from the start of their ``active_from`` operation (or the batch)."""
        names = [
            m.monitor.name
            for m in self._monitors.values()
            if not m.active and m.monitor.active_from == started
        ]
        if names:
            now = self.clock.now()
            for m in self._monitors.values():
                if m.monitor.name in names:
                    m.active_since = now
            await self.recorder.record(
                Kind.MONITORS_ACTIVE, monitors=names, element=started, since=iso(now)
            )

    async def _leave(self, el: Element) -> bool:
        """Complete an element whose work is done (waiting out a hold or pause first);
        False when it ended otherwise (stopped, aborted)."""
        while True:
            async with self._lock:
                if el.current is State.RUNNING or el.current in FINAL_STATES:
                    completed = el.current is State.RUNNING
                    if completed:
                        await el.apply("complete")
                    self.chain.remove(el)
                    el.release()
                    return completed
            # Waiting for a command (e.g. restored Held with all its children done).
            self.ready.set()
            await self._state_change()

    async def _state_change(self) -> None:
        self.state_changed.clear()
        await self.state_changed.wait()

    def _completed_before(self, path: str) -> bool:
        """True for an element a resumed batch had already completed."""
        return self.resume is not None and path in self.resume.completed

    async def _run_flow(self, flow: Flow, run_child: Callable[[str], Awaitable[bool]]) -> bool:
        """Run steps in order; a parallel block runs its branches at once and joins them.
        False as soon as the batch ended otherwise (stopped, aborted)."""
        for step in flow:
            if isinstance(step, str):
                ok = await run_child(step)
            else:
                results = await asyncio.gather(
                    *(self._run_flow(branch, run_child) for _name, branch in step.branches)
                )
                ok = all(results)
            if not ok:
                return False
        return True

    async def _run_unit_procedure(self, up: UnitProcedure) -> bool:
        if self._completed_before(up.name):
            return True
        el = await self._enter(up.name, "unit_procedure")
        if el is None:
            return False
        ops = {op.name: op for op in up.operations}
        ok = await self._run_flow(up.steps, lambda n: self._run_operation(up, ops[n]))
        return await self._leave(el) and ok

    async def _run_operation(self, up: UnitProcedure, op: Operation) -> bool:
        if self._completed_before(f"{up.name}/{op.name}"):
            return True
        el = await self._enter(f"{up.name}/{op.name}", "operation")
        if el is None:
            return False
        phases = {phase.name: phase for phase in op.phases}
        ok = await self._run_flow(op.steps, lambda n: self._run_phase(up, op, phases[n]))
        return await self._leave(el) and ok

    async def _run_phase(self, up: UnitProcedure, op: Operation, phase: Phase) -> bool:
        path = f"{up.name}/{op.name}/{phase.name}"
        if self._completed_before(path) or path in self._skips:
            return True  # done before an interruption, or skipped by an override
        self._entered.add(path)
        el = await self._enter(path, "phase")
        if el is None:
            return False
        ctx = PhaseContext(
            path=path,
            phase=phase,
            alias=up.unit,
            device=self.control.units[up.unit],
            recipe=self.recipe,
            parameters=self.control.parameters,
            clock=self.clock,
            recorder=self.recorder,
            sampler=self.sampler,
            critical=self._critical,
            prompts=self.prompts,
            coi=self.control.coi,
            units=self.control.units,
            progress=self._resumed_progress(path, phase),
        )
        self._contexts[path] = ctx
        try:
            return await self._drive_phase(el, ctx)
        finally:
            self._phase_tasks.pop(path, None)
            self._decisions.pop(path, None)
            self._contexts.pop(path, None)

    async def _drive_phase(self, el: Element, ctx: PhaseContext) -> bool:
        """Run a phase's logic until it completes, re-running it after each restart."""
        path, loop = ctx.path, asyncio.get_running_loop()
        logic = PHASE_LOGIC[ctx.phase.type]
        if el.current is State.HELD:  # restored after an interruption: wait for restart
            self._decisions[path] = decision = loop.create_future()
            self.ready.set()
            if await decision in (Command.STOP, Command.ABORT):
                await self._leave(el)
                return False
        while True:
            self.ready.set()
            self._decisions[path] = decision = loop.create_future()
            self._phase_tasks[path] = task = asyncio.create_task(logic(ctx))
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:  # the run is cut off: its phase logic with it
                task.cancel()
                task.add_done_callback(_consume)
                raise
            if task.cancelled() and path in self._forced:  # force-completed (override)
                self._forced.discard(path)
                await self._repeat_ended(path, "forced")
                return await self._leave(el)
            if not task.cancelled() and task.exception() is None:
                # Done; if a command arrived just as the logic ended, _leave waits for
                # the operator's decision (the logic's progress makes it final).
                await self._repeat_ended(path, "complete")
                return await self._leave(el)
            if not task.cancelled():
                error = task.exception()
                await self._repeat_ended(path, f"failed: {error}")
                await self._phase_failed(path, error)
            if (ended := await decision) in (Command.STOP, Command.ABORT):
                await self._repeat_ended(path, f"ended by {ended.value}")
                await self._leave(el)
                return False

    def _resumed_progress(self, path: str, phase: Phase) -> dict[str, Any]:
        if self.resume is None:
            return {}
        progress = dict(self.resume.progress.get(path, {}))
        if phase.type == "hold_for":
            # Time run before the interruption counts; the interruption itself does not.
            ran = self.resume.running_s.get(path, 0.0)
            progress["elapsed_s"] = max(float(progress.get("elapsed_s", 0.0)), ran)
        return progress

    async def _phase_failed(self, path: str, exc: BaseException | None) -> None:
        reason = str(exc) if isinstance(exc, PhaseFailed) else f"{type(exc).__name__}: {exc}"
        await self.recorder.record(Kind.PHASE_FAILED, element=path, error=reason)
        # If the batch is already holding or stopping, the refusal is journaled and the
        # operator's next command decides.
        await self.command(Command.HOLD, user=ENGINE, reason=reason)


def _utc(at: datetime) -> datetime:
    """``at`` in UTC (an instrument may send naive UTC or an aware time)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _consume(task: asyncio.Task[Any]) -> None:
    """Take a finished task's outcome (an ended batch's logic: nobody waits for it)."""
    if not task.cancelled():
        task.exception()
