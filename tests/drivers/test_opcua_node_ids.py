"""OPC UA node ids of every form in a profile, with the namespace by URI or index per
tag, read from the bioreactor simulator over a real socket."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from drivers import DevicePool, ProfileError, load_profile
from simulators.bioreactor.address_space import NAMESPACE_URI
from simulators.bioreactor.opcua_server import BioreactorServer

PROFILE = f"""
[profile]
name = "forms"
equipment_class = "rocking_bioreactor"
protocol = "opcua"
namespace_uri = "{NAMESPACE_URI}"

[tags]
"plain"     = {{ node = "{{vessel}}.Temperature.PV", type = "Double" }}
"s_form"    = {{ node = "s={{vessel}}.Temperature.PV", type = "Double" }}
"by_uri"    = {{ node = "nsu={NAMESPACE_URI};s={{vessel}}.pH.PV", type = "Double" }}
"tag_uri"   = {{ node = "s={{vessel}}.DO.PV", type = "Double", namespace_uri = "{NAMESPACE_URI}" }}
"numeric"   = {{ node = "i=2258", type = "DateTime", namespace_index = 0 }}
"ns_form"   = {{ node = "ns=0;i=2258", type = "DateTime" }}
"""


@pytest.mark.asyncio(loop_scope="function")
async def test_every_node_id_form_reads(tmp_path: Path) -> None:
    path = tmp_path / "forms.toml"
    path.write_text(PROFILE, encoding="utf-8")
    async with BioreactorServer(["BR-01"], url="opc.tcp://127.0.0.1:0/forms") as server:
        pool = DevicePool(timeout=2.0)
        try:
            device = pool.open("BR-01", path, server.endpoint, {"vessel": "BR-01"})
            await device.connect()
            caps = ["plain", "s_form", "by_uri", "tag_uri", "numeric", "ns_form"]
            values = {r.capability: r.value for r in await device.read(caps)}
            assert values["plain"] == values["s_form"]
            assert 6.0 < values["by_uri"] < 8.0  # pH
            assert 10.0 < values["tag_uri"] < 120.0  # DO %
            assert isinstance(values["numeric"], datetime)  # ServerStatus.CurrentTime
            assert isinstance(values["ns_form"], datetime)
        finally:
            await pool.close()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_refused_monitored_node_is_named(tmp_path: Path) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(PROFILE + '"wrong" = { node = "s=NoSuch.Node", type = "Double" }\n')
    async with BioreactorServer(["BR-01"], url="opc.tcp://127.0.0.1:0/wrong") as server:
        pool = DevicePool(timeout=2.0)
        try:
            device = pool.open("BR-01", path, server.endpoint, {"vessel": "BR-01"})
            await device.connect()
            with pytest.raises(Exception, match=r"ns=\d+;s=NoSuch\.Node \(BadNodeIdUnknown\)"):
                await device.subscribe(["wrong"], lambda _r: None)
        finally:
            await pool.close()


def test_node_forms_are_checked_when_loading(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(PROFILE.replace("i=2258", "i=CurrentTime", 1), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"bad\.toml:13:17: node 'i=CurrentTime': i= needs"):
        load_profile(path)
