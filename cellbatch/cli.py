"""The ``cellbatch`` command line (contract: shared/design/CLI.md).

Errors are plain lines on stderr with a non-zero exit code; ``--debug`` shows
the traceback of an unexpected one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import math
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from cellbatch.cli_common import default_plant, password_of, plain_errors, second_password
from cellbatch.console import echo_events
from cellbatch.deviation_cli import deviation as deviation_group
from cellbatch.ebr_cli import ebr as ebr_group
from cellbatch.keys_cli import keys as keys_group
from cellbatch.lot_cli import lot as lot_group
from cellbatch.plant_cli import plant_group, profile_group
from cellbatch.ports import (
    at_endpoints,
    endpoint_map,
    endpoints_option,
    on_free_ports,
    remove_endpoints,
    write_endpoints,
)
from cellbatch.service_cli import batch_group, controller_group
from cellbatch.service_cli import hmi as hmi_command
from cellbatch.terminal import terminal_operator
from cellbatch.trend_cli import trend as trend_command
from cellbatch.users_cli import users as users_group
from controller import __version__
from controller.isa88 import Command, Element, State
from controller.plant import Plant, PlantError, load_plant
from controller.prompts import (
    PROMPT_PHASES,
    Answerer,
    PromptBoard,
    answers_from,
    read_answers,
    simulated_operator,
)
from controller.resume import ResumeError
from controller.session import BatchSetupError, Controller
from controller.who import Who, local_terminal
from drivers import Disconnected, DriverError
from ebr import EbrError, Store
from ebr.people.duties import DutyRefused, check_may_act
from ebr.people.lifecycle import RecipeId, approve, recipe_status, retire
from ebr.people.signatures import SigningSession
from ebr.people.users import Directory, User
from recipes import Recipe, RecipeError, load_recipe, parse_recipe, recipe_json_schema
from recipes.transfer import transfer

USER_ERRORS = (
    RecipeError,
    PlantError,
    BatchSetupError,
    ResumeError,
    EbrError,
    DriverError,
    OSError,
)


def default_db() -> str:
    """``--db`` default: ``CELLBATCH_DB``, else a SQLite file in the working directory."""
    return os.environ.get("CELLBATCH_DB", "sqlite:///cellbatch.sqlite")


db_option = click.option(
    "--db",
    "db_url",
    default=default_db,
    show_default="$CELLBATCH_DB or ./cellbatch.sqlite",
    help="Store URL (sqlite:///FILE or postgresql+psycopg://…).",
)
plant_option = click.option(
    "--plant",
    "plant_path",
    default=default_plant,
    show_default="the packaged demo plant (plants/demo.toml)",
    type=click.Path(dir_okay=False),
    help="Plant file.",
)
scale_option = click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Simulation clock speed (1 = real time; default from the plant file).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cellbatch")
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
def cli(debug: bool) -> None:
    """cellbatch: ISA-88 batch control and tamper-evident batch records for cell therapy."""


cli.add_command(ebr_group, "ebr")
cli.add_command(users_group, "users")
cli.add_command(keys_group, "keys")
cli.add_command(controller_group, "controller")
cli.add_command(batch_group, "batch")
cli.add_command(hmi_command, "hmi")
cli.add_command(deviation_group, "deviation")
cli.add_command(lot_group, "lot")
cli.add_command(trend_command, "trend")
cli.add_command(plant_group, "plant")
cli.add_command(profile_group, "profile")


# -- recipe ------------------------------------------------------------------------------


@cli.group()
def recipe() -> None:
    """Check and inspect master recipes."""


@recipe.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def recipe_validate(files: tuple[str, ...]) -> None:
    """Check recipes; each error as FILE:LINE:COL: message."""
    bad = 0
    for path in files:
        try:
            r = load_recipe(path)
        except RecipeError as exc:
            bad += 1
            for diag in exc.diagnostics:
                click.echo(str(diag), err=True)
            continue
        click.echo(
            f"{path}: ok ({r.header.name} {r.header.version}, {r.header.status}, "
            f"sha256 {r.content_hash[:12]}…)"
        )
    sys.exit(1 if bad else 0)


@recipe.command("schema")
def recipe_schema() -> None:
    """Print the JSON Schema of the recipe format (for editors)."""
    click.echo(json.dumps(recipe_json_schema(), indent=2))


@recipe.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
def recipe_show(file: str) -> None:
    """Procedure tree, formula, equipment classes, monitors."""
    r = load_recipe(file)
    h = r.header
    click.echo(f"{h.name} {h.version} [{h.status}]  {h.product}")
    click.echo(f"  author: {h.author}   content sha256: {r.content_hash}")
    click.echo("formula:")
    for p in r.formula.values():
        limits = f"[{'' if p.min is None else p.min} … {'' if p.max is None else p.max}]"
        click.echo(f"  {p.name:<28} {p.value:>12g} {p.unit:<10} {limits}")
    click.echo("equipment:")
    for alias, req in r.equipment.items():
        click.echo(f"  {alias:<28} class {req.equipment_class}")
    if h.site:
        click.echo(f"  site recipe for {h.site}, from master sha256 {h.master_sha256}")
    click.echo("monitors:")
    for m in r.monitors:
        click.echo(
            f"  {m.name:<16} {m.unit}.{m.tag:<22} alert [{m.alert_low}, {m.alert_high}] "
            f"action [{m.action_low}, {m.action_high}] {m.engineering_unit} → {m.action}"
        )
        if m.criticality:
            click.echo(
                f"    {m.criticality:<14} NOR {m.nor or '-'}  PAR {m.par or '-'} "
                f"{m.engineering_unit}"
            )
        if m.rationale:
            click.echo(f"    rationale: {m.rationale}")
    click.echo("cqas:")
    for c in r.cqas:
        click.echo(f"  {c.name:<22} spec {c.specification():<20} method {c.method}")
    click.echo(f"procedure {r.procedure.name}:")
    for up in r.procedure.unit_procedures:
        click.echo(f"  unit procedure {up.name} on {up.unit}")
        for op in up.operations:
            click.echo(f"    operation {op.name}")
            for ph in op.phases:
                click.echo(f"      phase {ph.name} ({ph.type})")


@recipe.command("transfer")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--site", required=True, help="The receiving site's ID.")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="Site recipe to write."
)
@click.option(
    "--ranges",
    "ranges",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML of narrowed ranges (formula min/max, monitor bands, CQA specs).",
)
def recipe_transfer(file: str, site: str, out: str, ranges: str | None) -> None:
    """Make a site recipe from a master; ranges may only be narrowed, never widened."""
    text = transfer(file, site, ranges)
    Path(out).write_text(text, encoding="utf-8")
    made = parse_recipe(text, out)
    click.echo(f"{out}: site recipe for {site} (sha256 {made.content_hash[:12]}…, draft)")


def _recipe_id(file: str) -> RecipeId:
    r = load_recipe(file)
    return RecipeId(r.header.name, r.header.version, r.content_hash)


@recipe.command("status")
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
@plain_errors
def recipe_status_command(file: str, db_url: str) -> None:
    """The recorded lifecycle status (draft, approved, retired) of this exact recipe content."""
    version = _recipe_id(file)
    with Store.open(db_url, create=False) as store:
        click.echo(f"{version}: {recipe_status(store, version)}")


@recipe.command("approve")
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
@click.option("--comment", default=None, help="Optional comment on the approval.")
@click.option("--user", "username", required=True, help="QA or QP approving (password asked).")
@plain_errors
def recipe_approve(file: str, db_url: str, comment: str | None, username: str) -> None:
    """Approve this exact recipe content for GMP use (a QA or QP signature, 'approved').

    The file must declare `status: approved`: the signature binds to the content hash, so
    the content approved is exactly the content that runs.
    """
    r = load_recipe(file)
    if r.header.status != "approved":
        raise click.UsageError(
            f"{file} declares status {r.header.status!r}; set `status: approved` in the file "
            "first (the approval signs the exact content that will run)"
        )
    version = _recipe_id(file)
    with Store.open(db_url) as store:
        approve(store, Directory(store), username, password_of(username), version, comment)
    click.echo(f"{version}: approved by {username}")


@recipe.command("retire")
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
@click.option("--reason", required=True, help="Why the version is withdrawn.")
@click.option("--user", "username", required=True, help="QA or QP retiring (password asked).")
@plain_errors
def recipe_retire(file: str, db_url: str, reason: str, username: str) -> None:
    """Retire an approved recipe version: GMP plants no longer run it (signed)."""
    version = _recipe_id(file)
    with Store.open(db_url, create=False) as store:
        retire(store, Directory(store), username, password_of(username), version, reason)
    click.echo(f"{version}: retired by {username}")


# -- simulators ------------------------------------------------------------------------


@cli.group()
def sim() -> None:
    """Instrument simulators."""


@sim.command("serve")
@plant_option
@scale_option
@click.option(
    "--faults",
    "faults_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML fault schedule ([[fault]] tables; times in wall seconds after ready).",
)
@click.option(
    "--free-ports",
    is_flag=True,
    help="Bind every simulator on a free port (and make no pty symlinks) instead of the "
    "plant file's addresses; the lines printed name the URLs really bound.",
)
@click.option(
    "--endpoints",
    "endpoints_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the endpoints really bound to this file (JSON) for `run` and `controller "
    "serve --endpoints FILE`; removed when the simulators stop.",
)
def sim_serve(
    plant_path: str,
    time_scale: float | None,
    faults_path: str | None,
    free_ports: bool,
    endpoints_path: Path | None,
) -> None:
    """Start every simulator of the plant file and serve until SIGINT/SIGTERM."""
    from simulators.fault_file import FaultFileError, load_fault_file

    plant = load_plant(plant_path)
    if not plant.simulators:
        raise click.ClickException(f"{plant_path}: the plant defines no [[simulators]]")
    try:
        schedule = load_fault_file(faults_path) if faults_path else []
        specs = on_free_ports(plant.simulators) if free_ports else list(plant.simulators)
        asyncio.run(_serve(specs, time_scale or plant.time_scale, schedule, plant, endpoints_path))
    except FaultFileError as exc:
        raise click.ClickException(str(exc)) from None


async def _serve(
    specs: Sequence[Mapping[str, object]],
    scale: float,
    schedule: list[Any],
    plant: Plant,
    endpoints_path: Path | None,
) -> None:
    from simulators.fault_file import check_schedule, run_schedule
    from simulators.launch import start_simulators

    sims = await start_simulators([dict(s) for s in specs], scale)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    faults: asyncio.Task[None] | None = None
    written = False  # only our own endpoints file is removed (the path may be another's)
    try:
        check_schedule(schedule, sims.boards)
        if endpoints_path is not None:
            write_endpoints(endpoints_path, plant, endpoint_map(plant.simulators, sims.endpoints))
            written = True
        for name, url in sims.endpoints.items():
            click.echo(f"{name} {url}")
        click.echo("ready")
        sys.stdout.flush()
        if schedule:
            faults = asyncio.create_task(run_schedule(schedule, sims.boards))
        await stop.wait()
    finally:
        if faults is not None:
            faults.cancel()
            await asyncio.wait({faults})
        if endpoints_path is not None and written:
            remove_endpoints(endpoints_path)  # the endpoints die with the simulators
        await sims.stop()


# -- demo --------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--out", "out_dir", default="demo-out", show_default=True, type=click.Path(file_okay=False)
)
@scale_option
@click.option("--db", "db_url", default=None, help="Store URL (default: a SQLite file in --out).")
@plant_option
@click.option(
    "--recipe",
    "recipe_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Recipe (default: the CAR-T expansion).",
)
@click.option(
    "--plant-ports",
    is_flag=True,
    help="Serve the simulators at the plant file's addresses (default: free ports, so "
    "several demos can run at once; the addresses bound are printed).",
)
@click.option(
    "--batches", type=click.IntRange(min=1), default=None,
    help="Run N batches with seeded per-batch biology, then draw their trend charts.",
)  # fmt: skip
@click.option("--sites", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --batches: spread the batches over K sites.")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True,
              help="With --batches: seed of the simulated biology.")  # fmt: skip
def demo(
    out_dir: str,
    time_scale: float | None,
    db_url: str | None,
    plant_path: str,
    recipe_path: str | None,
    plant_ports: bool,
    batches: int | None,
    sites: int,
    seed: int,
) -> None:
    """Simulators + controller in one process: one CAR-T batch to completion (or N)."""
    from cellbatch.demo import DEFAULT_RECIPE, run_demo

    plant = load_plant(plant_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    url = db_url or f"sqlite:///{out / 'demo.sqlite'}"
    if batches is not None:
        from cellbatch.demo_batches import demo_batches

        ran, figures, files = demo_batches(
            plant, Path(recipe_path) if recipe_path else DEFAULT_RECIPE, db_url=url,
            out_dir=out, batches=batches, sites=sites, seed=seed, time_scale=time_scale,
        )  # fmt: skip
        for batch in figures:
            shown = ", ".join(f"{k} {v:.3g}" for k, v in batch.figures.items()
                              if v is not None and not k.startswith("excursion"))  # fmt: skip
            click.echo(f"  {batch.batch_id} {batch.site}: {shown}")
        for path in files:
            click.echo(f"  wrote {path}")
        click.echo(f"  trends: cellbatch trend car-t-expansion --db {url}")
        sys.exit(0 if all(b.state is State.COMPLETE for b in ran) else 1)
    result = asyncio.run(
        run_demo(
            plant,
            db_url=url,
            out_dir=out,
            time_scale=time_scale,
            recipe_path=Path(recipe_path) if recipe_path else DEFAULT_RECIPE,
            free_ports=not plant_ports,
        )
    )
    click.echo(f"batch {result.batch_id}: {result.state.value}")
    click.echo(f"  {result.simulated_days:.2f} simulated days in {result.wall_s:.1f} s wall time")
    click.echo(
        f"  record: {result.events} journal events, {result.samples} process samples, "
        f"{result.alarms} alarms, {result.exceptions} exceptions for review "
        f"(cellbatch ebr review {result.batch_id} --db {url})"
    )
    for f in result.files:
        click.echo(f"  wrote {f}")
    click.echo(f"  verify: cellbatch ebr verify {result.batch_id} --db {url}")
    sys.exit(0 if result.state is State.COMPLETE else 1)


# -- run ---------------------------------------------------------------------------------


def _parse_params(values: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name.strip()] = float(raw)
            if not math.isfinite(out[name.strip()]):
                raise ValueError
        except ValueError:
            raise click.BadParameter(
                f"expected NAME=NUMBER (a finite number), got {item!r}", param_hint="--param"
            ) from None
    return out


@cli.command()
@click.argument("recipe_file", required=False, type=click.Path(dir_okay=False))
@plant_option
@db_option
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a formula parameter (within its limits).",
)
@click.option("--coi", default=None, help="Chain-of-identity ID of the patient therapy.")
@click.option("--user", default=None, help="Who starts (or resumes) the batch.")
@click.option(
    "--resume",
    "resume_id",
    default=None,
    metavar="BATCH_ID",
    help="Continue an interrupted batch from its last journaled point.",
)
@click.option(
    "--answers",
    "answers_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="YAML/JSON file answering operator prompts, keyed by phase path or name.",
)
@click.option(
    "--simulated-operator",
    is_flag=True,
    help="Simulation plants only: answer every prompt with the recipe's example answer.",
)
@click.option(
    "--asset-override",
    "asset_qa",
    default=None,
    metavar="QA_USER",
    help="Start although a bound unit is out of calibration, unqualified or reports another "
    "serial number than the plant file: QA_USER (role qa) signs it with --reason (password "
    "asked, else CELLBATCH_VERIFIER_PASSWORD).",
)
@click.option("--reason", default=None, help="Why the asset override is justified.")
@endpoints_option
@scale_option
def run(
    recipe_file: str | None,
    plant_path: str,
    db_url: str,
    params: tuple[str, ...],
    coi: str | None,
    user: str | None,
    resume_id: str | None,
    answers_path: str | None,
    simulated_operator: bool,
    asset_qa: str | None,
    reason: str | None,
    endpoints_path: str | None,
    time_scale: float | None,
) -> None:
    """Run one batch headless in the foreground; Ctrl-C holds it and exits.

    The first line of output is `batch <ID>`, then one line per state change.
    With --resume, the batch comes back Held where its journal ends and restarts.
    """
    if (recipe_file is None) == (resume_id is None):
        raise click.UsageError("give either RECIPE_FILE or --resume BATCH_ID")
    if (asset_qa is None) != (reason is None or not reason.strip()):
        raise click.UsageError("--asset-override QA_USER and a non-empty --reason go together")
    if asset_qa is not None and resume_id is not None:
        raise click.UsageError("--asset-override belongs to a new batch, not to --resume")
    plant = load_plant(plant_path)
    if time_scale is not None:  # the instruments' own clock still wins where they have one
        plant = dataclasses.replace(plant, time_scale=time_scale)
    if endpoints_path is not None:
        plant = at_endpoints(plant, endpoints_path)
    if simulated_operator and not plant.simulation:
        raise click.UsageError("--simulated-operator is only allowed on a simulation plant")
    operator = OperatorChoice(answers_path, simulated_operator, user)
    if not plant.simulation:
        operator.sign_in(db_url)
    if resume_id is not None:
        if params or coi:
            raise click.UsageError("--param and --coi belong to a new batch, not to --resume")
        batch = _run(plant, db_url, user, operator, resume_id=resume_id)
    else:
        assert recipe_file is not None
        recipe_ = load_recipe(recipe_file)
        operator.check_recipe(recipe_)
        overrides = _parse_params(params)
        asset = None
        if asset_qa is not None and reason is not None:
            asset = (_asset_approver(db_url, asset_qa), reason.strip())
        batch = _run(plant, db_url, user, operator, recipe_, overrides, coi, asset_override=asset)
    try:
        state = asyncio.run(batch)
    except Disconnected as exc:
        if not plant.simulators or endpoints_path is not None:
            raise
        raise Disconnected(
            f"{exc}; are its simulators running (`cellbatch sim serve --plant {plant_path}`)? "
            "Served on free ports, pass --endpoints FILE as written by `sim serve --free-ports "
            "--endpoints FILE`"
        ) from None
    sys.exit(0 if state is State.COMPLETE else 1)


def _asset_approver(db_url: str, username: str) -> User:
    """The QA account approving an asset override, authenticated; anyone without the
    `asset_override` role is refused (SOD-ROLE) and the refusal journaled."""
    store = Store.open(db_url)
    try:
        signing = SigningSession(Directory(store))
        account = signing.authenticate(
            second_password(username), "cellbatch run --asset-override", username=username
        )
        try:
            check_may_act(account.username, account.roles, "asset_override")
        except DutyRefused as refusal:
            signing.directory.refuse(account, "cellbatch run --asset-override", refusal)
        return account
    finally:
        store.close()


class OperatorChoice:
    """Who answers operator prompts in `cellbatch run`."""

    def __init__(self, answers_path: str | None, simulated: bool, user: str | None) -> None:
        if answers_path and simulated:
            raise click.UsageError("give --answers or --simulated-operator, not both")
        self.answers_path = answers_path
        self.simulated = simulated
        self.named = user is not None
        self.user = user or getpass.getuser()
        self.signing: SigningSession | None = None
        self.answers = _load_answers(answers_path, None) if answers_path else None

    def sign_in(self, db_url: str) -> None:
        """GMP plants: the person running the batch signs in; every answer will be signed."""
        if self.answers_path:
            raise click.UsageError(
                "a GMP plant takes answers only from authenticated people at a terminal, "
                "not from an --answers file"
            )
        if not self.named:
            raise click.UsageError("a GMP plant needs --user NAME (the person running the batch)")
        # Kept open for the whole run: each signature at a prompt authenticates again.
        store = Store.open(db_url)
        self.signing = SigningSession(Directory(store))
        account = self.signing.authenticate(
            password_of(self.user), "cellbatch run", username=self.user
        )
        try:
            check_may_act(account.username, account.roles, "start")
        except DutyRefused as refusal:
            self.signing.directory.refuse(account, "cellbatch run", refusal)

    def check_recipe(self, recipe_: Recipe) -> None:
        """Refuse to start unattended a recipe whose prompts nobody could answer, and an
        answers file that does not fit the recipe's prompts."""
        if self.answers_path:
            self.answers = _load_answers(self.answers_path, recipe_)
        asks = [
            p.name for _path, _up, _op, p in recipe_.procedure.walk() if p.type in PROMPT_PHASES
        ]
        if asks and not (self.simulated or self.answers is not None or sys.stdin.isatty()):
            raise click.UsageError(
                f"{recipe_.header.name} asks the operator {len(asks)} question(s) and there is "
                "no terminal: give --answers FILE (or --simulated-operator on a simulation plant)"
            )

    def answerer(self, board: PromptBoard) -> Answerer | None:
        """The answering policy for a prompt board."""
        if self.simulated:
            return simulated_operator(board)
        if self.answers is not None:
            return answers_from(board, self.answers, str(self.answers_path))
        if sys.stdin.isatty():
            return terminal_operator(board, self.user, self.signing)
        return None


def _load_answers(path: str, recipe_: Recipe | None) -> dict[str, dict[str, Any]]:
    """The answers file, checked against the recipe's prompts when it is known (every
    problem as FILE:LINE:COL: message, before the batch starts)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--answers") from None
    return read_answers(text, path, recipe_)


async def _run(
    plant: Plant,
    db_url: str,
    user: str | None,
    operator: OperatorChoice,
    recipe_: Recipe | None = None,
    overrides: dict[str, float] | None = None,
    coi: str | None = None,
    *,
    resume_id: str | None = None,
    asset_override: tuple[User, str] | None = None,
) -> State:
    board = PromptBoard(require_signatures=not plant.simulation)
    board.answerer = operator.answerer(board)
    controller = Controller(plant, db_url, user=user, prompts=board)
    await controller.start()
    try:
        if resume_id is not None:
            batch = await controller.resume_batch(resume_id)
        else:
            assert recipe_ is not None
            batch = await controller.create_batch(
                recipe_, parameters=overrides, coi=coi, asset_override=asset_override
            )
        batch_id = batch.control.batch_id
        # Ctrl-C holds the batch from the moment its ID is out (before anything runs).
        interrupted = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted.set)
        click.echo(f"batch {batch_id}")

        def watch(el: Element, _src: State, dst: State) -> None:
            click.echo(f"{batch.clock.now():%Y-%m-%dT%H:%M:%SZ} {el.level} {el.path} {dst.value}")

        batch.watchers.append(watch)
        signed_in = operator.signing.user if operator.signing is not None else None
        who = Who.of(controller.user, local_terminal(), signed_in)
        batch.recorder.listeners.append(echo_events())
        task = asyncio.create_task(controller.run(batch))
        if resume_id is not None:
            await asyncio.wait(
                {task, asyncio.create_task(batch.ready.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            if not task.done():
                restarted = await batch.command(
                    Command.RESTART,
                    user=controller.user,
                    reason="resumed after an interruption",
                    who=who,
                )
                if not restarted:  # e.g. an action alarm still open: the batch stays Held
                    click.echo(f"batch {batch_id} stays held: {batch.last_refusal}", err=True)
        waiter = asyncio.create_task(interrupted.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await batch.command(
                Command.HOLD, user=controller.user, reason="Ctrl-C at the terminal", who=who
            )
            click.echo(
                f"batch {batch_id} held; continue with: cellbatch run --resume {batch_id}", err=True
            )
            task.cancel()
            return batch.state
        waiter.cancel()
        return task.result()
    finally:
        await controller.stop()


def main() -> None:
    """Console entry point: no tracebacks for users unless --debug."""
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(prog_name="cellbatch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("cellbatch: interrupted", err=True)
        sys.exit(130)
    except RecipeError as exc:
        for diag in exc.diagnostics:
            click.echo(str(diag), err=True)
        sys.exit(1)
    except USER_ERRORS as exc:
        click.echo(f"cellbatch: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"cellbatch: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)",
            err=True,
        )
        sys.exit(1)
