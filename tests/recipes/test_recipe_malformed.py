"""The malformed corpus: each file states its diagnostics in leading comments.

Add a case by writing ``tests/recipes/malformed/NAME.yaml`` whose first lines are
``# expect: LINE:COL: text``, one per expected diagnostic in position order; the
test asserts exactly those positions and that each message contains the text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recipes import RecipeError, load_recipe

CORPUS = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))
EXPECT = re.compile(r"# expect: (\d+):(\d+): (.+)")


def expectations(path: Path) -> list[tuple[int, int, str]]:
    """The leading ``# expect:`` lines of a corpus file."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = EXPECT.fullmatch(line)
        if match is None:
            break
        found.append((int(match[1]), int(match[2]), match[3]))
    return found


def test_corpus_covers_enough_error_classes() -> None:
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_malformed_recipe_reports_expected_diagnostics(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect: LINE:COL: text' first line"
    with pytest.raises(RecipeError) as raised:
        load_recipe(path)
    got = raised.value.diagnostics
    positions = [(d.line, d.col) for d in got]
    assert positions == [(line, col) for line, col, _ in expected], str(raised.value)
    for diagnostic, (_, _, text) in zip(got, expected, strict=True):
        assert text in diagnostic.message
        assert diagnostic.file == str(path)
