"""Plant files: parsed into units; mistakes named with file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.plant import PlantError, load_plant

ROOT = Path(__file__).resolve().parents[2]


def test_demo_plant_loads() -> None:
    plant = load_plant(ROOT / "plants" / "demo.toml")
    assert plant.simulation
    assert [u.name for u in plant.units] == ["BR-01", "BR-02", "CP-01", "P-01", "BAL-01"]
    assert plant.units[0].address == {"vessel": "BR-01"}
    assert plant.simulators[0]["kind"] == "opcua-bioreactor"


def test_endpoints_can_be_moved() -> None:
    plant = load_plant(ROOT / "plants" / "demo.toml")
    url = plant.units[0].endpoint
    moved = plant.with_endpoints({url: "opc.tcp://127.0.0.1:5999/x"})
    assert [u.endpoint for u in moved.units][:2] == ["opc.tcp://127.0.0.1:5999/x"] * 2
    assert [u.endpoint for u in moved.units][2:] == [u.endpoint for u in plant.units][2:]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[plant\nname='x'", "plant.toml:1:7: "),
        ("[plant]\nmode='test'\n[[units]]\nname='a'", ":2:1: 'mode' must be one of"),
        ("[plant]\nmode='gmp'", "no [[units]]"),
        ("[[units]]\nname='a'\nclass='c'\nprofile='p'", ":1:3: [[units]] #1 is missing 'endpoint'"),
        (
            "[[units]]\nname=3\nclass='c'\nprofile='p'\nendpoint='e'",
            ":2:1: 'name' must be a string",
        ),
        (
            "[[units]]\nname='a'\nclass='c'\nprofile='p'\nendpoint='e'\n"
            "[[units]]\nname='a'\nclass='c'\nprofile='p'\nendpoint='e'",
            ":7:1: duplicate unit name",
        ),
        (
            "[plant]\nmode='gmp'\n[[simulators]]\nname='s'\n"
            "[[units]]\nname='a'\nclass='c'\nprofile='p'\nendpoint='e'",
            ":3:3: [[simulators]] are only allowed when [plant] mode = 'simulation'",
        ),
    ],
)
def test_bad_plant_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "plant.toml"
    path.write_text(text)
    with pytest.raises(PlantError, match=None) as info:
        load_plant(path)
    assert message in str(info.value)
    assert "plant.toml" in str(info.value)


def test_missing_plant_file(tmp_path: Path) -> None:
    with pytest.raises(PlantError, match="not found"):
        load_plant(tmp_path / "nope.toml")
