"""``cellbatch plant check PLANT [--recipe FILE]``: is this plant file, and every
device profile it binds, fit to run (this recipe)?

Checks, listing every problem (``FILE:LINE:COL: message`` for file problems):

1. the plant file against its schema;
2. each unit's profile against the profile schema, and the unit's ``class`` against
   the profile's ``equipment_class``;
3. with ``--recipe``: the recipe is valid, and a unit of each class it needs exists;
4. connecting to every unit: every capability of its profile reads (not Bad) and,
   where the profile says writable, the instrument allows writing (OPC UA AccessLevel);
   with ``--recipe``, every capability and method its phases and monitors need
   (:mod:`controller.contracts`). Nothing is ever written.

Exit 0 when all is good, 1 with the problems listed.
"""

from __future__ import annotations

import asyncio
import re
import sys

import click

from controller.contracts import Need, check_devices, recipe_needs
from controller.plant import Plant, PlantError, UnitConfig, load_plant
from drivers import Device, DevicePool, DriverError, ProfileError, load_profile
from drivers.discover import discover, draft_profile
from drivers.tomlpos import load_located
from recipes import Recipe, RecipeError, load_recipe

_LOCATED = re.compile(r"^\S+:\d+:\d+: ")


@click.group("plant")
def plant_group() -> None:
    """Plant files: check them against the instruments."""


@plant_group.command("check")
@click.argument("plant_path", metavar="PLANT", type=click.Path(dir_okay=False))
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False), help="Recipe file.")
@click.option("--offline", is_flag=True, help="Check the files only; connect to nothing.")
def plant_check(plant_path: str, recipe_path: str | None, offline: bool) -> None:
    """Check PLANT (and its profiles, and --recipe) against the instruments."""
    problems, checked = asyncio.run(_check(plant_path, recipe_path, offline))
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        click.echo(f"plant check: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"plant check: ok ({checked})")


async def _check(plant_path: str, recipe_path: str | None, offline: bool) -> tuple[list[str], str]:
    try:
        plant = load_plant(plant_path)
    except PlantError as exc:
        return str(exc).splitlines(), ""
    problems: list[str] = []
    for i, unit in enumerate(plant.units):
        problems += _unit_file_problems(plant, i, unit)
    recipe: Recipe | None = None
    if recipe_path is not None:
        try:
            recipe = load_recipe(recipe_path)
        except RecipeError as exc:
            problems += str(exc).splitlines()
        except OSError as exc:
            problems.append(f"{recipe_path}: cannot read: {exc.strerror or exc}")
    bound = _bind(plant, recipe, problems) if recipe is not None else {}
    if problems or offline:
        return problems, f"{len(plant.units)} unit(s), files only"
    pool = DevicePool(timeout=3.0)
    devices: dict[str, Device] = {}
    try:
        for unit in plant.units:
            try:
                device = pool.open(
                    unit.name, unit.profile, unit.endpoint, unit.address, unit.connection
                )
                await device.connect()
            except DriverError as exc:
                problems.append(f"unit {unit.name}: {exc}")
                continue
            devices[unit.name] = device
        needs: list[Need] = []
        for name, device in devices.items():
            spec = device.profile
            needs += [
                Need(name, cap, "write" if tag.writable else "read", f"profile {spec.name}")
                for cap, tag in spec.tags.items()
            ]
        problems += await check_devices(devices, needs)
        if recipe is not None:
            by_alias = {a: devices[u] for a, u in bound.items() if u in devices}
            problems += await check_devices(by_alias, recipe_needs(recipe))
    finally:
        await pool.close()
    return _unique(problems), f"{len(devices)} unit(s) connected and checked"


def _unit_file_problems(plant: Plant, index: int, unit: UnitConfig) -> list[str]:
    try:
        profile = load_profile(unit.profile)
    except ProfileError as exc:
        where = _position(plant, ("units", index, "profile"))
        return [
            line if _LOCATED.match(line) else f"{where}: unit {unit.name}: {line}"
            for line in str(exc).splitlines()
        ]
    if profile.equipment_class == unit.equipment_class:
        return []
    where = _position(plant, ("units", index, "class"))
    return [
        f"{where}: unit {unit.name} is of class {unit.equipment_class!r} but its profile "
        f"{profile.name!r} implements {profile.equipment_class!r}"
    ]


def _bind(plant: Plant, recipe: Recipe, problems: list[str]) -> dict[str, str]:
    """Recipe alias → unit name, as batch creation would allocate them."""
    chosen: dict[str, str] = {}
    for alias, req in recipe.equipment.items():
        free = [
            u.name
            for u in plant.units
            if u.equipment_class == req.equipment_class and u.name not in chosen.values()
        ]
        if not free:
            problems.append(
                f"{plant.source}: no unit of class {req.equipment_class!r} for the recipe's "
                f"{alias!r}"
            )
            continue
        chosen[alias] = free[0]
    return chosen


def _position(plant: Plant, path: tuple[str | int, ...]) -> str:
    try:
        with open(plant.source, encoding="utf-8") as f:
            return load_located(f.read(), plant.source).at(path)
    except (OSError, ValueError):
        return plant.source


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


@click.group("profile")
def profile_group() -> None:
    """Device profiles: draft one from an instrument."""


@profile_group.command("discover")
@click.argument("url")
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Write the draft here.")
@click.option("--name", default="draft", show_default=True, help="The draft profile's name.")
def profile_discover(url: str, out: str | None, name: str) -> None:
    """Browse the OPC UA server at URL and write a draft device profile (node ids, data
    types, access, engineering units) to map to an equipment class's capabilities."""
    try:
        found = asyncio.run(discover(url))
    except DriverError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    text = draft_profile(found, name)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        click.echo(f"error: {out}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(
        f"{out}: {len(found.variables)} variable(s), {len(found.methods)} method(s); "
        "map them to capabilities, then `cellbatch plant check`"
    )
