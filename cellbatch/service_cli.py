"""`cellbatch controller serve` and `cellbatch batch …` (the client of a running controller)."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from cellbatch.batch_text import show_lines
from cellbatch.batch_watch import watch
from cellbatch.cli_common import default_plant, password_of
from cellbatch.ports import at_endpoints, endpoints_option
from cellbatch.service_client import (
    ServiceError,
    alert_line,
    call,
    opc_url_problem,
    storage_banner,
)
from controller.interface_security import Endpoint, InterfaceSecurityError
from controller.library import DEFAULT_LIBRARY
from controller.plant import load_plant
from controller.prompts import PromptBoard
from controller.prompts import simulated_operator as simulated_answers
from controller.service import COMMANDS, DEFAULT_LISTEN, ControllerService
from recipes import RecipeError, load_recipe

SERVE_LEASE_TTL_S = 6.0
"""A served controller's unit leases: renewed every 2 s, so a standby on another host
takes over within ~7 s of the controller's death (10 s is the goal)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def endpoint_option(command: _F) -> _F:
    """``--endpoint`` and ``--pki`` of a terminal command, given to it as one `Endpoint`."""

    @click.option(
        "--endpoint",
        "url",
        default=lambda: os.environ.get("CELLBATCH_ENDPOINT", DEFAULT_LISTEN),
        show_default=f"$CELLBATCH_ENDPOINT or {DEFAULT_LISTEN}",
        help="OPC UA endpoint of the running controller.",
    )
    @click.option(
        "--pki",
        type=click.Path(file_okay=False, path_type=Path),
        default=lambda: os.environ.get("CELLBATCH_PKI") or None,
        show_default="$CELLBATCH_PKI",
        help="Terminal certificate folder for a secured controller "
        "(client-cert.der, client-key.pem, server-cert.der).",
    )
    @functools.wraps(command)
    def with_endpoint(*args: Any, url: str, pki: Path | None, **kwargs: Any) -> Any:
        return command(*args, endpoint=Endpoint(url, pki), **kwargs)

    return cast(_F, with_endpoint)


user_option = click.option(
    "--user", default=lambda: os.environ.get("USER", ""), help="Who acts (GMP: password asked)."
)


@click.group(name="controller")
def controller_group() -> None:
    """The long-running controller."""


@controller_group.command("serve")
@click.option(
    "--plant",
    "plant_path",
    default=default_plant,
    show_default="the packaged demo plant (plants/demo.toml)",
)
@click.option(
    "--db",
    "db_url",
    default=lambda: os.environ.get("CELLBATCH_DB", "sqlite:///cellbatch.sqlite"),
    help="Store URL (default $CELLBATCH_DB or ./cellbatch.sqlite).",
)
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="OPC UA endpoint.")
@click.option(
    "--pki",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Certificate folder (server-cert.der, server-key.pem, trusted/): the interface "
    "then offers only Basic256Sha256 SignAndEncrypt to trusted terminals.",
)
@click.option(
    "--simulated-operator",
    is_flag=True,
    help="Simulation plants only: answer every prompt with the recipe's example answer.",
)
@click.option(
    "--recipes",
    "recipe_folders",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder of recipes `batch start` may name (repeatable; default the packaged library).",
)
@click.option(
    "--standby",
    is_flag=True,
    help="Run no batches of its own: watch the unit leases and take over the batches of a "
    "controller that dies (Held, waiting for a person's restart).",
)
@click.option(
    "--lease-ttl",
    "lease_ttl_s",
    type=click.FloatRange(1.5, 300.0),
    default=SERVE_LEASE_TTL_S,
    show_default=True,
    help="Seconds a unit lease outlives this controller's last renewal (renewed every "
    "third of it): how soon a standby takes over after it dies or stalls.",
)
@endpoints_option
def serve(
    plant_path: str,
    db_url: str,
    listen: str,
    pki: Path | None,
    simulated_operator: bool,
    recipe_folders: tuple[Path, ...],
    standby: bool,
    lease_ttl_s: float,
    endpoints_path: str | None,
) -> None:
    """Run the engine: recover interrupted batches (Held, waiting for restart), then take
    requests on the OPC UA interface until SIGINT/SIGTERM (running batches are held).
    Several controllers may share one PostgreSQL store and plant: units are bound by
    lease; a --standby takes over a dead controller's batches."""
    problem = opc_url_problem(listen)
    if problem is not None:
        raise click.UsageError(f"--listen {problem}")
    plant = load_plant(plant_path)
    if endpoints_path is not None:
        plant = at_endpoints(plant, endpoints_path)
    if simulated_operator and not plant.simulation:
        raise click.UsageError("--simulated-operator is only allowed on a simulation plant")
    board = PromptBoard(require_signatures=not plant.simulation)
    if simulated_operator:
        board.answerer = simulated_answers(board)
    try:
        service = ControllerService(
            plant,
            db_url,
            listen,
            board,
            pki,
            recipe_folders or (DEFAULT_LIBRARY,),
            standby=standby,
            lease_ttl_s=lease_ttl_s,
            report=_say,
        )
    except InterfaceSecurityError as exc:
        raise click.UsageError(f"--pki {exc}") from None
    asyncio.run(_serve(service))


def _say(line: str) -> None:
    """A line on stdout at once (a supervisor or test reads it as it comes)."""
    click.echo(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {line}")
    sys.stdout.flush()


async def _serve(service: ControllerService) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        recipes = service.library.recipes
        click.echo(f"recipes: {len(recipes)} in the library")
        for problem in service.library.problems:
            click.echo(f"recipe not loaded: {problem}", err=True)
        for batch_id in service.recovered:
            click.echo(f"recovered {batch_id}: Held, waiting for restart")
        for problem in service.recovery_errors:
            click.echo(f"not recovered: {problem}", err=True)
        for elsewhere in service.elsewhere:
            click.echo(f"left to its controller: {elsewhere}")
        if service.role == "standby":
            ttl = service.controller.lease_ttl_s
            click.echo(f"standby: watching the unit leases (ttl {ttl} s)")
        click.echo(f"listening {service.endpoint}")
        click.echo("ready")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await service.stop()


@click.group(name="batch")
def batch_group() -> None:
    """Operate batches on a running controller (exit 0 done, 1 refused with the reason)."""


def _run(endpoint: Endpoint, method: str, *args: str) -> Any:
    try:
        return asyncio.run(call(endpoint, method, *args))
    except ServiceError as exc:
        click.echo(f"cellbatch: {exc}", err=True)
        sys.exit(1)


def _password(endpoint: Endpoint, user: str) -> str:
    """The user's password when the controller runs a GMP plant ('' in simulation)."""
    info = _run(endpoint, "Info")
    return "" if info.get("simulation") else password_of(user)


def _done(answer: dict[str, Any], line: str) -> None:
    if not answer.get("ok"):
        click.echo(f"refused: {answer.get('message')}", err=True)
        sys.exit(1)
    click.echo(line)


def _say_storage(endpoint: Endpoint) -> None:
    """First of all, that the controller's store cannot commit (while it cannot)."""
    line = storage_banner(_run(endpoint, "Info"))
    if line:
        click.echo(line)


@batch_group.command("list")
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def batch_list(endpoint: Endpoint, as_json: bool) -> None:
    """Batches of the running controller."""
    batches = _run(endpoint, "List")
    if as_json:
        click.echo(json.dumps(batches, indent=2))
        return
    _say_storage(endpoint)
    alerts = _run(endpoint, "Alerts")  # R12: shown to whoever looks at the batches
    if not isinstance(alerts, list):  # refused, e.g. while the store cannot be read
        click.echo(f"cellbatch: account alerts unavailable: {alerts.get('message')}", err=True)
    for alert in alerts if isinstance(alerts, list) else []:
        click.echo(alert_line(alert))
    if not batches:
        click.echo("no batches")
    for b in batches:
        prompts = f"  {b['prompts']} prompt(s) open" if b["prompts"] else ""
        alarms = f"  {b['open_alarms']} alarm(s) to acknowledge" if b["open_alarms"] else ""
        why = f"  ({b['why']})" if b.get("why") else ""
        click.echo(f"{b['id']}  {b['state']:<10} {b['recipe']}  {b['coi']}{prompts}{alarms}{why}")


@batch_group.command("show")
@click.argument("batch_id")
@endpoint_option
@click.option("--json", "as_json", is_flag=True, help="Print the controller's JSON answer.")
def batch_show(batch_id: str, endpoint: Endpoint, as_json: bool) -> None:
    """One batch: state and why, process time, active elements with time in phase,
    process values (PV, SP, limits, quality, age, trend), alarms, open prompts with
    what to enter."""
    answer = _run(endpoint, "Show", batch_id)
    if not answer.get("ok"):
        _done(answer, "")
    if as_json:
        click.echo(json.dumps({k: v for k, v in answer.items() if k != "ok"}, indent=2))
        return
    _say_storage(endpoint)
    click.echo("\n".join(show_lines(answer)))


@batch_group.command("watch")
@click.argument("batch_id")
@endpoint_option
@click.option(
    "--interval", type=click.FloatRange(0.1, 60.0), default=1.0, show_default=True,
    help="Seconds between two looks at the batch.",
)  # fmt: skip
def batch_watch(batch_id: str, endpoint: Endpoint, interval: float) -> None:
    """Stream a batch's state changes, hold/stop reasons, alarms and prompts, one line
    each with the UTC time, until the batch ends (exit 0) or Ctrl-C."""
    try:
        code = asyncio.run(watch(endpoint, batch_id, interval, click.echo))
    except KeyboardInterrupt:
        click.echo("stopped watching", err=True)
        code = 0
    except ServiceError as exc:
        click.echo(f"cellbatch: {exc}", err=True)
        code = 1
    sys.exit(code)


@batch_group.command("start")
@click.argument("recipe")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE")
@click.option("--coi", default="", help="Chain-of-identity ID.")
@endpoint_option
@user_option
def batch_start(
    recipe: str, params: tuple[str, ...], coi: str, endpoint: Endpoint, user: str
) -> None:
    """Start a batch of RECIPE on the controller: name@version, name or content hash of a
    recipe in the controller's library — or a local recipe file, which is read here and
    named by its content hash (the controller runs only what its library holds)."""
    values: dict[str, float] = {}
    for item in params:
        name, sep, value = item.partition("=")
        try:
            values[name] = float(value)
        except ValueError:
            sep = ""
        if sep and not math.isfinite(values[name]):
            raise click.UsageError(f"--param {item!r}: the value must be a finite number")
        if not sep:
            raise click.UsageError(f"--param {item!r}: want NAME=NUMBER")
    reference = recipe
    if Path(recipe).is_file():
        try:
            reference = load_recipe(Path(recipe)).content_hash
        except RecipeError as exc:
            for diagnostic in exc.diagnostics:
                click.echo(str(diagnostic), err=True)
            sys.exit(1)
    password = _password(endpoint, user)
    answer = _run(endpoint, "Start", reference, json.dumps(values), coi, user, password)
    _done(answer, f"batch {answer.get('batch_id')}")


def _make_command(command: str) -> click.Command:
    @click.argument("batch_id")
    @click.option("--reason", default="", help="Why (journaled).")
    @endpoint_option
    @user_option
    def act(batch_id: str, reason: str, endpoint: Endpoint, user: str) -> None:
        password = _password(endpoint, user)
        answer = _run(endpoint, "Command", batch_id, command, user, password, reason)
        _done(answer, f"{batch_id}: {command} accepted ({answer.get('state')})")

    act.__doc__ = f"Send '{command}' to a batch (journaled with user and reason)."
    return click.command(command)(act)


for _command in COMMANDS:
    batch_group.add_command(_make_command(_command))


@batch_group.command("step")
@click.argument("batch_id")
@click.argument("path")
@click.option("--force", "action", flag_value="force", help="Complete the running phase now.")
@click.option("--skip", "action", flag_value="skip", help="Skip a phase still to come.")
@click.option(
    "--repeat",
    "action",
    flag_value="repeat",
    help="Run a held phase again from its start on the next restart.",
)
@click.option("--reason", required=True, help="Why (journaled with the signature).")
@endpoint_option
@user_option
def batch_step(
    batch_id: str, path: str, action: str | None, reason: str, endpoint: Endpoint, user: str
) -> None:
    """A supervisor's override of one phase (R7): --force, --skip or --repeat PATH (signed
    on a GMP plant, journaled, listed by review). --repeat needs the phase Held; `batch
    restart` then runs it again from its start with the same parameters."""
    if action is None:
        click.echo("error: give --force, --skip or --repeat", err=True)
        sys.exit(1)
    password = _password(endpoint, user)
    answer = _run(endpoint, "Override", batch_id, action, path, user, password, reason)
    _done(answer, f"{batch_id}: {action} {path} accepted ({answer.get('state')})")


@batch_group.command("answer")
@click.argument("prompt_id")
@click.option("--value", "values", multiple=True, metavar="NAME=VALUE", help="One entry.")
@click.option("--verifier", default="", help="Second person (verified prompts).")
@click.option("--comment", default="", help="Comment journaled with the answer.")
@endpoint_option
@user_option
def batch_answer(
    prompt_id: str,
    values: tuple[str, ...],
    verifier: str,
    comment: str,
    endpoint: Endpoint,
    user: str,
) -> None:
    """Answer an open operator prompt (IDs in `batch show`). Numbers are sent as numbers.
    On a GMP plant both people give their passwords (verifier: CELLBATCH_VERIFIER_PASSWORD
    without a terminal)."""
    entries: dict[str, float | str] = {}
    for item in values:
        name, sep, text = item.partition("=")
        if not sep:
            raise click.UsageError(f"--value {item!r}: want NAME=VALUE")
        try:
            entries[name] = float(text)
        except ValueError:
            entries[name] = text
    password = _password(endpoint, user)
    verifier_password = ""
    if verifier and password:
        verifier_password = (
            str(click.prompt(f"password for {verifier}", hide_input=True))
            if sys.stdin.isatty()
            else os.environ.get("CELLBATCH_VERIFIER_PASSWORD", "")
        )
    answer = _run(
        endpoint, "Answer", prompt_id, json.dumps(entries), user, password, verifier,
        verifier_password, comment,
    )  # fmt: skip
    _done(answer, f"{prompt_id}: answered")


@batch_group.command("ack")
@click.argument("batch_id")
@click.argument("alarm", type=int)
@click.option("--comment", default="", help="Comment journaled with the acknowledgement.")
@endpoint_option
@user_option
def batch_ack(batch_id: str, alarm: int, comment: str, endpoint: Endpoint, user: str) -> None:
    """Acknowledge an open alarm of a batch (ALARM: its number in `batch show`)."""
    password = _password(endpoint, user)
    answer = _run(endpoint, "Acknowledge", batch_id, str(alarm), user, password, comment)
    _done(answer, f"{batch_id}: alarm {alarm} acknowledged")


@click.command("hmi")
@endpoint_option
@user_option
def hmi(endpoint: Endpoint, user: str) -> None:
    """The operator's terminal HMI on a running controller, usable from 80×24: process
    values, alarms and prompts of the selected batch and why it is held (keys: h hold,
    r restart, p pause, u resume, s stop, a abort — with a reason, stop and abort
    confirmed —, n answer a prompt in its form, k acknowledge an alarm, 1 2 3 views,
    l sign in, ? keys, q quit). On a GMP plant every prompt answer asks for the signer's
    password again, and after 15 minutes without use the HMI signs out (l: user ID and
    password)."""
    from cellbatch.hmi import BatchHmi

    password = _password(endpoint, user)
    if password:  # GMP: sign in now, not at the first action
        _done(_run(endpoint, "SignIn", user, password), f"signed in as {user}")
    BatchHmi(endpoint, user, password).run()
