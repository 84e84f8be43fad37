"""Release-test specifications of a product: what QC tests, by which method, against what.

The packaged file `ebr/review/rules/specifications.toml` declares the release tests of
the demo products; a site file (an explicit path, else `$CELLBATCH_SPECS`) is layered
over it and replaces every product it names. One `[[spec]]` table per test:

```toml
[[spec]]
product = "Autologous anti-CD19 CAR-T, cryopreserved"   # the recipe header's product
name = "viability"                                       # the test's name
method = "7-AAD flow cytometry, SOP-QC-012"
kind = "numeric"          # numeric | passfail | text
unit = "%"                # numeric: the unit results must be given in
low = 70                  # numeric: lower and/or upper limit, inclusive
# high = 100
# accepted = ["conforms"] # text: the accepted results (exact, case-insensitive)
```

A result is evaluated here, never typed: `TestSpec.evaluate(value, unit)` gives the
recorded value and `in specification` or `out of specification` (OOS). A bad file raises
`SpecError("FILE: spec #N (name): message")`.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ebr.record.errors import EbrError
from recipes import Cqa

SPECS_ENV = "CELLBATCH_SPECS"
"""Environment variable naming a site specifications file layered over the defaults."""
KINDS = ("numeric", "passfail", "text")
IN_SPEC = "in specification"
OOS = "out of specification"
_FIELDS = {"product", "name", "method", "kind", "unit", "low", "high", "accepted"}


class SpecError(EbrError):
    """A specifications file is invalid, or a result does not fit its test's specification."""


@dataclass(frozen=True)
class TestSpec:
    """One release test of one product and its acceptance criterion."""

    product: str
    name: str
    method: str
    kind: str
    unit: str | None = None
    low: float | None = None
    high: float | None = None
    accepted: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The specification as recorded with each result (what the result was judged by)."""
        data: dict[str, Any] = {"name": self.name, "method": self.method, "kind": self.kind}
        if self.kind == "numeric":
            data |= {"unit": self.unit, "low": self.low, "high": self.high}
        elif self.kind == "text":
            data["accepted"] = list(self.accepted)
        return data

    def text(self) -> str:
        """The criterion in words, e.g. `≥ 70 %` or `pass`."""
        if self.kind == "passfail":
            return "pass"
        if self.kind == "text":
            return " or ".join(repr(a) for a in self.accepted)
        parts = []
        if self.low is not None:
            parts.append(f"≥ {self.low:g}")
        if self.high is not None:
            parts.append(f"≤ {self.high:g}")
        return f"{' and '.join(parts)} {self.unit}"

    def evaluate(self, value: str, unit: str | None = None) -> tuple[float | str, str]:
        """The value as recorded and its verdict (IN_SPEC or OOS); SpecError when the value
        or unit cannot be judged against this specification."""
        raw = value.strip()
        if not raw:
            raise SpecError(f"{self.name}: give the result value")
        if self.kind == "numeric":
            try:
                number = float(raw)
            except ValueError:
                raise SpecError(f"{self.name}: {raw!r} is not a number ({self.text()})") from None
            if not math.isfinite(number):
                raise SpecError(f"{self.name}: {raw!r} is not a finite number")
            if unit is None or unit.strip() != self.unit:
                raise SpecError(
                    f"{self.name}: give the unit; the specification is in {self.unit!r} "
                    f"(got {unit!r})"
                )
            low_ok = self.low is None or number >= self.low
            high_ok = self.high is None or number <= self.high
            return number, IN_SPEC if low_ok and high_ok else OOS
        if unit:
            raise SpecError(f"{self.name}: a {self.kind} result has no unit")
        if self.kind == "passfail":
            if raw.lower() not in ("pass", "fail"):
                raise SpecError(f"{self.name}: the result is pass or fail, not {raw!r}")
            return raw.lower(), IN_SPEC if raw.lower() == "pass" else OOS
        accepted = {a.lower() for a in self.accepted}
        return raw, IN_SPEC if raw.lower() in accepted else OOS


@dataclass(frozen=True)
class Specifications:
    """Every product's release tests."""

    products: Mapping[str, Mapping[str, TestSpec]]

    def tests(self, product: str) -> Mapping[str, TestSpec]:
        """The release tests declared for `product` (empty when none are)."""
        return self.products.get(product, {})

    def for_recipe(self, product: str, cqas: Iterable[Cqa]) -> Specifications:
        """These specifications with the CQAs a batch's recipe declares as release tests of
        `product`: the approved recipe's CQA wins over a file's test of the same name; the
        file adds the tests the recipe does not declare."""
        tests = dict(self.tests(product))
        tests.update({cqa.name: spec_of_cqa(product, cqa) for cqa in cqas})
        return Specifications({**self.products, product: tests})

    def test(self, product: str, name: str) -> TestSpec:
        """One declared test, or SpecError naming the declared ones."""
        found = self.tests(product).get(name)
        if found is None:
            declared = ", ".join(sorted(self.tests(product))) or "none"
            raise SpecError(
                f"no release test {name!r} is specified for product {product!r} "
                f"(declared: {declared}; see {SPECS_ENV} / --spec)"
            )
        return found


def spec_of_cqa(product: str, cqa: Cqa) -> TestSpec:
    """A recipe's CQA as a release test: a text result (``expect``) or numeric limits."""
    if cqa.expect is not None:
        return TestSpec(product, cqa.name, cqa.method, "text", accepted=(cqa.expect,))
    spec = cqa.spec
    return TestSpec(
        product,
        cqa.name,
        cqa.method,
        "numeric",
        unit=cqa.unit or "",
        low=None if spec is None else spec.low,
        high=None if spec is None else spec.high,
    )


def load_specs(path: str | Path | None = None) -> Specifications:
    """The packaged specifications, with a site file (`path`, else $CELLBATCH_SPECS) over them."""
    packaged = resources.files("ebr.review").joinpath("rules/specifications.toml")
    products = dict(_parse(packaged.read_text(encoding="utf-8"), "specifications.toml"))
    site = path or os.environ.get(SPECS_ENV)
    if site:
        try:
            text = Path(site).read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"{site}: cannot read: {exc.strerror or exc}") from None
        products.update(_parse(text, str(site)))
    return Specifications(products)


def _parse(text: str, where: str) -> dict[str, dict[str, TestSpec]]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{where}: {exc}") from None
    extra = sorted(set(doc) - {"spec"})
    if extra:
        raise SpecError(f"{where}: unknown table {extra[0]!r}; use [[spec]] entries")
    specs = doc.get("spec", [])
    if not isinstance(specs, list):
        raise SpecError(f"{where}: 'spec' must be an array of tables ([[spec]])")
    products: dict[str, dict[str, TestSpec]] = {}
    for number, item in enumerate(specs, 1):
        spec = _spec(item, f"{where}: spec #{number}")
        tests = products.setdefault(spec.product, {})
        if spec.name in tests:
            raise SpecError(f"{where}: spec #{number} ({spec.name}): declared twice")
        tests[spec.name] = spec
    return products


def _spec(item: Any, where: str) -> TestSpec:
    if not isinstance(item, dict):
        raise SpecError(f"{where}: must be a table")
    where = f"{where} ({item.get('name', '?')})"
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r}")
    for key in ("product", "name", "method", "kind"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise SpecError(f"{where}: {key!r} must be a non-empty string")
    kind = item["kind"]
    if kind not in KINDS:
        raise SpecError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    low, high = item.get("low"), item.get("high")
    for key, limit in (("low", low), ("high", high)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)):
            raise SpecError(f"{where}: {key!r} must be a number")
    accepted = item.get("accepted", [])
    if kind == "numeric":
        if not isinstance(item.get("unit"), str) or not item["unit"].strip():
            raise SpecError(f"{where}: a numeric test needs its 'unit'")
        if low is None and high is None:
            raise SpecError(f"{where}: a numeric test needs 'low' and/or 'high'")
        if low is not None and high is not None and low > high:
            raise SpecError(f"{where}: low {low:g} is above high {high:g}")
    elif kind == "text":
        if not accepted or not all(isinstance(a, str) and a.strip() for a in accepted):
            raise SpecError(f"{where}: a text test needs 'accepted' (a list of strings)")
    elif {"unit", "low", "high", "accepted"} & set(item):
        raise SpecError(f"{where}: a passfail test has no unit, limits or accepted list")
    return TestSpec(
        product=item["product"],
        name=item["name"],
        method=item["method"],
        kind=kind,
        unit=item.get("unit"),
        low=None if low is None else float(low),
        high=None if high is None else float(high),
        accepted=tuple(accepted),
    )
