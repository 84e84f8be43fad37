"""Builds the bioreactor simulator's OPC UA address space.

Layout (namespace :data:`NAMESPACE_URI`, string node ids)::

    Objects/Bioreactors                        ns=i;s=Bioreactors (folder)
      <vessel>                                 ns=i;s=<vessel>
        Temperature, pH, DO, Rocking,          ns=i;s=<vessel>.<Group>
        Volume, Perfusion, Culture
          <variable>                           ns=i;s=<vessel>.<Group>.<Name>
            EngineeringUnits (EUInformation)   ns=i;s=<vessel>.<Group>.<Name>.EngineeringUnits
            EURange (setpoints only)           ns=i;s=<vessel>.<Group>.<Name>.EURange
        Inoculate(Volume, ViableCells)         ns=i;s=<vessel>.Inoculate
        Harvest(Volume) -> HarvestedViableCells ns=i;s=<vessel>.Harvest
        InstallBag()                        ns=i;s=<vessel>.InstallBag
    Objects/Simulation                         ns=i;s=Simulation
      TimeScale, StepSeconds, Epoch, Time      ns=i;s=Simulation.<Name>
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from asyncua import Node, Server, ua

from simulators.bioreactor.physics import SETPOINT_FIELDS, Setpoints
from simulators.bioreactor.tags import SIMULATION_UNITS, TAGS, UNECE_NAMESPACE, EngineeringUnit
from simulators.bioreactor.uatyping import node_id

__all__ = [
    "NAMESPACE_URI",
    "MethodCallback",
    "SimulationNodes",
    "VesselNodes",
    "add_simulation",
    "add_vessel",
    "add_vessels_folder",
]

NAMESPACE_URI: Final = "urn:cellbatch:simulators:bioreactor"

#: An asyncua method callback: (object node id, *input variants) -> outputs or status.
MethodCallback = Callable[..., Awaitable[list[ua.Variant] | ua.StatusCode]]


@dataclass(frozen=True, slots=True)
class VesselNodes:
    """Node ids of one vessel the update loop reads and writes."""

    name: str
    measurements: tuple[tuple[str, ua.NodeId], ...]  # (measurement name, node)
    setpoints: tuple[tuple[str, ua.NodeId], ...]  # (Setpoints attribute, node)
    limits: dict[ua.NodeId, tuple[float, float]]
    volume_sp: ua.NodeId


@dataclass(frozen=True, slots=True)
class SimulationNodes:
    """Node ids of the ``Simulation`` object."""

    time_scale: ua.NodeId
    step_seconds: ua.NodeId
    epoch: ua.NodeId
    time: ua.NodeId


def _eu_information(unit: EngineeringUnit) -> ua.EUInformation:
    return ua.EUInformation(
        NamespaceUri=UNECE_NAMESPACE,
        UnitId=unit.unit_id,
        DisplayName=ua.LocalizedText(unit.symbol),
        Description=ua.LocalizedText(unit.name),
    )


async def _set_description(node: Node, text: str) -> None:
    await node.write_attribute(
        ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(text)))
    )


async def _add_engineering_units(var: Node, sid: str, idx: int, unit: EngineeringUnit) -> None:
    """Add the standard ``EngineeringUnits`` property to variable ``sid``."""
    await var.add_property(
        node_id(f"{sid}.EngineeringUnits", idx),
        ua.QualifiedName("EngineeringUnits", 0),
        _eu_information(unit),
        datatype=ua.ObjectIds.EUInformation,
    )


async def _add_double(
    parent: Node, idx: int, sid: str, name: str, value: float, description: str
) -> Node:
    var = await parent.add_variable(
        node_id(sid, idx), ua.QualifiedName(name, idx), value, varianttype=ua.VariantType.Double
    )
    await _set_description(var, description)
    return var


def _argument(name: str, description: str) -> ua.Argument:
    return ua.Argument(
        Name=name,
        DataType=ua.NodeId(ua.Int32(ua.ObjectIds.Double)),
        ValueRank=ua.ValueRank.Scalar,
        ArrayDimensions=[],
        Description=ua.LocalizedText(description),
    )


async def add_vessels_folder(server: Server, idx: int) -> Node:
    """Create ``Objects/Bioreactors``."""
    return await server.nodes.objects.add_folder(
        node_id("Bioreactors", idx), ua.QualifiedName("Bioreactors", idx)
    )


async def add_vessel(
    folder: Node,
    idx: int,
    name: str,
    setpoints: Setpoints,
    inoculate: MethodCallback,
    harvest: MethodCallback,
    install_bag: MethodCallback | None = None,
    serial: str = "",
) -> VesselNodes:
    """Create the object tree, variables and methods of vessel ``name``; its
    ``Identification.SerialNumber`` (as OPC UA DI's DeviceIdentification names it) holds
    ``serial`` (empty: the vessel reports no serial number)."""
    vessel = await folder.add_object(node_id(name, idx), ua.QualifiedName(name, idx))
    await _set_description(vessel, f"Rocking-motion bioreactor {name} (simulated)")
    groups: dict[str, Node] = {}
    measurements: list[tuple[str, ua.NodeId]] = []
    sps: list[tuple[str, ua.NodeId]] = []
    limits: dict[ua.NodeId, tuple[float, float]] = {}
    for tag in TAGS:
        group = groups.get(tag.group)
        if group is None:
            group = await vessel.add_object(
                node_id(f"{name}.{tag.group}", idx), ua.QualifiedName(tag.group, idx)
            )
            groups[tag.group] = group
        sid = f"{name}.{tag.path}"
        initial = getattr(setpoints, SETPOINT_FIELDS[tag.path]) if tag.writable else 0.0
        var = await _add_double(
            group, idx, sid, tag.name, initial, f"{tag.description} [{tag.unit.symbol}]"
        )
        await _add_engineering_units(var, sid, idx, tag.unit)
        if tag.limits is not None:
            low, high = tag.limits
            await var.add_property(
                node_id(f"{sid}.EURange", idx),
                ua.QualifiedName("EURange", 0),
                ua.Range(Low=low, High=high),
                datatype=ua.ObjectIds.Range,
            )
            await var.set_writable()
            sps.append((SETPOINT_FIELDS[tag.path], var.nodeid))
            limits[var.nodeid] = tag.limits
        else:
            measurements.append((tag.path, var.nodeid))
    await vessel.add_method(
        node_id(f"{name}.Inoculate", idx),
        ua.QualifiedName("Inoculate", idx),
        inoculate,
        [
            _argument("Volume", "Inoculum volume [mL]"),
            _argument("ViableCells", "Viable cells in the inoculum [cells]"),
        ],
        [],
    )
    await vessel.add_method(
        node_id(f"{name}.Harvest", idx),
        ua.QualifiedName("Harvest", idx),
        harvest,
        [_argument("Volume", "Broth volume to pump out [mL]")],
        [_argument("HarvestedViableCells", "Viable cells removed [cells]")],
    )
    if install_bag is not None:
        await vessel.add_method(
            node_id(f"{name}.InstallBag", idx),
            ua.QualifiedName("InstallBag", idx),
            install_bag,
            [],
            [],
        )
    identification = await vessel.add_object(
        node_id(f"{name}.Identification", idx), ua.QualifiedName("Identification", idx)
    )
    serial_var = await identification.add_variable(
        node_id(f"{name}.Identification.SerialNumber", idx),
        ua.QualifiedName("SerialNumber", idx),
        serial,
        varianttype=ua.VariantType.String,
    )
    await _set_description(serial_var, "Serial number of the instrument (read-only)")
    return VesselNodes(
        name=name,
        measurements=tuple(measurements),
        setpoints=tuple(sps),
        limits=limits,
        volume_sp=node_id(f"{name}.Volume.SP", idx),
    )


async def add_simulation(
    server: Server, idx: int, time_scale: float, step_s: float
) -> SimulationNodes:
    """Create ``Objects/Simulation``; Epoch and Time hold "now" until the clock starts."""
    placeholder = datetime.now(UTC)
    sim = await server.nodes.objects.add_object(
        node_id("Simulation", idx), ua.QualifiedName("Simulation", idx)
    )
    await _set_description(sim, "Simulated clock: time = Epoch + (wall - Epoch) * TimeScale")
    doubles: dict[str, Node] = {}
    for name, value, text in (
        ("TimeScale", time_scale, "Simulated seconds per wall-clock second"),
        ("StepSeconds", step_s, "Simulated seconds per model step"),
    ):
        sid = f"Simulation.{name}"
        doubles[name] = await _add_double(sim, idx, sid, name, value, text)
        await _add_engineering_units(doubles[name], sid, idx, SIMULATION_UNITS[name])
    epoch_var = await sim.add_variable(
        node_id("Simulation.Epoch", idx),
        ua.QualifiedName("Epoch", idx),
        placeholder,
        varianttype=ua.VariantType.DateTime,
    )
    await _set_description(epoch_var, "UTC instant where simulated and wall time coincide")
    time_var = await sim.add_variable(
        node_id("Simulation.Time", idx),
        ua.QualifiedName("Time", idx),
        placeholder,
        varianttype=ua.VariantType.DateTime,
    )
    await _set_description(time_var, "Simulated time of the latest model step (UTC)")
    return SimulationNodes(
        time_scale=doubles["TimeScale"].nodeid,
        step_seconds=doubles["StepSeconds"].nodeid,
        epoch=epoch_var.nodeid,
        time=time_var.nodeid,
    )
