"""The controller: plant, store and devices for one process, and batches on them.

One ``Controller`` runs any number of batches side by side; a unit belongs to
one batch from allocation to release (arbitration), never to two.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import getpass
import hashlib
import logging
import math
import platform
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller import __version__
from controller.batch import ENGINE, BatchRun, ControlRecipe
from controller.clock import ScaledClock, real_clock
from controller.contracts import check_devices, recipe_needs
from controller.isa88 import Command, State
from controller.plant import Plant, UnitConfig
from controller.prompts import PromptBoard
from controller.publish import Publisher
from controller.recorder import BatchRecorder, iso
from controller.resume import load_resume_point
from controller.storage import storage_line
from drivers import Device, DevicePool
from ebr import EbrError, Journal, JournalCommitError, Store
from ebr.people.duties import RULES, DutyRefused, check_may_act
from ebr.people.lifecycle import RecipeId, recipe_status
from ebr.people.signatures import SIGNATURE, entry_content, signature_data
from ebr.people.users import User
from ebr.record.errors import FencedError
from ebr.record.kinds import Kind
from ebr.record.leases import (
    DEFAULT_TTL_S,
    Lease,
    LeaseHeldError,
    acquire,
    renew,
    this_process,
)
from ebr.record.leases import release as release_leases
from ebr.record.ledger import append_site
from recipes import Recipe


def pinned_file(path: str) -> dict[str, Any]:
    """A configuration file's SHA-256 and content (empty when it is not a readable file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    return {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "content": text}


UNIT_ALARM = "alarm.active"
UNIT_ALARM_CODE = "alarm.code"
UNIT_SERIAL = "device.serial"
"""The capability through which an instrument reports its serial number (optional in a
profile: OPC UA DI's DeviceIdentification SerialNumber node, Modbus string registers)."""


class BatchSetupError(Exception):
    """A batch cannot be created (bad parameter, no free unit, instrument unreachable)."""


_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ParameterValue:
    """A formula parameter as the batch runs it."""

    name: str
    value: float
    unit: str
    master: float
    changed: bool


def new_batch_id(now: datetime | None = None) -> str:
    """A unique, sortable, human-readable batch ID."""
    now = now or datetime.now(UTC)
    return f"CB-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4).upper()}"


def resolve_parameters(recipe: Recipe, overrides: dict[str, float]) -> list[ParameterValue]:
    """The formula with per-batch overrides, each checked against its limits."""
    unknown = sorted(set(overrides) - set(recipe.formula))
    if unknown:
        raise BatchSetupError(f"unknown parameter(s): {', '.join(unknown)}")
    values = []
    for name, p in recipe.formula.items():
        value = overrides.get(name, p.value)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise BatchSetupError(f"parameter {name} must be a finite number")
        if (p.min is not None and value < p.min) or (p.max is not None and value > p.max):
            raise BatchSetupError(
                f"parameter {name} = {value} {p.unit} is outside its limits "
                f"[{p.min}, {p.max}] {p.unit}"
            )
        values.append(ParameterValue(name, value, p.unit, p.value, value != p.value))
    return values


async def _hold_in_safe_state(run: BatchRun, problem: str) -> None:
    """Hold a batch while the store cannot commit; its holding logic acts at once."""
    try:
        async with run.recorder.unacknowledged():
            await run.command(Command.HOLD, user=ENGINE, reason=problem)
    except Exception as exc:  # the batch's own task reports its end; say this one too
        _log.error("batch %s could not be held: %s", run.control.batch_id, exc)


class Controller:
    """Owns the store, the device connections and the unit allocations of one process."""

    def __init__(
        self,
        plant: Plant,
        store_url: str,
        *,
        user: str | None = None,
        prompts: PromptBoard | None = None,
        lease_ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        """Nothing opens until `start()`. `lease_ttl_s`: how long a unit lease outlives
        this process's last renewal (renewed every third of it): how soon another
        controller may take a unit over once this one is gone or paused."""
        self.plant = plant
        self.lease_ttl_s = lease_ttl_s
        self.prompts = prompts or PromptBoard()
        self.store_url = store_url
        self.user = user or getpass.getuser()
        self.pool = DevicePool()
        self.store: Store | None = None
        self.journal: Journal | None = None
        self.clock: ScaledClock | None = None
        self.allocations: dict[str, str] = {}  # unit name → batch ID
        self.holder = this_process(f"({plant.name})")
        self.leases: dict[str, list[Lease]] = {}  # batch ID → its units' leases in the store
        self._renewer: asyncio.Task[None] | None = None
        self._storage_watch: asyncio.Task[None] | None = None
        self._devices: dict[str, Device] = {}
        self._running: dict[str, tuple[BatchRun, asyncio.Task[State]]] = {}
        self.lost: dict[str, str] = {}
        """batch ID → why: batches whose leases another controller took over; this
        process stopped driving them (it could record nothing more for them)."""
        #: live data to the plant's MQTT broker (the plant file's ``[mqtt]``), if any
        self.publisher: Publisher | None = None

    async def start(self) -> None:
        """Open the store, start the journal writer and the MQTT publisher (if any)."""
        self.store = Store.open(self.store_url)
        self.journal = Journal(self.store)
        await self.journal.start()
        if self.plant.mqtt is not None:
            self.publisher = Publisher(self.plant.mqtt, self.plant.name)
            await self.publisher.start()
        self._renewer = asyncio.create_task(self._renew_leases(), name="unit-leases")
        self._storage_watch = asyncio.create_task(self._watch_storage(), name="storage-watch")

    async def _watch_storage(self) -> None:
        """When the store cannot commit, hold every running batch, saying why.

        The hold and its holding logic act at once, driving the instruments to their
        safe state: their entries count as recorded once chained in the journal's
        memory, intents ahead of actions (`BatchRecorder.unacknowledged`), and are
        committed in that order when the store commits again. Everything else waits
        for its commit (nothing acknowledged is lost). A person restarts."""
        holding: set[asyncio.Task[None]] = set()
        failing = False
        while True:
            await asyncio.sleep(0.5)
            journal = self.journal
            problem = journal.storage_problem if journal is not None else None
            if problem is None or journal is None:
                if failing:
                    _log.warning("STORAGE: the store commits again; held batches wait for restart")
                failing = False
                continue
            if failing:
                continue
            failing = True
            _log.warning("%s", storage_line(problem, journal.storage_problem_since))
            for run, task in list(self._running.values()):
                if not task.done():
                    hold = asyncio.create_task(_hold_in_safe_state(run, problem))
                    holding.add(hold)
                    hold.add_done_callback(holding.discard)

    async def _renew_leases(self) -> None:
        """Keep this process's unit leases alive (a crash lets them expire); let go of a
        batch whose lease was taken over (this process was paused or cut off past the
        lease's expiry and another controller took the batch: its commits are fenced)."""
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            held = [lease for leases in self.leases.values() for lease in leases]
            if not held or self.store is None:
                continue
            try:
                lost = await asyncio.to_thread(
                    renew, self.store, held, self.holder, ttl_s=self.lease_ttl_s
                )
            except Exception as exc:  # the store is down: a lost lease is fenced at commit
                _log.warning("unit leases not renewed: %s", exc)
                continue
            for batch_id in {lease.batch_id for lease in lost}:
                self._let_go(batch_id, [lease.unit for lease in lost if lease.batch_id == batch_id])

    def _let_go(self, batch_id: str, units: list[str]) -> None:
        """Stop driving a batch another controller took over (nothing can be journaled)."""
        why = f"unit(s) {', '.join(units)} taken over by another controller"
        _log.error("batch %s: %s; this controller stops driving it", batch_id, why)
        self.lost[batch_id] = why
        self.leases.pop(batch_id, None)  # theirs now: never released by us
        self.release(batch_id)  # the journal's fence stays: it refuses whatever is left
        running = self._running.get(batch_id)
        if running is not None:
            running[1].cancel()

    async def stop(self) -> None:
        """Hold every running batch, flush the journal, close the store and connections.

        The batches are held and wound down side by side: each waits (bounded) for its
        instruments' last values, so one after another would take that wait N times."""
        active = [(run, task) for run, task in self._running.values() if not task.done()]

        async def hold(run: BatchRun) -> None:
            with contextlib.suppress(Exception):  # bounded: the store may be down
                await asyncio.wait_for(run.command(Command.HOLD, reason="controller stopping"), 60)

        await asyncio.gather(*(hold(run) for run, _task in active))
        for _run, task in active:
            task.cancel()
        if active:
            await asyncio.wait({task for _run, task in active})
        for background in (self._renewer, self._storage_watch):
            if background is not None:
                background.cancel()
                await asyncio.wait({background})
        if self.journal is not None:
            await self.journal.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        for batch_id in list(self.leases):
            with contextlib.suppress(Exception):
                self.release(batch_id)
        await self.pool.close()
        if self.store is not None:
            self.store.close()

    async def device(self, unit: UnitConfig) -> Device:
        """The connected device of a plant unit."""
        device = self._devices.get(unit.name)
        if device is None:
            device = self.pool.open(
                unit.name, unit.profile, unit.endpoint, unit.address, unit.connection
            )
            await device.connect()
            self._devices[unit.name] = device
        return device

    async def _clock_from(self, devices: list[Device]) -> ScaledClock:
        """Simulation: the instruments' scaled clock; production: real time. Instruments
        that send no timestamps are stamped with it on receipt."""
        clock = await self._find_clock(devices)
        self.pool.now = clock.now
        return clock

    async def _find_clock(self, devices: list[Device]) -> ScaledClock:
        if self.clock is not None:
            return self.clock
        if not self.plant.simulation:
            self.clock = real_clock()
            return self.clock
        for device in devices:
            if device.has("simulation.epoch") and device.has("simulation.time_scale"):
                epoch, scale = await device.read(["simulation.epoch", "simulation.time_scale"])
                when = epoch.value
                if not isinstance(when, datetime) or not isinstance(scale.value, int | float):
                    raise BatchSetupError(f"{device.name}: simulation clock unreadable")
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                self.clock = ScaledClock(float(scale.value), when)
                return self.clock
        self.clock = ScaledClock(self.plant.time_scale)
        return self.clock

    async def _allocate(self, recipe: Recipe, batch_id: str) -> dict[str, UnitConfig]:
        """Bind free units of the recipe's classes: free here AND leased to this process
        in the store (another process's live lease skips the unit, naming its holder)."""
        chosen: dict[str, UnitConfig] = {}
        try:
            for alias, req in recipe.equipment.items():
                held_elsewhere: list[str] = []
                for unit in self.plant.units:
                    if (
                        unit.equipment_class != req.equipment_class
                        or unit.name in self.allocations
                        or unit in chosen.values()
                    ):
                        continue
                    try:
                        await self._lease(batch_id, [unit.name])
                    except LeaseHeldError as exc:
                        held_elsewhere.append(str(exc))
                        continue
                    chosen[alias] = unit
                    self.allocations[unit.name] = batch_id
                    break
                else:
                    busy = ", ".join(sorted(self.allocations)) or "none"
                    raise BatchSetupError(
                        f"no free unit of class {req.equipment_class!r} for {alias!r} "
                        f"(busy here: {busy}" + "".join(f"; {why}" for why in held_elsewhere) + ")"
                    )
        except BaseException:
            self.release(batch_id)
            raise
        return chosen

    async def _lease(self, batch_id: str, units: list[str]) -> None:
        """Lease `units` in the store for `batch_id`; fence the batch's commits with them."""
        assert self.store is not None and self.journal is not None
        got = await asyncio.to_thread(
            acquire, self.store, units, self.holder, batch_id, ttl_s=self.lease_ttl_s
        )
        leases = self.leases.setdefault(batch_id, [])
        leases.extend(got)
        self.journal.fence(batch_id, [(lease.unit, lease.token) for lease in leases])

    def release(self, batch_id: str) -> None:
        """Free every unit a batch holds, here and its leases in the store."""
        for name in [n for n, b in self.allocations.items() if b == batch_id]:
            del self.allocations[name]
        leases = self.leases.pop(batch_id, [])
        if self.journal is not None and batch_id not in self.lost:
            self.journal.fence(batch_id, [])
        if leases and self.store is not None:
            release_leases(self.store, leases, self.holder)

    async def create_batch(
        self,
        recipe: Recipe,
        *,
        parameters: dict[str, float] | None = None,
        coi: str | None = None,
        batch_id: str | None = None,
        extra: dict[str, Any] | None = None,
        asset_override: tuple[User, str] | None = None,
    ) -> BatchRun:
        """Bind a recipe to free units, open its record and return the ready batch.

        A bound unit out of calibration or not qualified refuses the start (ASSET-STATUS)
        unless `asset_override` = (a QA account authenticated by the caller, reason): then
        an `asset.override` entry naming what was bypassed is journaled right after the
        batch's first entry, with that person's signature (meaning approved)."""
        assert self.journal is not None, "Controller.start() first"
        if recipe.header.status != "approved" and not self.plant.simulation:
            raise BatchSetupError(
                f"recipe {recipe.header.name} {recipe.header.version} is {recipe.header.status}; "
                "only approved recipes run on a GMP plant"
            )
        if not self.plant.simulation:
            self._check_approved(recipe)
        values = resolve_parameters(recipe, parameters or {})
        batch_id = batch_id or new_batch_id()
        if coi is not None and not coi.strip():
            raise BatchSetupError("the chain-of-identity ID (--coi) must not be blank")
        coi = coi or f"COI-SIM-{secrets.token_hex(3).upper()}"
        units = await self._allocate(recipe, batch_id)
        try:  # a refused start holds nothing: its units are released whatever failed
            devices = {alias: await self.device(u) for alias, u in units.items()}
            # Preflight: every capability and method the recipe needs exists, reads and
            # is writable where it must be, before anything reaches an instrument.
            problems = await check_devices(devices, recipe_needs(recipe))
            if problems:
                raise BatchSetupError("preflight failed:\n  " + "\n  ".join(problems))
            await self._check_unit_alarms(devices)
            reported = await self._reported_serials(devices)
            try:
                bypassed = self._check_assets(units, reported, asset_override)
            except BatchSetupError as exc:
                await self._journal_refused_bind(recipe, batch_id, units, reported, str(exc))
                raise
            clock = await self._clock_from(list(devices.values()))
            control = ControlRecipe(
                batch_id=batch_id,
                recipe=recipe,
                parameters={v.name: v.value for v in values},
                units=devices,
                coi=coi,
                simulation=self.plant.simulation,
                on_restart={u.name: u.on_restart for u in self.plant.units},
            )
            await self.journal.open_batch(
                batch_id,
                recipe_name=recipe.header.name,
                recipe_version=recipe.header.version,
                recipe_hash=recipe.content_hash,
                product=recipe.header.product,
                coi=coi,
                simulation=self.plant.simulation,
                data=self._created_data(recipe, values, units, reported, clock, extra or {}),
            )
        except BaseException:
            self.release(batch_id)
            raise
        recorder = BatchRecorder(self.journal, batch_id, clock)
        if bypassed and asset_override is not None:
            account, reason = asset_override
            entry = await recorder.record(
                Kind.ASSET_OVERRIDE,
                rule=", ".join(sorted({rule for rule, _ in bypassed})),
                bypassed=[text for _, text in bypassed],
                reason=reason,
                user=account.username,
                user_id=account.user_id,
                printed_name=account.printed_name,
            )
            subject = {"type": "entry", "seq": entry.seq}
            data = signature_data(account, "approved", subject, entry_content(entry), reason)
            await recorder.record(SIGNATURE, **data)
        return BatchRun(control, recorder, clock, prompts=self.prompts)

    @staticmethod
    async def _reported_serials(devices: dict[str, Device]) -> dict[str, str | None]:
        """Unit name → the serial number its instrument reports (read once at bind,
        before anything is written); None where the profile has no `device.serial` or
        the instrument reports none (an empty text)."""
        found: dict[str, str | None] = {}
        for device in devices.values():
            serial = None
            if device.has(UNIT_SERIAL):
                (reading,) = await device.read([UNIT_SERIAL])
                serial = str(reading.value).strip() if reading.value is not None else ""
            found[device.name] = serial or None
        return found

    @staticmethod
    def _check_assets(
        units: dict[str, UnitConfig],
        reported: dict[str, str | None],
        override: tuple[User, str] | None,
    ) -> list[tuple[str, str]]:
        """What keeps the bound units from starting (R8), as (rule, text): a unit out of
        calibration or unqualified (ASSET-STATUS), an instrument reporting another serial
        number than the plant file's asset (ASSET-SERIAL). Raises BatchSetupError naming
        the rule(s) unless a QA override with a reason is given."""
        today = datetime.now(UTC).date()
        bypassed = [
            ("ASSET-STATUS", f"unit {u.name} ({u.asset.asset_id}, serial {u.asset.serial}): {p}")
            for u in units.values()
            if u.asset is not None
            for p in u.asset.problems(today)
        ]
        bypassed += [
            (
                "ASSET-SERIAL",
                f"unit {u.name} ({u.asset.asset_id}): the plant file says serial "
                f"{u.asset.serial!r}, the instrument reports {reported[u.name]!r}",
            )
            for u in units.values()
            if u.asset is not None
            and reported.get(u.name) is not None
            and reported[u.name] != u.asset.serial
        ]
        if not bypassed:
            return []
        rules = sorted({rule for rule, _ in bypassed})
        named = "; ".join(
            f"refused by {rule} ({RULES[rule]}): "
            + "; ".join(text for r, text in bypassed if r == rule)
            for rule in rules
        )
        if override is None:
            raise BatchSetupError(named)
        account, reason = override
        try:
            check_may_act(account.username, account.roles, "asset_override")
        except DutyRefused as exc:
            raise BatchSetupError(str(exc)) from None
        if not reason.strip():
            raise BatchSetupError(
                f"refused by {rules[0]} ({RULES[rules[0]]}): an override needs a reason"
            )
        return bypassed

    async def _journal_refused_bind(
        self,
        recipe: Recipe,
        batch_id: str,
        units: dict[str, UnitConfig],
        reported: dict[str, str | None],
        message: str,
    ) -> None:
        """A start refused at bind for the units' asset status or identity is journaled
        on the site chain (`bind.refused`): no batch record exists (nothing was written
        to an instrument), but the refusal is kept."""
        assert self.store is not None
        data = {
            "batch_id": batch_id,
            "recipe": f"{recipe.header.name} {recipe.header.version}",
            "units": {
                alias: {
                    "unit": u.name,
                    "serial_expected": None if u.asset is None else u.asset.serial,
                    "serial_reported": reported.get(u.name),
                }
                for alias, u in units.items()
            },
            "message": message,
            "user": self.user,
            "terminal": platform.node(),
        }
        try:
            await asyncio.to_thread(append_site, self.store, [(Kind.BIND_REFUSED, data)])
        except EbrError as exc:  # the refusal stands even if it cannot be kept
            _log.error("could not journal a refused start: %s", exc)

    @staticmethod
    async def _check_unit_alarms(devices: dict[str, Device]) -> None:
        """Refuse to start while a bound unit reports an alarm (PERMISSIVE-UNIT-ALARM):
        units whose profile has `alarm.active` are read once at bind."""
        for alias, device in devices.items():
            if not device.has(UNIT_ALARM):
                continue
            (reading,) = await device.read([UNIT_ALARM])
            if reading.value:
                code = ""
                if device.has(UNIT_ALARM_CODE):
                    (found,) = await device.read([UNIT_ALARM_CODE])
                    code = f", code {found.value}"
                raise BatchSetupError(
                    f"refused by PERMISSIVE-UNIT-ALARM ({RULES['PERMISSIVE-UNIT-ALARM']}): "
                    f"unit {device.name} ({alias}) reports an alarm{code}; clear it at the unit"
                )

    def _check_approved(self, recipe: Recipe) -> None:
        """GMP: the store must hold a valid approval signature for this exact content."""
        assert self.store is not None
        version = RecipeId(recipe.header.name, recipe.header.version, recipe.content_hash)
        status = recipe_status(self.store, version)
        if status != "approved":
            raise BatchSetupError(
                f"recipe {version} is {status} in the record; a GMP plant runs only versions "
                "approved with `cellbatch recipe approve`"
            )

    def _created_data(
        self,
        recipe: Recipe,
        values: list[ParameterValue],
        units: dict[str, UnitConfig],
        reported: dict[str, str | None],
        clock: ScaledClock,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        h = recipe.header
        return {
            "t": iso(clock.now()),
            "recipe": {
                "name": h.name,
                "version": h.version,
                "product": h.product,
                "status": h.status,
                "author": h.author,
                "content_hash": recipe.content_hash,
                "source": recipe.source,
                "content": recipe.document(),
            },
            "parameters": {
                v.name: {"value": v.value, "unit": v.unit, "master": v.master, "changed": v.changed}
                for v in values
            },
            "equipment": {
                alias: {
                    "unit": u.name,
                    "class": u.equipment_class,
                    "profile": u.profile,
                    "endpoint": u.endpoint,
                    "asset": None if u.asset is None else u.asset.to_dict(datetime.now(UTC).date()),
                    # what the instrument itself reported at bind (None: it reports none)
                    "serial_reported": reported.get(u.name),
                    **self._pinned_profile(u),
                }
                for alias, u in units.items()
            },
            "plant": {
                "name": self.plant.name,
                "site": self.plant.site,
                "mode": self.plant.mode,
                **pinned_file(self.plant.source),
            },
            "simulation": self.plant.simulation,
            "clock": {"epoch": iso(clock.epoch), "time_scale": clock.scale},
            "user": self.user,
            "terminal": platform.node(),
            "software": {"name": "cellbatch", "version": __version__},
            **extra,
        }

    def _pinned_profile(self, unit: UnitConfig) -> dict[str, Any]:
        """The bound profile's SHA-256 and content, as the batch record pins them."""
        device = self._devices.get(unit.name)
        if device is None or not device.profile.sha256:
            return {}
        return {"profile_sha256": device.profile.sha256, "profile_content": device.profile.source}

    async def resume_batch(self, batch_id: str) -> BatchRun:
        """Reopen an interrupted batch Held at its last journaled point, on its own units."""
        assert self.journal is not None and self.store is not None, "Controller.start() first"
        bound = load_resume_point(self.store, batch_id).equipment
        busy = [u for u in bound.values() if u in self.allocations]
        if busy:
            raise BatchSetupError(f"{batch_id}: unit(s) {', '.join(busy)} busy in this controller")
        units = {alias: self.plant.unit(name) for alias, name in bound.items()}
        try:
            await self._lease(batch_id, [unit.name for unit in units.values()])
        except LeaseHeldError as exc:
            self.release(batch_id)
            raise BatchSetupError(f"{batch_id}: {exc}") from None
        for unit in units.values():
            self.allocations[unit.name] = batch_id
        try:
            # Read where the batch stands only now that its leases are ours: a previous
            # holder (paused, not dead) can have committed until our larger token fenced it.
            point = load_resume_point(self.store, batch_id)
            last = await self.journal.resume_batch(batch_id)
            devices = {alias: await self.device(u) for alias, u in units.items()}
            clock = await self._clock_from(list(devices.values()))
        except Exception:
            self.release(batch_id)
            raise
        control = ControlRecipe(
            batch_id=batch_id,
            recipe=point.recipe,
            parameters=point.parameters,
            units=devices,
            coi=point.coi,
            simulation=self.plant.simulation,
            on_restart={u.name: u.on_restart for u in self.plant.units},
        )
        recorder = BatchRecorder(self.journal, batch_id, clock)
        now = clock.now()
        gap = None if point.last_t is None else (now - point.last_t).total_seconds()
        await recorder.record(
            Kind.BATCH_INTERRUPTED,
            last_entry_seq=last.seq,
            last_entry_ts=last.ts,
            last_process_time=None if point.last_t is None else iso(point.last_t),
            detected=iso(now),
            interruption_s=gap,
            user=self.user,
            terminal=platform.node(),
        )
        await self._journal_changed_config(recorder, point.pinned, units, devices)
        return BatchRun(control, recorder, clock, resume=point, prompts=self.prompts)

    async def _journal_changed_config(
        self,
        recorder: BatchRecorder,
        pinned: dict[str, dict[str, str]],
        units: dict[str, UnitConfig],
        devices: dict[str, Device],
    ) -> None:
        """A resumed batch whose plant file or bound profiles changed since it started:
        journal each difference (flagged for review)."""
        now: dict[str, tuple[str, str, str]] = {}
        plant = pinned_file(self.plant.source)
        if plant:
            now["plant"] = (f"plant file {self.plant.source}", plant["sha256"], plant["content"])
        for alias, device in devices.items():
            profile = device.profile
            what = f"profile {profile.name} of unit {units[alias].name} ({alias})"
            now[alias] = (what, profile.sha256, profile.source)
        for key, (what, sha, content) in now.items():
            was = pinned.get(key)
            if was is None or was["sha256"] == sha:
                continue
            diff = "".join(
                difflib.unified_diff(
                    was["content"].splitlines(keepends=True),
                    content.splitlines(keepends=True),
                    "at start",
                    "at resume",
                )
            )
            await recorder.record(
                Kind.CONFIG_CHANGED,
                file=what,
                was_sha256=was["sha256"],
                sha256=sha,
                content=content,
                diff=diff,
            )

    async def run(self, run: BatchRun) -> State:
        """Run a batch to its end and free its units."""
        batch_id = run.control.batch_id
        if self.publisher is not None:
            self.publisher.attach(run)
        task = asyncio.create_task(run.run())
        self._running[batch_id] = (run, task)
        try:
            try:
                state = await task
            except JournalCommitError as exc:
                if not isinstance(exc.__cause__, FencedError):
                    raise
                if batch_id not in self.lost:  # taken over before our renewal noticed
                    units = [lease.unit for lease in self.leases.get(batch_id, [])]
                    self._let_go(batch_id, units)
                return run.state
            if self.journal is not None:  # the batch ended: its signed final head on @site
                try:
                    await self.journal.seal_batch(batch_id)
                except EbrError as exc:  # its checkpoints still cover it; say so, go on
                    _log.error("batch %s ended but could not be sealed: %s", batch_id, exc)
            return state
        finally:
            del self._running[batch_id]
            self.release(batch_id)
            if self.publisher is not None:
                self.publisher.detach(run)
