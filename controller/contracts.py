"""Equipment contracts: what each phase type needs of the units it drives, and the
preflight that checks a plant's bound devices against them before anything is sent.

:data:`PHASE_NEEDS` is the one place that says which capabilities and methods a phase
type uses (beyond those its arguments name); :func:`recipe_needs` lists every need of a
recipe (its phases and its monitors), and :func:`check_devices` checks connected devices:
the capability exists in the profile, is readable (a read answers with a value that is
not Bad), is writable where it must be (OPC UA: the node's AccessLevel; Modbus: a
holding register or coil). ``drivers/README.md`` documents the same table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers import Device, DriverError, Quality
from recipes import Recipe, tags_of


@dataclass(frozen=True, slots=True)
class Need:
    """One thing a recipe needs of a unit: ``read`` / ``write`` a capability or ``call``
    a method; ``why`` names the phase or monitor that needs it."""

    alias: str
    name: str
    access: str  # "read" | "write" | "call"
    why: str
    required: bool = True


#: What each phase type uses on its own unit (or, for transfer, on the units its
#: arguments name: ``pump:`` / ``balance:`` prefixes), besides its arguments' setpoints.
PHASE_NEEDS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "setpoint": (),
    "ramp": (),
    "hold_for": (),
    "wait_until": (),
    "invoke": (),
    "operator_prompt": (),
    "manual_sample": (),
    "identity_check": (),
    "transfer": (
        ("pump:pump.rate_sp", "write", True),
        ("pump:pump.speed_pv", "read", True),
        ("pump:start", "call", True),
        ("pump:stop", "call", True),
        ("balance:balance.weight", "read", True),
    ),
    "run_program": (
        ("start_program", "call", True),
        ("stop", "call", True),
        ("run.complete", "read", True),
        ("alarm.active", "read", True),
        ("alarm.code", "read", False),
    ),
}
"""(capability or method, access, required) per phase type."""


def recipe_needs(recipe: Recipe) -> list[Need]:
    """Every capability and method the recipe's phases and monitors need, per unit alias."""
    needs: list[Need] = [Need(m.unit, m.tag, "read", f"monitor {m.name}") for m in recipe.monitors]
    for path, up, _op, phase in recipe.procedure.walk():
        why = f"phase {path}"
        args = phase.args
        for key in ("set", "on_hold"):
            table = args.get(key)
            if isinstance(table, dict):
                needs += [Need(up.unit, str(cap), "write", why) for cap in table]
        if phase.type == "ramp":
            needs.append(Need(up.unit, str(args["capability"]), "write", why))
        cond = args.get("until")
        if cond is not None:
            needs += [Need(up.unit, t, "read", why) for t in sorted(tags_of(cond))]  # type: ignore[arg-type]
        if phase.type == "invoke":
            needs.append(Need(up.unit, str(args["method"]), "call", why))
        for name, access, required in PHASE_NEEDS.get(phase.type, ()):
            role, sep, cap = name.partition(":")
            alias = str(args[role]) if sep else up.unit
            needs.append(Need(alias, cap if sep else name, access, why, required))
    unique: dict[tuple[str, str, str], Need] = {}
    for need in needs:
        unique.setdefault((need.alias, need.name, need.access), need)
    return list(unique.values())


async def check_devices(units: dict[str, Device], needs: Iterable[Need]) -> list[str]:
    """Problems of the bound devices against ``needs`` (empty: all good). Reads the
    instruments (never writes); an unreachable unit is one problem."""
    problems: list[str] = []
    for alias, device in units.items():
        mine = [n for n in needs if n.alias == alias]
        caps = sorted({n.name for n in mine if n.access != "call" and device.has(n.name)})
        for need in mine:
            what = f"unit {device.name} ({alias}, profile {device.profile.name})"
            if need.access == "call":
                if need.name not in device.profile.methods and need.required:
                    problems.append(f"{what}: no method {need.name!r} ({need.why} calls it)")
                continue
            if not device.has(need.name):
                if need.required:
                    problems.append(
                        f"{what}: no capability {need.name!r} ({need.why} needs to {need.access})"
                    )
                continue
            spec = device.profile.tags.get(need.name)
            if need.access == "write" and (spec is None or not spec.writable):
                problems.append(f"{what}: {need.name!r} is not writable ({need.why} writes it)")
        if not caps:
            continue
        try:
            readings = await device.read(caps)
        except DriverError as exc:
            problems.append(f"unit {device.name} ({alias}): cannot read {', '.join(caps)}: {exc}")
            continue
        for reading in readings:
            if reading.quality is Quality.BAD:
                problems.append(
                    f"unit {device.name} ({alias}): {reading.capability!r} reads with bad quality"
                )
        problems += await _access_problems(device, [n for n in mine if n.access == "write"])
    return problems


async def _access_problems(device: Device, writes: list[Need]) -> list[str]:
    """Writable where it must be, as the instrument itself says (OPC UA AccessLevel)."""
    caps = sorted({n.name for n in writes if device.has(n.name)})
    if not caps:
        return []
    try:
        refused = await device.not_writable(caps)
    except DriverError as exc:
        return [f"unit {device.name}: cannot check write access: {exc}"]
    return [f"unit {device.name}: the instrument does not allow writing {cap!r}" for cap in refused]
