"""The bioreactor simulator through a plain asyncua client over a real socket."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from asyncua import Client, Node, ua

from simulators.bioreactor.opcua_server import BioreactorServer
from simulators.bioreactor.tags import TAGS
from simulators.clock import ScaledClock

pytestmark = pytest.mark.asyncio(loop_scope="session")

WAIT_S = 20.0  # a hang guard, generous for a busy machine
Tag = Callable[[str], Node]
Until = Callable[[Node, Callable[[ua.DataValue], bool]], Awaitable[ua.DataValue]]


def _double(value: float) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.Double)


async def _browse_names(node: Node) -> list[str]:
    return [(await child.read_browse_name()).Name for child in await node.get_children()]


async def test_port_zero_binds_a_real_port(bioreactor_server: BioreactorServer) -> None:
    parts = urlsplit(bioreactor_server.endpoint)
    assert parts.scheme == "opc.tcp" and parts.hostname == "127.0.0.1"
    assert parts.port not in (None, 0)
    assert parts.path == "/cellbatch/bioreactors"


async def test_namespace_is_registered_at_index_2(ns: int) -> None:
    assert ns == 2


async def test_browse_finds_vessels_functional_units_and_variables(
    bioreactor_server: BioreactorServer, opcua_client: Client, ns: int
) -> None:
    folder = await opcua_client.nodes.objects.get_child(f"{ns}:Bioreactors")
    assert await _browse_names(folder) == ["BR-01", "BR-02", "BR-03"]
    assert bioreactor_server.vessel_names == ("BR-01", "BR-02", "BR-03")
    vessel = await folder.get_child(f"{ns}:BR-02")
    assert vessel.nodeid == ua.NodeId("BR-02", ns)
    names = await _browse_names(vessel)
    assert names[:7] == ["Temperature", "pH", "DO", "Rocking", "Volume", "Perfusion", "Culture"]
    assert {"Inoculate", "Harvest"} <= set(names)
    for t in TAGS:
        node = await vessel.get_child([f"{ns}:{t.group}", f"{ns}:{t.name}"])
        assert node.nodeid == ua.NodeId(f"BR-02.{t.path}", ns)
    sim = await opcua_client.nodes.objects.get_child(f"{ns}:Simulation")
    assert set(await _browse_names(sim)) == {"TimeScale", "StepSeconds", "Epoch", "Time"}


async def test_every_variable_is_a_double_with_engineering_units(tag: Tag) -> None:
    for t in TAGS:
        node = tag(f"BR-01.{t.path}")
        dv = await node.read_data_value()
        assert dv.Value is not None and dv.Value.VariantType == ua.VariantType.Double
        assert math.isfinite(dv.Value.Value)
        eu = await (await node.get_child("0:EngineeringUnits")).read_value()
        assert isinstance(eu, ua.EUInformation)
        assert eu.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
        assert eu.UnitId == t.unit.unit_id and eu.DisplayName.Text == t.unit.symbol
        if t.writable:
            rng = await (await node.get_child("0:EURange")).read_value()
            assert (rng.Low, rng.High) == t.limits
    temperature_eu = await tag("BR-01.Temperature.PV.EngineeringUnits").read_value()
    assert temperature_eu.UnitId == 0x43454C  # UNECE "CEL"


async def test_setpoints_are_writable_and_measurements_are_not(tag: Tag) -> None:
    for t in TAGS:
        level = await tag(f"BR-01.{t.path}").read_attribute(ua.AttributeIds.UserAccessLevel)
        writable = bool(level.Value.Value & (1 << ua.AccessLevel.CurrentWrite))
        assert writable == t.writable, t.path
    with pytest.raises(ua.UaStatusCodeError) as refused:
        await tag("BR-01.Temperature.PV").write_value(_double(20.0))
    assert refused.value.code == ua.StatusCodes.BadUserAccessDenied


async def test_setpoint_write_moves_the_pv_in_simulated_time(
    bioreactor_server: BioreactorServer, tag: Tag, until: Until
) -> None:
    pv, sp = tag("BR-02.Temperature.PV"), tag("BR-02.Temperature.SP")
    await until(pv, lambda dv: dv.Value.Value > 36.8)  # warmed up from ambient
    await sp.write_value(_double(30.0))
    written = await pv.read_data_value()  # the next step uses the SP
    try:
        assert await sp.read_value() == 30.0
        reached = await until(pv, lambda dv: dv.Value.Value < 30.5)
        # 37 → 30.5 °C takes τ·ln(7/0.5) ≈ 26 simulated minutes with τ = 10 min
        took = reached.SourceTimestamp - written.SourceTimestamp
        assert took >= timedelta(minutes=20), took
        # However late a busy machine saw it, the PV at `took` is the first-order decay
        # of simulated time (σ 0.02 °C noise on each reading, one 1-min step of slack).
        decayed = 30.0 + (written.Value.Value - 30.0) * math.exp(-took.total_seconds() / 600)
        assert reached.Value.Value == pytest.approx(decayed, abs=0.15), took
    finally:
        await sp.write_value(_double(37.0))


async def test_wrong_variant_type_is_refused(tag: Tag) -> None:
    sp = tag("BR-01.Rocking.RateSP")
    for bad in (ua.Variant(10.0, ua.VariantType.Float), ua.Variant(10, ua.VariantType.Int32)):
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await sp.write_value(bad)
        assert refused.value.code == ua.StatusCodes.BadTypeMismatch
    assert await sp.read_value() == 0.0


async def test_out_of_range_setpoints_are_refused_per_node(opcua_client: Client, tag: Tag) -> None:
    for t in TAGS:
        if t.limits is None:
            continue
        low, high = t.limits
        node = tag(f"BR-01.{t.path}")
        before = await node.read_value()
        for bad in (low - 0.1, high + 0.1, math.nan, math.inf):
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await node.write_value(_double(bad))
            assert refused.value.code == ua.StatusCodes.BadOutOfRange, (t.path, bad)
        assert await node.read_value() == before
    # one request, one bad item: only that item is refused
    nodes = [tag("BR-01.Rocking.AngleSP"), tag("BR-01.Rocking.RateSP")]
    results = await opcua_client.write_values(
        nodes, [_double(13.0), _double(6.0)], raise_on_partial_error=False
    )
    assert [r.value for r in results] == [ua.StatusCodes.BadOutOfRange, ua.StatusCodes.Good]
    assert await opcua_client.read_values(nodes) == [0.0, 6.0]
    await nodes[1].write_value(_double(0.0))


async def test_inoculate_works_once_and_validates_arguments(
    bioreactor_server: BioreactorServer, tag: Tag, ns: int, until: Until
) -> None:
    vessel = tag("BR-03")
    method = f"{ns}:Inoculate"

    async def refused(*args: Any) -> int:
        with pytest.raises(ua.UaStatusCodeError) as err:
            await vessel.call_method(method, *args)
        return err.value.code

    assert await refused(_double(0.0), _double(1e8)) == ua.StatusCodes.BadOutOfRange
    assert await refused(_double(50.0), _double(-5.0)) == ua.StatusCodes.BadOutOfRange
    assert await refused(_double(50.0)) == ua.StatusCodes.BadArgumentsMissing
    assert await refused(ua.Variant(50, ua.VariantType.Int32), _double(1e8)) == (
        ua.StatusCodes.BadTypeMismatch
    )
    assert not bioreactor_server.vessel("BR-03").inoculated
    assert await vessel.call_method(method, _double(50.0), _double(1e8)) is None
    assert bioreactor_server.vessel("BR-03").inoculated
    assert await refused(_double(50.0), _double(1e8)) == ua.StatusCodes.BadInvalidState
    density = await until(tag("BR-03.Culture.ViableDensity"), lambda dv: dv.Value.Value > 0)
    assert density.Value.Value == pytest.approx(2e6, rel=0.05)  # 1e8 cells in 50 mL
    volume = await tag("BR-03.Volume.PV").read_value()
    assert volume == pytest.approx(50.0, abs=1.5)
    # Harvest it all: the culture ends, Volume.SP follows, the bag is free again.
    harvested = await vessel.call_method(f"{ns}:Harvest", _double(50.0))
    assert harvested > 0.0
    assert await tag("BR-03.Volume.SP").read_value() == 0.0
    assert not bioreactor_server.vessel("BR-03").inoculated
    assert await refused(_double(0.0), _double(1e8)) == ua.StatusCodes.BadOutOfRange


async def test_simulation_clock_nodes_match_the_server_clock(
    bioreactor_server: BioreactorServer, tag: Tag, until: Until
) -> None:
    clock = bioreactor_server.clock
    assert await tag("Simulation.TimeScale").read_value() == clock.scale
    assert await tag("Simulation.StepSeconds").read_value() == bioreactor_server.step_s
    epoch = await tag("Simulation.Epoch").read_value()
    assert abs(epoch - clock.epoch) < timedelta(microseconds=1)
    # A client rebuilds the clock from Epoch and TimeScale and sees the same time.
    mirror = ScaledClock(await tag("Simulation.TimeScale").read_value(), epoch)
    before, seen, after = clock.now(), mirror.now(), clock.now()
    slack = timedelta(seconds=0.01 * clock.scale)  # 10 ms of wall time: the clocks' anchors
    assert before - slack <= seen <= after + slack
    # Simulation.Time never runs ahead of the clock, catches up with it, and moves step by step.
    sim_time = await tag("Simulation.Time").read_value()
    now = clock.now()
    assert (now - sim_time).total_seconds() > -bioreactor_server.step_s
    due = now - timedelta(seconds=bioreactor_server.step_s)
    await until(tag("Simulation.Time"), lambda dv: dv.Value.Value >= due)
    later = await until(tag("Simulation.Time"), lambda dv: dv.Value.Value > sim_time)
    assert later.SourceTimestamp == later.Value.Value
    assert (later.Value.Value - epoch).total_seconds() % bioreactor_server.step_s == 0.0


async def test_vessels_are_independent(
    bioreactor_server: BioreactorServer, opcua_client: Client, tag: Tag, until: Until
) -> None:
    one, two = bioreactor_server.vessel("BR-01"), bioreactor_server.vessel("BR-02")
    assert one is not two
    await tag("BR-01.Volume.SP").write_value(_double(120.0))
    try:
        await until(tag("BR-01.Volume.PV"), lambda dv: dv.Value.Value > 100.0)
        assert two.volume_ml == 0.0 and two.setpoints.volume_ml == 0.0
        one.force("Temperature.PV", 99.0)
        await until(tag("BR-01.Temperature.PV"), lambda dv: dv.Value.Value == 99.0)
        assert await tag("BR-02.Temperature.PV").read_value() < 40.0
    finally:
        one.force("Temperature.PV", None)
        await tag("BR-01.Volume.SP").write_value(_double(0.0))
    released = await until(tag("BR-01.Temperature.PV"), lambda dv: dv.Value.Value < 40.0)
    assert released.Value.Value == pytest.approx(37.0, abs=0.2)
    # Same server seed, different vessel names: independent sensor noise.
    values = await opcua_client.read_values([tag("BR-01.pH.PV"), tag("BR-02.pH.PV")])
    assert values[0] != values[1]


async def test_subscriber_gets_one_notification_per_step_without_gaps(
    bioreactor_server: BioreactorServer, opcua_client: Client, tag: Tag
) -> None:
    """Every step is delivered in simulated time: rate PV (constant) and temperature."""
    wanted = 200  # ≈ 0.5 s of wall time at 25 000×
    stamps: dict[int, list[Any]] = {1: [], 2: []}
    done = asyncio.Event()

    class Collect:
        def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
            stamps[data.subscription_data.client_handle].append(
                data.monitored_item.Value.SourceTimestamp
            )
            if min(len(s) for s in stamps.values()) >= wanted:
                done.set()

    def request(node: Node, handle: int, trigger: ua.DataChangeTrigger) -> Any:
        params = ua.MonitoringParameters(
            ClientHandle=handle,
            SamplingInterval=0.0,
            QueueSize=10_000,
            DiscardOldest=True,
            Filter=ua.DataChangeFilter(Trigger=trigger),
        )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=params,
        )

    sub = await opcua_client.create_subscription(50, Collect())
    try:
        # The rate PV stays constant, so only the timestamp changes: ask for it.
        await sub.create_monitored_items(
            [
                request(tag("BR-01.Rocking.RatePV"), 1, ua.DataChangeTrigger.StatusValueTimestamp),
                request(tag("BR-01.Temperature.PV"), 2, ua.DataChangeTrigger.StatusValue),
            ]
        )
        await asyncio.wait_for(done.wait(), WAIT_S)
    finally:
        await sub.delete()
    step = timedelta(seconds=bioreactor_server.step_s)
    for series in stamps.values():
        assert all(b - a == step for a, b in itertools.pairwise(series)), series
        offset = (series[0] - bioreactor_server.clock.epoch).total_seconds()
        assert offset % bioreactor_server.step_s == 0.0


async def test_loop_cost_is_small(
    bioreactor_server: BioreactorServer, tag: Tag, until: Until
) -> None:
    stats = bioreactor_server.stats()
    assert stats.steps > 100 and stats.vessels == 3
    assert stats.us_per_step_per_vessel < 1000.0
    # The loop never skips a step: whatever lag a busy machine causes, it catches up.
    due = bioreactor_server.clock.now() - timedelta(seconds=bioreactor_server.step_s)
    await until(tag("Simulation.Time"), lambda dv: dv.Value.Value >= due)


async def test_unknown_vessel_is_a_key_error(bioreactor_server: BioreactorServer) -> None:
    with pytest.raises(KeyError, match="BR-99"):
        bioreactor_server.vessel("BR-99")


async def test_configuration_errors_surface_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        BioreactorServer(["BR-01", "BR-01"])
    with pytest.raises(ValueError, match="invalid vessel name"):
        BioreactorServer(["BR.01"])
    with pytest.raises(ValueError, match="time_scale"):
        BioreactorServer(["BR-01"], time_scale=0.0)
    idle = BioreactorServer(["BR-01"], time_scale=10.0)
    with pytest.raises(RuntimeError):
        _ = idle.endpoint
    with pytest.raises(RuntimeError):
        _ = idle.clock
    with pytest.raises(ValueError, match="time_scale"):
        await idle.start(ScaledClock(20.0))  # refused before anything is built
    await idle.stop()  # stopping a never-started server is harmless
