"""The rules file of review by exception: packaged defaults, site overrides, bad files."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from ebr import EbrError
from ebr.review.exceptions import RULES_ENV, ReviewRulesError, load_rules
from ebr.review.rules import COMMON, DEFAULT_SOURCE, SETTINGS, parse_rules


def test_defaults_are_package_data_and_complete() -> None:
    path = resources.files("ebr.review") / "rules" / "review.toml"
    assert path.is_file()
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    assert list(doc) == list(SETTINGS)  # listed in the same order as the code lists them
    for rule, table in doc.items():
        assert set(table) == set(COMMON) | set(SETTINGS[rule]), rule
    rules = load_rules(None)
    assert rules.sources == (DEFAULT_SOURCE,)
    assert all(rule.enabled for rule in rules.rules.values())


def test_pyproject_ships_the_rules_file() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "review/rules/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["ebr"]


def test_a_site_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        '[excursion]\nmin_duration_s = 300\nseverity = "minor"\n[comment]\nenabled = false\n'
    )
    rules = load_rules(site)
    assert rules.sources == (DEFAULT_SOURCE, str(site))
    assert rules.rule("excursion")["min_duration_s"] == 300
    assert rules.rule("excursion").severity == "minor"
    assert rules.rule("excursion")["action_severity"] == "critical"  # kept from the defaults
    assert not rules.rule("comment").enabled and rules.rule("alarm").enabled


def test_the_environment_names_the_site_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site.toml"
    site.write_text("[alarm]\nenabled = false\n")
    monkeypatch.setenv(RULES_ENV, str(site))
    assert not load_rules().rule("alarm").enabled
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[identity]\nenabled = false\n")
    rules = load_rules(explicit)  # an explicit path wins over the environment
    assert rules.rule("alarm").enabled and not rules.rule("identity").enabled
    monkeypatch.setenv(RULES_ENV, "")
    assert load_rules().sources == (DEFAULT_SOURCE,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[excursions]\nenabled = true\n", "rule excursions: unknown rule (rules: excursion, "),
        ("[alarm]\nlevel = 3\n", "rule alarm: unknown setting 'level' (settings: enabled, "),
        (
            '[alarm]\nseverity = "high"\n',
            "rule alarm: severity must be one of critical, major, minor, got 'high'",
        ),
        (
            "[excursion]\nmin_duration_s = -5\n",
            "rule excursion: min_duration_s must be a number ≥ 0, got -5",
        ),
        (
            '[excursion]\nmin_duration_s = "5 min"\n',
            "rule excursion: min_duration_s must be a number ≥ 0, got '5 min'",
        ),
        (
            "[step_duration]\noverrun_factor = 0.5\n",
            "rule step_duration: overrun_factor must be a number ≥ 1, got 0.5",
        ),
        (
            "[comm_loss]\nmin_bad_samples = 1.5\n",
            "rule comm_loss: min_bad_samples must be a whole number ≥ 1, got 1.5",
        ),
        (
            '[override]\nkinds = "step.skipped"\n',
            "rule override: kinds must be a list of non-empty strings, got 'step.skipped'",
        ),
        ("[comment]\nenabled = 1\n", "rule comment: enabled must be true or false, got 1"),
        ("alarm = false\n", "rule alarm: must be a table ([alarm])"),
        ("[alarm\nenabled = true\n", "not valid TOML: "),
    ],
)
def test_a_bad_rules_file_names_file_rule_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(text)
    with pytest.raises(ReviewRulesError) as caught:
        load_rules(site)
    assert str(caught.value).startswith(f"{site}: {message}")
    assert isinstance(caught.value, EbrError)


def test_an_unreadable_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ReviewRulesError, match=r"missing\.toml: cannot read: No such file"):
        load_rules(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[alarm]")
    with pytest.raises(ReviewRulesError, match=r"binary\.toml: not UTF-8 text"):
        load_rules(binary)


def test_parse_rules_layers_text_over_the_defaults() -> None:
    rules = parse_rules("inline.toml", "[simulation]\nseverity = 'major'\n")
    assert rules.rule("simulation").severity == "major"
    assert rules.to_dict()["sources"] == [DEFAULT_SOURCE, "inline.toml"]
    with pytest.raises(ReviewRulesError, match=r"^inline\.toml: rule nope: unknown rule"):
        parse_rules("inline.toml", "[nope]\n")
