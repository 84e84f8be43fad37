"""Device profiles: every profile implements its equipment class completely."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers import ProfileError, load_profile
from drivers.profile import PROFILE_DIR
from recipes import EQUIPMENT_CLASSES

PROFILES = sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


@pytest.mark.parametrize("name", PROFILES)
def test_profile_covers_its_equipment_class(name: str) -> None:
    profile = load_profile(name)
    cls = EQUIPMENT_CLASSES[profile.equipment_class]
    assert set(cls.capabilities) <= set(profile.tags)
    for cap, spec in cls.capabilities.items():
        assert profile.tags[cap].unit == spec.unit, cap
        assert profile.tags[cap].writable == spec.writable, cap
    assert set(cls.methods) <= set(profile.methods)
    for method, mspec in cls.methods.items():
        assert [a.name for a in profile.methods[method].args] == list(mspec.args)


def test_missing_and_malformed_profiles(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not found"):
        load_profile("no_such_profile")
    bad = tmp_path / "bad.toml"
    bad.write_text("[profile]\nname = 'x'\n")
    with pytest.raises(ProfileError, match=r"bad\.toml:1:2: \[profile\] is missing 'protocol'"):
        load_profile(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[profile\n")
    with pytest.raises(ProfileError, match=r"broken\.toml:1:9: "):
        load_profile(broken)
