"""`cellbatch controller serve`: the long-running engine and its OPC UA interface.

On start it opens the store and recovers every interrupted batch of the plant: each
comes back Held at its last journaled point, with the interruption journaled, on its
own units, and waits for an operator's `restart` (crash recovery, ebr issue). It then
serves an OPC UA endpoint (namespace ``urn:cellbatch:controller``) with one object,
``Controller``, whose methods take and return JSON text:

- ``Info()`` → ``{plant, mode, simulation, storage_problem, storage_since, role, holder,
  lease_ttl_s, took_over, lost}``: why the store cannot commit and since when (UTC ISO),
  while it cannot (running batches are then held, their instruments in the safe state;
  None otherwise); `role` is ``active`` or ``standby`` (see below), `holder` the name
  its unit leases carry, `took_over` the batches it took from dead controllers, `lost`
  those another controller took from it
- ``SignIn(user, password)`` → ``{ok, name | message}``: checks a person's user ID and
  password (GMP plants; journaled as a login), as a terminal does when it signs someone in
- ``List()`` → ``[{id, state, recipe, coi, simulation, prompts, open_alarms, why}]``
- ``Override(id, action, path, user, password, reason)`` → ``{ok, state, message}``: a
  supervisor's signed override of one phase: ``force`` (complete the running phase),
  ``skip`` (a phase still to come) or ``repeat`` (a held phase runs again from its start
  on the next restart)
- ``Alerts()`` → ``[{ts, username, failures, …}]``: repeated failed logins or signatures
- ``Show(id)`` → the batch with its active elements, open prompts and alarms, and
  (`controller.batch_view`) its hold/stop reason, CPP values, alarm list and prompt forms
- ``Recipes()`` → ``[{name, version, status, content_hash}]``: the controller's library
- ``Start(recipe, parameters_json, coi, user, password)`` → ``{ok, batch_id | message}``:
  `recipe` names a recipe of the controller's library (`controller.library`:
  ``name@version``, ``name`` or its content hash) — never a path
- ``Command(id, command, user, password, reason)`` → ``{ok, state, message}``: hold,
  restart, pause, resume, stop, abort, or override (a supervisor's restart past a
  permissive, signed); hold, stop, abort, restart and override need a reason
- ``Answer(prompt_id, values_json, user, password, verifier, verifier_password, comment)``
  → ``{ok, message}``: an operator prompt answered (signed by both people on GMP plants)
- ``Acknowledge(id, alarm, user, password, comment)`` → ``{ok, message}``: an open alarm
  (the seq of its ``alarm.raised`` entry, listed by ``Show``) acknowledged

Each batch is also browsable, live, as an object under ``Objects/Batches`` (state,
recipe, reason, active elements, alarms, prompts, the bound units' CPPs with PV and SP;
`controller.address_space`), for any OPC UA client.

On a GMP plant every call that acts authenticates the person (user + password against
the store's users, who must be allowed to sign as "performed"); on a simulation plant
the user name is recorded as given.

Several controllers may share one store (PostgreSQL) and one plant file: each binds a
unit only by leasing it (`ebr.record.leases`), so a batch needing a unit another
controller holds is refused naming that holder, and on start a controller recovers only
the interrupted batches no live controller holds. A **standby** (``standby=True``) serves
this interface but drives nothing and refuses ``Start``; it watches the leases, and when
a controller dies (its leases expire after `lease_ttl_s`, or at once when it was a process
of this host that no longer runs) it takes over that controller's batches through the
same recovery as a restart (Held, ``batch.interrupted``, waiting for a person's restart),
by acquiring their leases with larger fencing tokens: a controller that was only paused
finds its commits refused and stops driving those batches. Having taken over a batch,
the standby is an active controller (and keeps watching).

With a PKI folder (`--pki`) the interface offers only Basic256Sha256 SignAndEncrypt and
trusted terminals (`controller.interface_security`); without one it is unsecured, for a
controller and terminals on one machine. A GMP plant's controller listens beyond
loopback only with a PKI folder.

Every method's arguments are checked before it acts (`controller.requests`): a refusal
is ``{ok: false, error, message}`` with `error` one of invalid_argument, not_found,
unauthenticated, refused, internal — never a traceback, never a file's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from asyncua import Server, ua, uamethod

from controller.address_space import AddressSpace
from controller.batch import BatchRun
from controller.batch_view import BatchView
from controller.interface_security import (
    InterfaceSecurityError,
    check_server_pki,
    secure_server,
)
from controller.isa88 import FINAL_STATES, Command, State
from controller.library import DEFAULT_LIBRARY, LibraryError, RecipeLibrary
from controller.plant import Plant
from controller.prompts import PromptBoard, PromptError, SignedBy
from controller.requests import (
    INVALID,
    NOT_FOUND,
    UNAUTHENTICATED,
    guarded,
    json_object,
    numbers,
    refused,
)
from controller.resume import ResumeError, load_resume_point
from controller.session import BatchSetupError, Controller
from controller.storage import storage_line
from controller.throttle import SignInThrottle
from controller.who import Who, opcua_caller, opcua_client_host
from drivers import DriverError
from ebr import EbrError
from ebr.people.duties import DutyRefused, check_may_act
from ebr.people.signatures import SignatureError
from ebr.people.users import AuthError, Directory, User
from ebr.record.errors import UnknownBatchError
from ebr.record.leases import DEFAULT_TTL_S, holders, orphaned
from ebr.record.query import list_batches, read_journal
from recipes import RecipeError

NAMESPACE = "urn:cellbatch:controller"
DEFAULT_LISTEN = "opc.tcp://127.0.0.1:4840"
COMMANDS = ("hold", "restart", "pause", "resume", "stop", "abort", "override")
"""`override`: a supervisor's signed restart past a permissive (R7)."""
#: seconds `Start` waits for the new batch to leave Idle before it answers
START_ANSWER_WITHIN_S = 5.0
#: failed sign-ins from one client address (any accounts) before its attempts wait
CLIENT_FREE_FAILURES = 10
#: seconds between two updates of the batches' address space (and setpoint reads)
UPDATE_S = 0.5
_log = logging.getLogger(__name__)


@dataclass
class Recovery:
    """What one recovery pass found: batches brought back Held, batches that could not
    be (ID → why), and batches another live controller holds (`ID on HOLDER`)."""

    recovered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    elsewhere: list[str] = field(default_factory=list)


class ControllerService:
    """A Controller that keeps running batches and takes requests over OPC UA."""

    def __init__(
        self,
        plant: Plant,
        db_url: str,
        listen: str,
        board: PromptBoard,
        pki: Path | None = None,
        recipe_folders: Sequence[Path] = (DEFAULT_LIBRARY,),
        *,
        standby: bool = False,
        lease_ttl_s: float = DEFAULT_TTL_S,
        report: Callable[[str], None] | None = None,
    ) -> None:
        """Prepare; nothing runs until `start()`. With `pki` (see
        `controller.interface_security`) the interface is signed and encrypted and only
        trusted terminals connect; a folder lacking a file raises InterfaceSecurityError,
        as does a GMP plant listening beyond loopback without one. `Start` runs only
        recipes of `recipe_folders` (loaded at `start()`). `standby`: take over the
        batches of dead controllers instead of running any of its own (see the module);
        `lease_ttl_s`: the unit leases' lifetime (a dead controller's units are free
        after it); `report` is told each takeover (a line of text)."""
        self.plant = plant
        self.listen = listen
        self.endpoint = listen
        """The URL terminals connect to, with the port actually bound (``listen`` may say 0)."""
        self.pki = pki
        if pki is not None:
            check_server_pki(pki)
        elif not plant.simulation and not _loopback(listen):
            raise InterfaceSecurityError(
                f"a GMP plant's controller listens beyond this machine ({listen}) only with "
                "Sign&Encrypt: give the certificate folder"
            )
        self.recipe_folders = tuple(recipe_folders)
        self.throttle = SignInThrottle()  # per account
        self.client_throttle = SignInThrottle(free=CLIENT_FREE_FAILURES, base_s=5.0)  # per address
        self.library = RecipeLibrary()
        self.controller = Controller(plant, db_url, prompts=board, lease_ttl_s=lease_ttl_s)
        self.role = "standby" if standby else "active"
        self.report = report or _log.info
        self.took_over: list[str] = []
        self.elsewhere: list[str] = []
        """Interrupted batches of this plant left alone on start: another controller's."""
        self._hopeless: set[str] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.batches: dict[str, tuple[BatchRun, asyncio.Task[State]]] = {}
        self.views: dict[str, BatchView] = {}
        self.space: AddressSpace | None = None
        self._updater: asyncio.Task[None] | None = None
        self.server = Server()
        self.recovered: list[str] = []
        self.recovery_errors: list[str] = []

    async def start(self) -> None:
        """Load the recipe library (off the event loop), open the store, recover
        interrupted batches, then serve."""
        self.library = await asyncio.to_thread(RecipeLibrary.load, self.recipe_folders)
        await self.controller.start()
        if self.role == "standby":
            self._watcher = asyncio.create_task(self._stand_by(), name="standby")
        else:
            found = await self._recover()
            self.recovered, self.elsewhere = found.recovered, found.elsewhere
            self.recovery_errors = [f"{b}: {problem}" for b, problem in found.failed.items()]
        await self._serve()

    async def stop(self) -> None:
        """Stop serving, hold every running batch (journaled) and close the store."""
        for background in (self._watcher, self._updater):
            if background is not None:
                background.cancel()
                await asyncio.wait({background})
        await self.server.stop()
        await self.controller.stop()

    # -- recovery ---------------------------------------------------------------------

    async def _recover(self, batch_ids: Sequence[str] | None = None) -> Recovery:
        """Bring interrupted batches of this plant back Held (waiting for a person's
        restart) and serve them. On start: every unfinished batch no live controller
        holds; a standby: those of a dead controller (`batch_ids`)."""
        store = self.controller.store
        assert store is not None
        if batch_ids is None:
            batch_ids = [
                summary.batch_id
                for summary in await asyncio.to_thread(list_batches, store)
                if summary.state not in FINAL_STATES and summary.state != State.IDLE
            ]
        ours = {unit.name for unit in self.plant.units}
        live = await asyncio.to_thread(holders, store)
        found = Recovery()
        for batch_id in batch_ids:
            if batch_id in self.batches or batch_id in self._hopeless:
                continue
            try:
                point = await asyncio.to_thread(load_resume_point, store, batch_id)
                units = set(point.equipment.values())
                if not units <= ours:
                    continue  # another plant's batch
                others = sorted({live[u][0] for u in units if u in live} - {self.controller.holder})
                if others:
                    found.elsewhere.append(f"{batch_id} on {', '.join(others)}")
                    continue
                run = await self.controller.resume_batch(batch_id)
            except (ResumeError, UnknownBatchError) as exc:  # ended, never started: leave it
                self._hopeless.add(batch_id)
                found.failed[batch_id] = str(exc)
                continue
            except (BatchSetupError, DriverError, EbrError) as exc:
                found.failed[batch_id] = str(exc)
                continue
            self._track(run)
            found.recovered.append(batch_id)
        return found

    async def _stand_by(self) -> None:
        """Watch the leases; take over the batches of a controller that died (until
        stopped). Looks every sixth of the lease TTL, at most every second. A takeover
        that failed (an instrument unreachable: its leases are given back) is tried
        again at each look until it succeeds or another controller has the batch."""
        store = self.controller.store
        assert store is not None
        every = min(1.0, self.controller.lease_ttl_s / 6)
        told: dict[str, str] = {}
        retry: dict[str, str] = {}  # batch ID → the dead holder it was taken from
        while True:
            await asyncio.sleep(every)
            try:
                dead = await asyncio.to_thread(orphaned, store)
            except Exception as exc:  # the store is down: look again later
                _log.warning("standby: leases not readable: %s", exc)
                continue
            dead = {**retry, **dead}
            todo = [b for b in dead if b not in self.batches and b not in self._hopeless]
            if not todo:
                continue
            found = await self._recover(todo)
            for batch_id in found.recovered:
                self.role = "active"
                self.took_over.append(batch_id)
                holder = dead[batch_id]
                self.report(f"took over {batch_id} from {holder}: Held, waiting for restart")
            retry = {b: dead[b] for b in found.failed if b not in self._hopeless}
            for batch_id, problem in found.failed.items():
                if told.get(batch_id) != problem:  # say each problem once, retry quietly
                    told[batch_id] = problem
                    self.report(f"not taken over: {batch_id}: {problem}")

    def _track(self, run: BatchRun) -> None:
        assert self.controller.store is not None
        batch_id = run.control.batch_id
        self.views[batch_id] = BatchView(run, read_journal(self.controller.store, batch_id))
        task = asyncio.create_task(self.controller.run(run), name=batch_id)
        self.batches[batch_id] = (run, task)

    # -- the OPC UA interface -----------------------------------------------------------

    async def _serve(self) -> None:
        server = self.server
        await server.init()
        server.set_endpoint(self.listen)
        server.set_server_name("cellbatch controller")
        if self.pki is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            await secure_server(server, self.pki)
        idx = await server.register_namespace(NAMESPACE)
        node = await server.nodes.objects.add_object(idx, "Controller")
        text = ua.VariantType.String
        methods: list[tuple[str, Callable[..., Any], int]] = [
            ("Info", self._info, 0),
            ("Recipes", self._recipes, 0),
            ("SignIn", self._sign_in, 2),
            ("List", self._list, 0),
            ("Alerts", self._alerts, 0),
            ("Show", self._show, 1),
            ("Start", self._start, 5),
            ("StartOverride", self._start_override, 8),
            ("Command", self._command, 5),
            ("Override", self._override, 6),
            ("Answer", self._answer, 7),
            ("Acknowledge", self._acknowledge, 5),
        ]
        for name, handler, arity in methods:
            method = uamethod(guarded(name, handler, arity))
            await node.add_method(idx, name, method, [text] * arity, [text])
        self.space = AddressSpace(server, idx)
        await self.space.init()
        await server.start()
        self.endpoint = _bound_url(self.listen, server)
        self._updater = asyncio.create_task(self._update_space())

    async def _update_space(self) -> None:
        """Keep every batch's object in the address space current (until stopped)."""
        assert self.space is not None
        while True:
            journal = self.controller.journal
            if journal is not None:
                problem = journal.storage_problem
                line = problem and storage_line(problem, journal.storage_problem_since)
                with contextlib.suppress(ua.UaError):
                    await self.space.storage_problem(line)
            for batch_id, (run, _task) in list(self.batches.items()):
                if batch_id in self.controller.lost:
                    continue  # another controller's now: it serves the batch's object
                try:
                    view = await self._view(run)
                    if batch_id in self.space:
                        await self.space.update(batch_id, view)
                    else:
                        await self.space.add_batch(batch_id, view)
                except (ua.UaError, DriverError) as exc:  # one bad batch never stops the rest
                    _log.warning("address space of %s: %s", batch_id, exc)
            await asyncio.sleep(UPDATE_S)

    async def _view(self, run: BatchRun) -> dict[str, Any]:
        view = self.views[run.control.batch_id]
        await view.refresh()
        return {**self._summary(run), **view.snapshot()}

    async def _info(self, _parent: Any) -> str:
        plant = self.plant
        journal = self.controller.journal
        since = None if journal is None else journal.storage_problem_since
        return json.dumps(
            {
                "plant": plant.name,
                "mode": plant.mode,
                "simulation": plant.simulation,
                "storage_problem": None if journal is None else journal.storage_problem,
                "storage_since": since and since.isoformat(),
                "role": self.role,
                "holder": self.controller.holder,
                "lease_ttl_s": self.controller.lease_ttl_s,
                "took_over": self.took_over,
                "lost": self.controller.lost,
            }
        )

    async def _recipes(self, _parent: Any) -> str:
        return json.dumps(self.library.listing())

    async def _sign_in(self, _parent: Any, user: str, password: str) -> str:
        try:
            account = await self._authenticate(user, password, "sign in at a terminal", "sign in")
        except (EbrError, SignatureError) as exc:
            return refused(str(exc), UNAUTHENTICATED)
        return json.dumps({"ok": True, "name": account.printed_name if account else user})

    async def _list(self, _parent: Any) -> str:
        return json.dumps(
            [
                # state and why from the view: one journal position
                {**self._summary(run), **self.views[batch_id].heading()}
                for batch_id, (run, _task) in self.batches.items()
                if batch_id not in self.controller.lost
            ]
        )

    async def _alerts(self, _parent: Any) -> str:
        """Alerts for repeated failed logins or signatures (R12) on this store."""
        assert self.controller.store is not None
        alerts = Directory(self.controller.store).alerts()
        return json.dumps([{"ts": a.ts, **a.data} for a in alerts])

    async def _show(self, _parent: Any, batch_id: str) -> str:
        found = self.batches.get(batch_id)
        if found is None or batch_id in self.controller.lost:
            why = self.controller.lost.get(batch_id, "")
            return refused(f"no batch {batch_id} in this controller {why}".strip(), NOT_FOUND)
        run, _task = found
        shown = self.views[batch_id].snapshot()  # state and why from one journal position
        return json.dumps(
            {
                "ok": True,
                **self._summary(run),
                **shown,
                "active": [f"{e['path']} {e['state']}" for e in shown["elements"]],
                "open_prompts": [
                    {"id": p.id, "element": p.element, "text": p.text}
                    for p in run.prompts.open.values()
                    if p.batch_id == batch_id
                ],
                "alarms": len(self.views[batch_id].alarms),  # raised, this batch's record
                "open_alarms": [alarm.to_dict() for alarm in run.open_alarms.values()],
                "outages": run.outages,
            }
        )

    async def _start(
        self, _parent: Any, recipe_ref: str, parameters: str, coi: str, user: str, password: str
    ) -> str:
        return await self._start_batch(recipe_ref, parameters, coi, user, password)

    async def _start_override(
        self,
        _parent: Any,
        recipe_ref: str,
        parameters: str,
        coi: str,
        user: str,
        password: str,
        qa_user: str,
        qa_password: str,
        reason: str,
    ) -> str:
        """`Start` past a unit out of calibration or unqualified (ASSET-STATUS) or whose
        instrument reports another serial (ASSET-SERIAL): the QA account `qa_user`
        authenticates (on every plant: the override is signed) and must hold the
        asset_override role (a refusal is journaled)."""
        try:
            assert self.controller.store is not None
            directory = Directory(self.controller.store)
            purpose = f"asset override for {recipe_ref}"
            qa = await asyncio.to_thread(directory.authenticate, qa_user, qa_password, purpose)
            try:
                check_may_act(qa.username, qa.roles, "asset_override")
            except DutyRefused as refusal:
                directory.refuse(qa, purpose, refusal)
        except (EbrError, SignatureError) as exc:
            return _refused(str(exc))
        return await self._start_batch(recipe_ref, parameters, coi, user, password, (qa, reason))

    async def _start_batch(
        self,
        recipe_ref: str,
        parameters: str,
        coi: str,
        user: str,
        password: str,
        asset_override: tuple[User, str] | None = None,
    ) -> str:
        if self.role == "standby":
            return refused(
                "this controller is a standby: it runs only the batches of a controller "
                "that died; start batches on an active controller"
            )
        try:
            terminal = opcua_caller(self.server)
            account = await self._authenticate(user, password, "start a batch", "start")
            who = Who.of(user, terminal, account)
        except (EbrError, SignatureError) as exc:
            return refused(str(exc), UNAUTHENTICATED)
        try:
            recipe = self.library.find(recipe_ref)
        except LibraryError as exc:
            return refused(str(exc), NOT_FOUND)
        values = numbers(json_object(parameters, "parameters"), "parameters")
        try:
            run = await self.controller.create_batch(
                recipe,
                parameters=values,
                coi=coi or None,
                # who started it and where (requests are concurrent); the software
                # version is the session's own `software` field
                extra={k: v for k, v in who.fields().items() if k != "software"},
                asset_override=asset_override,
            )
        except RecipeError as exc:
            return refused("; ".join(str(d) for d in exc.diagnostics) or str(exc))
        except (BatchSetupError, EbrError, DriverError, SignatureError) as exc:
            return refused(str(exc))
        except (TypeError, ValueError) as exc:
            return refused(str(exc), INVALID)
        self._track(run)
        # Answer once the batch has left Idle (a command sent right after the answer must
        # find it started), bounded below the client's call timeout.
        ready = asyncio.create_task(run.ready.wait())
        try:
            await asyncio.wait(
                {self.batches[run.control.batch_id][1], ready},
                timeout=START_ANSWER_WITHIN_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        return json.dumps({"ok": True, "batch_id": run.control.batch_id, "state": str(run.state)})

    async def _command(
        self, _parent: Any, batch_id: str, command: str, user: str, password: str, reason: str
    ) -> str:
        found = self.batches.get(batch_id)
        if found is None:
            return _refused(f"no batch {batch_id} in this controller")
        if command not in COMMANDS:
            return _refused(f"unknown command {command!r}; one of {', '.join(COMMANDS)}")
        terminal = opcua_caller(self.server)
        try:
            account = await self._authenticate(user, password, f"{command} {batch_id}", command)
        except (EbrError, SignatureError) as exc:
            return _refused(str(exc))
        run, task = found
        if task.done():
            return _refused(f"batch {batch_id} has ended ({run.state})")
        override = command == "override"
        accepted = await run.command(
            Command.RESTART if override else Command(command),
            user=user,
            reason=reason,
            override=override,
            signer=account,
            who=Who.of(user, terminal, account),
        )
        if not accepted:
            return _refused(
                run.last_refusal or f"{command} is not allowed: batch {batch_id} is {run.state}"
            )
        return json.dumps({"ok": True, "state": str(run.state), "message": "accepted"})

    async def _override(
        self,
        _parent: Any,
        batch_id: str,
        action: str,
        path: str,
        user: str,
        password: str,
        reason: str,
    ) -> str:
        """A supervisor's signed phase override: `force` the running phase, `skip` one to
        come, `repeat` a held one (`BatchRun.override_step`)."""
        found = self.batches.get(batch_id)
        if found is None:
            return _refused(f"no batch {batch_id} in this controller")
        terminal = opcua_caller(self.server)
        try:
            account = await self._authenticate(
                user, password, f"{action} {path} {batch_id}", "override"
            )
        except (EbrError, SignatureError) as exc:
            return _refused(str(exc))
        run, task = found
        if task.done():
            return _refused(f"batch {batch_id} has ended ({run.state})")
        who = Who.of(user, terminal, account)
        if not await run.override_step(action, path, who=who, reason=reason, signer=account):
            return _refused(run.last_refusal or f"{action} {path} refused")
        return json.dumps({"ok": True, "state": str(run.state), "message": f"{action} accepted"})

    async def _acknowledge(
        self, _parent: Any, batch_id: str, alarm: str, user: str, password: str, comment: str
    ) -> str:
        found = self.batches.get(batch_id)
        if found is None:
            return _refused(f"no batch {batch_id} in this controller")
        terminal = opcua_caller(self.server)
        try:
            seq = int(alarm)
            account = await self._authenticate(
                user, password, f"acknowledge alarm {alarm} of {batch_id}", "acknowledge"
            )
        except ValueError:
            return _refused(f"alarm {alarm!r}: want the alarm's number (batch show)")
        except (EbrError, SignatureError) as exc:
            return _refused(str(exc))
        run, _task = found
        who = Who.of(user, terminal, account)
        if not await run.acknowledge(seq, user=user, comment=comment, who=who):
            return _refused(f"alarm {seq} is not an open alarm of batch {batch_id}")
        return json.dumps({"ok": True, "message": "acknowledged"})

    async def _answer(
        self,
        _parent: Any,
        prompt_id: str,
        values: str,
        user: str,
        password: str,
        verifier: str,
        verifier_password: str,
        comment: str,
    ) -> str:
        board = self.controller.prompts
        entries = json_object(values, "values")
        try:
            account = await self._authenticate(user, password, f"answer {prompt_id}", "answer")
            checker = None
            if verifier:
                checker = await self._authenticate(
                    verifier, verifier_password, f"verify {prompt_id}", "verify"
                )
            signed = SignedBy(account, checker) if account is not None else None
            await board.answer(
                prompt_id,
                entries,
                user=user,
                verifier=verifier or None,
                comment=comment or None,
                signed_by=signed,
            )
        except (PromptError, EbrError, SignatureError, ValueError) as exc:
            return _refused(str(exc))
        return json.dumps({"ok": True, "message": "answered"})

    async def _authenticate(
        self, user: str, password: str, purpose: str, action: str
    ) -> User | None:
        """The person's account on a GMP plant (None in simulation, where names are taken
        as given), allowed to do `action` (ebr.people.duties: roles checked, a refusal
        journaled on the site chain); raises AuthError or DutyRefused.

        Off the event loop (password hashing and the site chain). Without `--pki` the
        client is unauthenticated: its wrong passwords are throttled per account and per
        client address (`controller.throttle`; a client reaching its limit is an alert)
        and do not count towards lockout; with trusted terminals
        (`--pki`) they do, as Part 11 requires."""
        if not user:
            raise AuthError("name the user (--user)")
        if self.plant.simulation:
            return None
        assert self.controller.store is not None
        client = opcua_client_host(self.server)
        wait = max(self.throttle.wait_s(user), self.client_throttle.wait_s(client))
        if wait > 0:
            _log.warning(
                "sign-in of %r from %s throttled after repeated failures", user[:64], client
            )
            raise AuthError(f"too many failed sign-ins; try again in {math.ceil(wait)} s")
        directory = Directory(self.controller.store)
        try:
            account = await asyncio.to_thread(
                directory.authenticate,
                user,
                password,
                purpose,
                lockout=self.pki is not None,
                client=client,
            )
        except AuthError:
            self.throttle.failed(user)
            failures = self.client_throttle.failed(client)
            if failures == self.client_throttle.free:
                await asyncio.to_thread(directory.record_client_alert, client, failures, user)
            raise
        self.throttle.succeeded(user)
        try:
            check_may_act(account.username, account.roles, action)
        except DutyRefused as refusal:
            await asyncio.to_thread(directory.refuse, account, purpose, refusal)
        return account

    @staticmethod
    def _summary(run: BatchRun) -> dict[str, Any]:
        control = run.control
        return {
            "id": control.batch_id,
            "state": str(run.state),
            "recipe": f"{control.recipe.header.name}@{control.recipe.header.version}",
            "coi": control.coi,
            "simulation": control.simulation,
            "prompts": sum(1 for p in run.prompts.open.values() if p.batch_id == control.batch_id),
            "open_alarms": len(run.open_alarms),
        }


def _refused(message: str) -> str:
    return refused(message)


def _loopback(listen: str) -> bool:
    """Whether an endpoint URL binds only this machine's loopback interface."""
    host = urlsplit(listen).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bound_url(listen: str, server: Server) -> str:
    """``listen`` with the TCP port the server really bound (port 0 binds any free port)."""
    parts = urlsplit(listen)
    bound = server.bserver._server if server.bserver else None
    sockets = getattr(bound, "sockets", None)
    if not sockets:
        return listen
    port = sockets[0].getsockname()[1]
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))
