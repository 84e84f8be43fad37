"""The declarative rules of review by exception: loading and checking the rules file.

The defaults are `ebr/review/rules/review.toml` (package data). A site file — an explicit
path, else `$CELLBATCH_REVIEW_RULES` — is layered over them: it names only the rules
and settings that differ. Every setting is checked against `SETTINGS`; a bad file
raises `ReviewRulesError("FILE: rule X: message")`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ebr.record.errors import EbrError

RULES_ENV = "CELLBATCH_REVIEW_RULES"
"""Environment variable naming a site rules file layered over the defaults."""

SEVERITIES = ("critical", "major", "minor")
"""Severities, most severe first."""


class ReviewRulesError(EbrError):
    """A rules file is unreadable or holds an unknown rule, setting or a bad value."""


Check = Callable[[Any], str | None]
"""Returns None when a value is acceptable, else what it should have been."""


def _severity(value: Any) -> str | None:
    return None if value in SEVERITIES else f"one of {', '.join(SEVERITIES)}"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


def _number(minimum: float) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= minimum
        return None if ok and value == value else f"a number ≥ {minimum:g}"

    return check


def _count(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        return None if ok else f"a whole number ≥ {minimum}"

    return check


def _names(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
    return None if ok else "a list of non-empty strings"


COMMON: dict[str, Check] = {"enabled": _bool, "severity": _severity, "category": _text}
"""Settings every rule has."""

SETTINGS: dict[str, dict[str, Check]] = {
    "excursion": {
        "action_severity": _severity,
        "min_duration_s": _number(0),
        "min_excess": _number(0),
        "action_always": _bool,
        "merge_gap_s": _number(0),
    },
    "alarm": {
        "action_severity": _severity,
        "acknowledge_kinds": _names,
        "merge_gap_s": _number(0),
    },
    "interruption": {
        "stop_severity": _severity,
        "abort_severity": _severity,
        "interrupted_severity": _severity,
    },
    "parameter": {},
    "override": {"kinds": _names, "repeated_steps": _bool},
    "manual_entry": {"prompt_kinds": _names, "typed_numbers": _bool},
    "comm_loss": {"min_duration_s": _number(0), "min_bad_samples": _count(1)},
    "step_duration": {
        "overrun_factor": _number(1),
        "overrun_margin_s": _number(0),
        "count_held_time": _bool,
        "late_severity": _severity,
    },
    "signature": {
        "missing_severity": _severity,
        "failed_meanings": _names,
        "verification_needs_signature": _bool,
    },
    "identity": {},
    "comment": {"kinds": _names},
    "simulation": {},
    "process_fault": {},
    "refused_command": {},
    "qc_result": {},
    "correction": {},
    "acceptance": {"fallback_tags": _names},
    "cross_check": {"pairs": _names, "tolerance_pct": _number(0), "max_age_s": _number(0)},
    "hold_time": {"margin_s": _number(0)},
    "out_of_trend": {"baseline": _count(3), "figures": _names, "run_rules": _names},
}
"""Every rule and its own settings, in the order exceptions of one seq are listed."""


@dataclass(frozen=True)
class RuleConfig:
    """The effective settings of one rule."""

    name: str
    settings: Mapping[str, Any]

    @property
    def enabled(self) -> bool:
        """Whether the rule runs."""
        return bool(self.settings["enabled"])

    @property
    def severity(self) -> str:
        """The rule's default severity."""
        return str(self.settings["severity"])

    @property
    def category(self) -> str:
        """The heading its exceptions are listed under."""
        return str(self.settings["category"])

    def __getitem__(self, key: str) -> Any:
        """One setting (KeyError names unknown ones)."""
        return self.settings[key]


@dataclass(frozen=True)
class Rules:
    """The rules a review runs with, and the files they came from (defaults first)."""

    rules: Mapping[str, RuleConfig]
    sources: tuple[str, ...]

    def rule(self, name: str) -> RuleConfig:
        """The settings of rule `name`."""
        return self.rules[name]

    def to_dict(self) -> dict[str, Any]:
        """JSON view: every rule's settings and the source files."""
        return {
            "sources": list(self.sources),
            "rules": {name: dict(rule.settings) for name, rule in self.rules.items()},
        }

    @property
    def digest(self) -> str:
        """SHA-256 of the effective settings: which rules produced a review."""
        text = json.dumps(self.to_dict()["rules"], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def default_rules_text() -> str:
    """The text of the packaged defaults, `ebr/review/rules/review.toml`."""
    return (resources.files("ebr.review") / "rules" / "review.toml").read_text(encoding="utf-8")


DEFAULT_SOURCE = "ebr/review/rules/review.toml"


def load_rules(path: str | os.PathLike[str] | None = None) -> Rules:
    """The packaged defaults with the site file `path` (else `$CELLBATCH_REVIEW_RULES`,
    if set) layered over them. Raises ReviewRulesError naming the file and rule."""
    site = path if path is not None else os.environ.get(RULES_ENV) or None
    if site is None:
        return parse_rules(None, None)
    name = str(site)
    try:
        text = Path(site).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReviewRulesError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReviewRulesError(f"{name}: not UTF-8 text") from None
    return parse_rules(name, text)


def parse_rules(name: str | None, text: str | None) -> Rules:
    """The defaults with the site file `text` (called `name` in errors) layered over
    them; with no text, the defaults alone."""
    settings = _parse(DEFAULT_SOURCE, default_rules_text(), complete=True)
    sources = [DEFAULT_SOURCE]
    if name is not None and text is not None:
        for rule, values in _parse(name, text, complete=False).items():
            settings[rule].update(values)
        sources.append(name)
    return Rules({n: RuleConfig(n, s) for n, s in settings.items()}, tuple(sources))


def _parse(name: str, text: str, *, complete: bool) -> dict[str, dict[str, Any]]:
    """Check one rules file; with `complete`, every rule and setting must be present."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ReviewRulesError(f"{name}: not valid TOML: {exc}") from None
    result: dict[str, dict[str, Any]] = {rule: {} for rule in SETTINGS}
    for rule, table in doc.items():
        if rule not in SETTINGS:
            raise ReviewRulesError(
                f"{name}: rule {rule}: unknown rule (rules: {', '.join(SETTINGS)})"
            )
        if not isinstance(table, dict):
            raise ReviewRulesError(f"{name}: rule {rule}: must be a table ([{rule}])")
        checks = {**COMMON, **SETTINGS[rule]}
        for key, value in table.items():
            check = checks.get(key)
            if check is None:
                raise ReviewRulesError(
                    f"{name}: rule {rule}: unknown setting {key!r} (settings: {', '.join(checks)})"
                )
            wanted = check(value)
            if wanted is not None:
                raise ReviewRulesError(
                    f"{name}: rule {rule}: {key} must be {wanted}, got {value!r}"
                )
            result[rule][key] = value
    if complete:
        for rule, values in result.items():
            missing = [key for key in {**COMMON, **SETTINGS[rule]} if key not in values]
            if missing:
                raise ReviewRulesError(
                    f"{name}: rule {rule}: missing setting(s) {', '.join(missing)}"
                )
    return result
