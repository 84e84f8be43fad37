"""The phase library: the logic that drives equipment for each phase type.

Every phase is restart-safe: it keeps its progress in ``ctx.progress`` (journaled),
so a held phase that is restarted continues where it stopped and never repeats a
step that is not idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.clock import ScaledClock
from controller.prompts import SCAN, PromptBoard, asked_entries
from controller.recorder import BatchRecorder
from controller.sampler import Sampler
from drivers import Device, DriverError
from ebr.record.kinds import Kind, intent_kind, result_kind
from recipes import ELAPSED, EntrySpec, Expr, Phase, Recipe, evaluate, tags_of


class PhaseFailed(Exception):
    """A phase cannot go on (instrument refused, condition failed); the batch holds."""


@dataclass
class PhaseContext:
    """What a running phase may use."""

    path: str
    phase: Phase
    alias: str
    device: Device
    recipe: Recipe
    parameters: dict[str, float]
    clock: ScaledClock
    recorder: BatchRecorder
    sampler: Sampler
    critical: asyncio.Lock
    prompts: PromptBoard
    coi: str
    units: dict[str, Device] = field(default_factory=dict)  # every bound unit, by alias
    progress: dict[str, Any] = field(default_factory=dict)

    def value(self, v: object) -> float:
        """A literal, a ``$parameter`` or a duration as a number (durations in seconds)."""
        try:
            return self.recipe.resolve(v, self.parameters)
        except (KeyError, TypeError) as exc:
            raise PhaseFailed(f"{self.path}: cannot use {v!r} as a number ({exc})") from None

    async def save_progress(self, **changes: Any) -> None:
        """Update and journal the phase's progress (what a restart resumes from)."""
        self.progress.update(changes)
        await self.recorder.record(Kind.PHASE_PROGRESS, element=self.path, progress=self.progress)


PhaseLogic = Callable[[PhaseContext], Coroutine[Any, Any, None]]


class JournalScope(Protocol):
    """Where a journaled action belongs: the element's path and the batch's recorder."""

    @property
    def path(self) -> str:
        """The element the action belongs to."""

    @property
    def recorder(self) -> BatchRecorder:
        """The batch's recorder."""


async def journaled(
    ctx: JournalScope,
    kind: str,
    intent: dict[str, Any],
    act: Callable[[], Awaitable[Any]],
    result_name: str,
    failure: str,
) -> Any:
    """Write-ahead for one action on an instrument: journal ``KIND.intent``, act, journal
    ``KIND.result`` (``ok`` and the result, or the error). The result names its intent
    (``intent``: its seq). A driver error fails the phase with ``failure: error``."""
    entry = await ctx.recorder.record(intent_kind(kind), element=ctx.path, **intent)
    key = {k: intent[k] for k in ("capability", "method") if k in intent}
    try:
        value = await act()
    except DriverError as exc:
        await ctx.recorder.record(
            result_kind(kind),
            element=ctx.path,
            intent=entry.seq,
            **key,
            ok=False,
            error=str(exc),
        )
        raise PhaseFailed(f"{ctx.path}: {failure}: {exc}") from exc
    await ctx.recorder.record(
        result_kind(kind),
        element=ctx.path,
        intent=entry.seq,
        **key,
        ok=True,
        **{result_name: value},
    )
    return value


async def write_setpoint(
    ctx: PhaseContext, capability: str, new: float, device: Device | None = None
) -> None:
    """Write one setpoint: journal the intent (with the old value), act (with read-back),
    journal the result. A critical section: a hold or stop waits for it, so an intent
    never lacks its result."""
    device = device or ctx.device
    async with ctx.critical:
        (old,) = await device.read([capability])
        intent = {
            "unit": device.name,
            "capability": capability,
            "old": old.value,
            "new": new,
            "eu": old.unit,
        }
        await journaled(
            ctx,
            "write",
            intent,
            lambda: device.write(capability, new),
            "readback",
            f"writing {capability} = {new} failed",
        )


async def hold_equipment(ctx: PhaseContext) -> None:
    """Holding logic: write the phase's ``on_hold`` setpoints (e.g. stop a pump),
    journaling the values they replace so that restart can put them back."""
    extra = HOLDING_LOGIC.get(ctx.phase.type)
    if extra is not None:
        await extra(ctx)
    on_hold: dict[str, object] = ctx.phase.args.get("on_hold") or {}  # type: ignore[assignment]
    if not on_hold or "held_from" in ctx.progress:
        return
    readings = await ctx.device.read(list(on_hold))
    await ctx.save_progress(held_from={r.capability: r.value for r in readings})
    for capability, raw in on_hold.items():
        await write_setpoint(ctx, capability, ctx.value(raw))


KEPT_ON_REPEAT = frozenset({"held_from"})
"""Progress a repeated phase keeps: what its holding logic changed, for restart to undo."""


async def restore_equipment(ctx: PhaseContext) -> None:
    """Restart logic: put back what the holding logic changed."""
    held_from: dict[str, float] = ctx.progress.get("held_from") or {}
    for capability, value in held_from.items():
        await write_setpoint(ctx, capability, value)
    if held_from:
        ctx.progress.pop("held_from")
        await ctx.save_progress()


async def run_setpoint(ctx: PhaseContext) -> None:
    """Write each setpoint in order; on restart skip the ones already written."""
    done: list[str] = ctx.progress.setdefault("written", [])
    for capability, raw in ctx.phase.args["set"].items():  # type: ignore[attr-defined]
        if capability in done:
            continue
        await write_setpoint(ctx, capability, ctx.value(raw))
        await ctx.save_progress(written=[*done, capability])
        done = ctx.progress["written"]


async def run_ramp(ctx: PhaseContext) -> None:
    """Ramp a setpoint in equal steps of process time; resumes at the step it reached."""
    capability = str(ctx.phase.args["capability"])
    target = ctx.value(ctx.phase.args["to"])
    duration = ctx.value(ctx.phase.args["duration"])
    steps = int(ctx.value(ctx.phase.args.get("steps", 20.0)))
    if "start" not in ctx.progress:
        (reading,) = await ctx.device.read([capability])
        if not isinstance(reading.value, int | float):
            raise PhaseFailed(f"{ctx.path}: {capability} has no numeric value to ramp from")
        await ctx.save_progress(start=float(reading.value), step=0)
    start = float(ctx.progress["start"])
    for step in range(int(ctx.progress["step"]) + 1, steps + 1):
        await ctx.clock.sleep(duration / steps)
        await write_setpoint(ctx, capability, start + (target - start) * step / steps)
        await ctx.save_progress(step=step)


async def run_hold_for(ctx: PhaseContext) -> None:
    """Keep conditions for a duration of process time (held time does not count)."""
    total = ctx.value(ctx.phase.args["duration"])
    elapsed = float(ctx.progress.get("elapsed_s", 0.0))
    started = ctx.clock.now()
    try:
        await ctx.clock.sleep(total - elapsed)
    finally:
        elapsed += (ctx.clock.now() - started).total_seconds()
        ctx.progress["elapsed_s"] = min(elapsed, total)
    await ctx.save_progress(elapsed_s=total)


async def run_wait_until(ctx: PhaseContext) -> None:
    """Wait until the phase's condition holds (``elapsed`` counts process time in this
    phase, held time excluded), or the timeout passes."""
    expr: Expr = ctx.phase.args["until"]  # type: ignore[assignment]
    waited = float(ctx.progress.get("waited_s", 0.0))
    started = ctx.clock.now()

    def value_of(tag: str) -> float | None:
        if tag == ELAPSED:
            return waited + (ctx.clock.now() - started).total_seconds()
        reading = ctx.sampler.latest.get(f"{ctx.alias}.{tag}")
        if reading is None or not isinstance(reading.value, int | float):
            return None
        return float(reading.value)

    def satisfied() -> bool:
        return evaluate(expr, value_of, ctx.value)

    values = {tag: _latest(ctx, f"{ctx.alias}.{tag}") for tag in sorted(tags_of(expr))}
    timeout = ctx.phase.args.get("timeout")
    try:
        wait = ctx.sampler.wait_for(satisfied)
        if timeout is None:
            await wait
        else:
            await ctx.clock.timeout(ctx.value(timeout) - waited, wait)
    except TimeoutError:
        values = {tag: _latest(ctx, f"{ctx.alias}.{tag}") for tag in sorted(tags_of(expr))}
        if ctx.phase.args.get("on_timeout", "fail") == "fail":
            raise PhaseFailed(f"{ctx.path}: {expr} not reached (values {values})") from None
        await ctx.recorder.record(
            Kind.CONDITION_TIMEOUT, element=ctx.path, condition=str(expr), values=values
        )
        return
    finally:
        ctx.progress["waited_s"] = waited + (ctx.clock.now() - started).total_seconds()
    values = {tag: _latest(ctx, f"{ctx.alias}.{tag}") for tag in sorted(tags_of(expr))}
    await ctx.recorder.record(
        Kind.CONDITION_MET,
        element=ctx.path,
        condition=str(expr),
        values=values,
        elapsed_s=value_of(ELAPSED),
    )


def _latest(ctx: PhaseContext, tag: str) -> Any:
    reading = ctx.sampler.latest.get(tag)
    return None if reading is None else reading.value


async def run_invoke(ctx: PhaseContext) -> None:
    """Call a device method once: never again after its intent was journaled."""
    method: str = ctx.phase.args["method"]  # type: ignore[assignment]
    raw_args: dict[str, object] = ctx.phase.args.get("args", {})  # type: ignore[assignment]
    args = {name: ctx.value(v) for name, v in raw_args.items()}
    if ctx.progress.get("done"):
        return
    if ctx.progress.get("called"):
        raise PhaseFailed(
            f"{ctx.path}: {method} was started but its result was not recorded; "
            "check the instrument before going on"
        )
    await _invoke(ctx, method, args)


async def _invoke(ctx: PhaseContext, method: str, args: dict[str, float]) -> None:
    await ctx.save_progress(called=True)
    await call_method(ctx, method, args)
    await ctx.save_progress(done=True)


async def call_method(
    ctx: PhaseContext, method: str, args: dict[str, float], device: Device | None = None
) -> Any:
    """Call a device method, journaling the intent before and the result after
    (a critical section: a hold waits for it)."""
    device = device or ctx.device
    async with ctx.critical:
        intent = {"unit": device.name, "method": method, "args": args}
        return await journaled(
            ctx,
            "method",
            intent,
            lambda: device.call(method, dict(args)),
            "result",
            f"{device.name}.{method} failed",
        )


async def _ask(
    ctx: PhaseContext, entries: dict[str, EntrySpec], expected: str | None = None
) -> Any:
    return await ctx.prompts.ask(
        ctx.recorder,
        element=ctx.path,
        kind=ctx.phase.type,
        text=str(ctx.phase.args["text"]),
        entries=entries,
        verify=bool(ctx.phase.args.get("verify", False)),
        expected=expected,
    )


async def run_operator_prompt(ctx: PhaseContext) -> None:
    """Show the instruction and collect the typed entries (an acknowledgement if none)."""
    if "answer" in ctx.progress:
        return
    answer = await _ask(ctx, asked_entries(ctx.phase))
    await ctx.save_progress(answer=answer.values)


async def run_identity_check(ctx: PhaseContext) -> None:
    """Scan a label; a mismatch with the batch's chain of identity is a hard stop."""
    if "answer" in ctx.progress:
        return
    answer = await _ask(ctx, asked_entries(ctx.phase, ctx.coi), expected=ctx.coi)
    scanned = str(answer.values[SCAN])
    if scanned != ctx.coi:
        await ctx.recorder.record(
            Kind.IDENTITY_MISMATCH,
            element=ctx.path,
            scanned=scanned,
            expected=ctx.coi,
            user=answer.user,
        )
        raise PhaseFailed(
            f"{ctx.path}: chain of identity mismatch: scanned {scanned!r}, batch is {ctx.coi!r}"
        )
    await ctx.recorder.record(Kind.IDENTITY_CONFIRMED, element=ctx.path, scanned=scanned)
    await ctx.save_progress(answer=answer.values)


async def _weight(balance: Device) -> float:
    (reading,) = await balance.read(["balance.weight"])
    if not isinstance(reading.value, int | float):
        raise PhaseFailed(f"{balance.name}: no weight reading ({reading.quality.value})")
    return float(reading.value)


async def run_transfer(ctx: PhaseContext) -> None:
    """Pump until the balance shows the target mass, slowing for the last 10 %.

    Restart-safe: the balance weight at the start is journaled, so after a hold or a
    crash only the remainder is pumped — a transfer never delivers twice.
    """
    args = ctx.phase.args
    pump, balance = ctx.units[str(args["pump"])], ctx.units[str(args["balance"])]
    target, rate = ctx.value(args["mass"]), ctx.value(args["rate"])
    tolerance = ctx.value(args.get("tolerance", 0.5))
    if "start_weight" not in ctx.progress:
        await ctx.save_progress(start_weight=await _weight(balance))
    start = float(ctx.progress["start_weight"])
    poll_s = max(1.0, 0.002 * ctx.clock.scale)  # 1 s of process time, 2 ms of wall time at least

    async def pump_to_target() -> float:
        delivered = await _weight(balance) - start
        if delivered >= target - tolerance:
            return delivered
        await write_setpoint(ctx, "pump.rate_sp", rate, pump)
        await call_method(ctx, "start", {}, pump)
        slowed = False
        while delivered < target - tolerance:
            await ctx.clock.sleep(poll_s)
            delivered = await _weight(balance) - start
            if not slowed and target - delivered < 0.1 * target:
                await write_setpoint(ctx, "pump.rate_sp", max(rate / 4, 1.0), pump)
                slowed = True
        await call_method(ctx, "stop", {}, pump)
        return delivered

    timeout = args.get("timeout")
    try:
        if timeout is None:
            delivered = await pump_to_target()
        else:
            delivered = await ctx.clock.timeout(ctx.value(timeout), pump_to_target())
    except TimeoutError:
        await call_method(ctx, "stop", {}, pump)
        raise PhaseFailed(f"{ctx.path}: transfer of {target} g not done in time") from None
    await ctx.recorder.record(
        Kind.TRANSFER_RESULT,
        element=ctx.path,
        pump=pump.name,
        balance=balance.name,
        target_g=target,
        delivered_g=round(delivered, 3),
        error_g=round(delivered - target, 3),
        start_weight_g=start,
    )
    await ctx.save_progress(delivered=delivered)


async def run_program(ctx: PhaseContext) -> None:
    """Write the program's setpoints, start it once, wait until the instrument reports
    it complete (an instrument alarm fails the phase); record what it reports."""
    args = ctx.phase.args
    program = int(ctx.value(args["program"]))
    written: list[str] = ctx.progress.setdefault("written", [])
    for capability, raw in (args.get("set") or {}).items():  # type: ignore[attr-defined]
        if capability not in written:
            await write_setpoint(ctx, capability, ctx.value(raw))
            await ctx.save_progress(written=[*written, capability])
            written = ctx.progress["written"]
    if not ctx.progress.get("done"):
        if ctx.progress.get("called"):
            raise PhaseFailed(
                f"{ctx.path}: program {program} was being started when the record stops; "
                "check the instrument before going on"
            )
        await _invoke(ctx, "start_program", {"program": program})
    poll_s = max(10.0, 0.02 * ctx.clock.scale)

    async def until_done() -> None:
        while True:
            complete, alarm = await ctx.device.read(["run.complete", "alarm.active"])
            if alarm.value:
                (code,) = (
                    await ctx.device.read(["alarm.code"])
                    if ctx.device.has("alarm.code")
                    else (alarm,)
                )
                raise PhaseFailed(f"{ctx.path}: {ctx.device.name} alarm (code {code.value})")
            if complete.value:
                return
            await ctx.clock.sleep(poll_s)

    timeout = args.get("timeout")
    if timeout is None:
        await until_done()
    else:
        try:
            await ctx.clock.timeout(ctx.value(timeout), until_done())
        except TimeoutError:
            raise PhaseFailed(f"{ctx.path}: program {program} did not complete in time") from None
    readable = [c for c, spec in ctx.device.profile.tags.items() if not spec.writable]
    report = {r.capability: r.value for r in await ctx.device.read(readable)}
    await ctx.recorder.record(
        Kind.PROGRAM_COMPLETE,
        element=ctx.path,
        unit=ctx.device.name,
        program=program,
        report=report,
    )


async def _stop_pump(ctx: PhaseContext) -> None:
    await call_method(ctx, "stop", {}, ctx.units[str(ctx.phase.args["pump"])])


async def _stop_program(ctx: PhaseContext) -> None:
    if ctx.progress.get("called"):
        await call_method(ctx, "stop", {})


#: What the equipment does when a phase of this type is held (besides ``on_hold``).
HOLDING_LOGIC: dict[str, PhaseLogic] = {"transfer": _stop_pump}
#: What the equipment does when a phase of this type is stopped or aborted.
STOP_LOGIC: dict[str, PhaseLogic] = {"transfer": _stop_pump, "run_program": _stop_program}


async def stop_equipment(ctx: PhaseContext) -> None:
    """Stop logic of a stopped or aborted phase (e.g. stop the pump, stop the program)."""
    logic = STOP_LOGIC.get(ctx.phase.type)
    if logic is not None:
        await logic(ctx)


PHASE_LOGIC: dict[str, PhaseLogic] = {
    "setpoint": run_setpoint,
    "ramp": run_ramp,
    "hold_for": run_hold_for,
    "wait_until": run_wait_until,
    "invoke": run_invoke,
    "operator_prompt": run_operator_prompt,
    "manual_sample": run_operator_prompt,
    "identity_check": run_identity_check,
    "transfer": run_transfer,
    "run_program": run_program,
}
