"""The controller's recipe library: requests name recipes; files are read only at start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.library import MAX_RECIPE_BYTES, LibraryError, RecipeLibrary

RECIPES = Path(__file__).resolve().parent / "recipes"


@pytest.fixture(scope="module")
def library() -> RecipeLibrary:
    return RecipeLibrary.load([RECIPES])


def test_a_recipe_is_found_by_name_version_name_or_hash(library: RecipeLibrary) -> None:
    recipe = library.find("short-culture@0.1.0")
    assert library.find("short-culture") is recipe
    assert library.find(recipe.content_hash) is recipe
    assert {"name": "short-culture", "version": "0.1.0"}.items() <= library.listing()[
        [r["name"] for r in library.listing()].index("short-culture")
    ].items()


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ("/etc/passwd", "not given as paths"),
        (str(RECIPES / "short-culture.yaml"), "not given as paths"),
        ("short-culture@9", "no recipe short-culture@9"),
        ("0" * 64, "no recipe with content hash"),
        ("short\u202eculture", "a recipe reference is"),
        ("", "a recipe reference is"),
        ("x" * 300, "a recipe reference is"),
    ],
)
def test_anything_else_is_refused_without_reading_a_file(
    library: RecipeLibrary, reference: str, why: str
) -> None:
    with pytest.raises(LibraryError, match=why) as refused:
        library.find(reference)
    assert "root:" not in str(refused.value)


def test_fifos_huge_and_broken_files_are_skipped_at_load(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "a.yaml")  # reading it would block forever
    (tmp_path / "big.yaml").write_text("#" * (MAX_RECIPE_BYTES + 1))
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe not utf-8")
    (tmp_path / "broken.yaml").write_text("recipe: [")
    (tmp_path / "ok.yaml").write_text((RECIPES / "short-culture.yaml").read_text())
    library = RecipeLibrary.load([tmp_path])
    assert [r["name"] for r in library.listing()] == ["short-culture"]
    problems = "\n".join(library.problems)
    assert "a.yaml: not a regular file" in problems and "big.yaml: larger than" in problems
    assert "bad.yaml: cannot read" in problems and "broken.yaml:" in problems
