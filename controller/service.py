"""`cellbatch controller serve`: the long-running engine and its OPC UA interface.

On start it opens the store and recovers every interrupted batch of the plant: each
comes back Held at its last journaled point, with the interruption journaled, on its
own units, and waits for an operator's `restart` (crash recovery, ebr issue). It then
serves an OPC UA endpoint (namespace ``urn:cellbatch:controller``) with one object,
``Controller``, whose methods take and return JSON text:

- ``Info()`` → ``{plant, mode, simulation}``
- ``SignIn(user, password)`` → ``{ok, name | message}``: checks a person's user ID and
  password (GMP plants; journaled as a login), as a terminal does when it signs someone in
- ``List()`` → ``[{id, state, recipe, coi, simulation, prompts}]``
- ``Show(id)`` → the batch with its active elements and open prompts
- ``Start(recipe_path, parameters_json, coi, user, password)`` → ``{ok, batch_id | message}``
- ``Command(id, command, user, password, reason)`` → ``{ok, state, message}``
- ``Answer(prompt_id, values_json, user, password, verifier, verifier_password, comment)``
  → ``{ok, message}``: an operator prompt answered (signed by both people on GMP plants)
- ``Acknowledge(id, alarm, user, password, comment)`` → ``{ok, message}``: an open alarm
  (the seq of its ``alarm.raised`` entry, listed by ``Show``) acknowledged

On a GMP plant every call that acts authenticates the person (user + password against
the store's users, who must be allowed to sign as "performed"); on a simulation plant
the user name is recorded as given. With a PKI folder (`--pki`) the interface offers
only Basic256Sha256 SignAndEncrypt and trusted terminals (`controller.interface_security`);
without one it is unsecured, for a controller and terminals on one machine. It assumes
it is the only controller of this plant's units (it recovers every unfinished batch that
uses them).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asyncua import Server, ua, uamethod

from controller.batch import BatchRun
from controller.interface_security import check_server_pki, secure_server
from controller.isa88 import FINAL_STATES, Command, State
from controller.plant import Plant
from controller.prompts import PromptBoard, PromptError, SignedBy
from controller.resume import ResumeError, load_resume_point
from controller.session import BatchSetupError, Controller
from drivers import DriverError
from ebr import EbrError
from ebr.people.signatures import SignatureError, check_may_sign
from ebr.people.users import AuthError, Directory, User
from ebr.record.query import list_batches
from recipes import RecipeError, load_recipe

NAMESPACE = "urn:cellbatch:controller"
DEFAULT_LISTEN = "opc.tcp://127.0.0.1:4840"
COMMANDS = ("hold", "restart", "pause", "resume", "stop", "abort")
_log = logging.getLogger(__name__)


class ControllerService:
    """A Controller that keeps running batches and takes requests over OPC UA."""

    def __init__(
        self,
        plant: Plant,
        db_url: str,
        listen: str,
        board: PromptBoard,
        pki: Path | None = None,
    ) -> None:
        """Prepare; nothing runs until `start()`. With `pki` (see
        `controller.interface_security`) the interface is signed and encrypted and only
        trusted terminals connect; a folder lacking a file raises InterfaceSecurityError."""
        self.plant = plant
        self.listen = listen
        self.pki = pki
        if pki is not None:
            check_server_pki(pki)
        self.controller = Controller(plant, db_url, prompts=board)
        self.batches: dict[str, tuple[BatchRun, asyncio.Task[State]]] = {}
        self.server = Server()
        self.recovered: list[str] = []
        self.recovery_errors: list[str] = []

    async def start(self) -> None:
        """Open the store, recover interrupted batches, then serve."""
        await self.controller.start()
        await self._recover()
        await self._serve()

    async def stop(self) -> None:
        """Stop serving, hold every running batch (journaled) and close the store."""
        await self.server.stop()
        await self.controller.stop()

    # -- recovery ---------------------------------------------------------------------

    async def _recover(self) -> None:
        assert self.controller.store is not None
        ours = {unit.name for unit in self.plant.units}
        for summary in list_batches(self.controller.store):
            if summary.state in FINAL_STATES or summary.state == State.IDLE:
                continue
            try:
                point = load_resume_point(self.controller.store, summary.batch_id)
                if not set(point.equipment.values()) <= ours:
                    continue  # another plant's batch
                run = await self.controller.resume_batch(summary.batch_id)
            except (ResumeError, BatchSetupError, DriverError, EbrError) as exc:
                self.recovery_errors.append(f"{summary.batch_id}: {exc}")
                continue
            self._track(run)
            self.recovered.append(summary.batch_id)

    def _track(self, run: BatchRun) -> None:
        task = asyncio.create_task(self.controller.run(run), name=run.control.batch_id)
        self.batches[run.control.batch_id] = (run, task)

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
            ("SignIn", self._sign_in, 2),
            ("List", self._list, 0),
            ("Show", self._show, 1),
            ("Start", self._start, 5),
            ("Command", self._command, 5),
            ("Answer", self._answer, 7),
            ("Acknowledge", self._acknowledge, 5),
        ]
        for name, handler, arity in methods:
            await node.add_method(idx, name, uamethod(handler), [text] * arity, [text])
        await server.start()

    async def _info(self, _parent: Any) -> str:
        plant = self.plant
        return json.dumps({"plant": plant.name, "mode": plant.mode, "simulation": plant.simulation})

    async def _sign_in(self, _parent: Any, user: str, password: str) -> str:
        try:
            account = self._authenticate(user, password, "sign in at a terminal")
        except (EbrError, SignatureError) as exc:
            return _refused(str(exc))
        return json.dumps({"ok": True, "name": account.printed_name if account else user})

    async def _list(self, _parent: Any) -> str:
        return json.dumps([self._summary(run) for run, _task in self.batches.values()])

    async def _show(self, _parent: Any, batch_id: str) -> str:
        found = self.batches.get(batch_id)
        if found is None:
            return json.dumps({"ok": False, "message": f"no batch {batch_id} in this controller"})
        run, _task = found
        return json.dumps(
            {
                "ok": True,
                **self._summary(run),
                "active": [f"{el.path} {el.state}" for el in run.chain],
                "open_prompts": [
                    {"id": p.id, "element": p.element, "text": p.text}
                    for p in run.prompts.open.values()
                    if p.batch_id == batch_id
                ],
                "alarms": len(run.alarms),
                "open_alarms": [alarm.to_dict() for alarm in run.open_alarms.values()],
                "outages": run.outages,
            }
        )

    async def _start(
        self, _parent: Any, recipe_path: str, parameters: str, coi: str, user: str, password: str
    ) -> str:
        try:
            self._authenticate(user, password, "start a batch")
            recipe = load_recipe(Path(recipe_path))
            values = json.loads(parameters) if parameters else {}
            if not isinstance(values, dict):
                raise ValueError("parameters must be a JSON object")
            run = await self.controller.create_batch(
                recipe,
                parameters={k: float(v) for k, v in values.items()},
                coi=coi or None,
                extra={"user": user},  # who started it (requests are concurrent)
            )
        except RecipeError as exc:
            return _refused("; ".join(str(d) for d in exc.diagnostics) or str(exc))
        except (BatchSetupError, EbrError, DriverError, OSError, ValueError, SignatureError) as exc:
            return _refused(str(exc))
        self._track(run)
        return json.dumps({"ok": True, "batch_id": run.control.batch_id})

    async def _command(
        self, _parent: Any, batch_id: str, command: str, user: str, password: str, reason: str
    ) -> str:
        found = self.batches.get(batch_id)
        if found is None:
            return _refused(f"no batch {batch_id} in this controller")
        if command not in COMMANDS:
            return _refused(f"unknown command {command!r}; one of {', '.join(COMMANDS)}")
        try:
            self._authenticate(user, password, f"{command} {batch_id}")
        except (EbrError, SignatureError) as exc:
            return _refused(str(exc))
        run, task = found
        if task.done():
            return _refused(f"batch {batch_id} has ended ({run.state})")
        accepted = await run.command(Command(command), user=user, reason=reason)
        if not accepted:
            return _refused(f"{command} is not allowed: batch {batch_id} is {run.state}")
        return json.dumps({"ok": True, "state": str(run.state), "message": "accepted"})

    async def _acknowledge(
        self, _parent: Any, batch_id: str, alarm: str, user: str, password: str, comment: str
    ) -> str:
        found = self.batches.get(batch_id)
        if found is None:
            return _refused(f"no batch {batch_id} in this controller")
        try:
            seq = int(alarm)
            self._authenticate(user, password, f"acknowledge alarm {alarm} of {batch_id}")
        except ValueError:
            return _refused(f"alarm {alarm!r}: want the alarm's number (batch show)")
        except (EbrError, SignatureError) as exc:
            return _refused(str(exc))
        run, _task = found
        if not await run.acknowledge(seq, user=user, comment=comment):
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
        try:
            entries = json.loads(values)
            if not isinstance(entries, dict):
                raise ValueError("values must be a JSON object")
            account = self._authenticate(user, password, f"answer {prompt_id}")
            checker = None
            if verifier:
                checker = self._authenticate(verifier, verifier_password, f"verify {prompt_id}")
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

    def _authenticate(self, user: str, password: str, purpose: str) -> User | None:
        """The person's account on a GMP plant (None in simulation, where names are taken
        as given); raises AuthError or SignatureError."""
        if not user:
            raise AuthError("name the user (--user)")
        if self.plant.simulation:
            return None
        assert self.controller.store is not None
        account = Directory(self.controller.store).authenticate(user, password, purpose)
        check_may_sign(account, "performed")
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
    return json.dumps({"ok": False, "message": message})
