"""The controller's recipe library: what `Start` may name (never a path).

Loaded once, when the controller starts, off the event loop, from folders the person
who starts the controller chose (`controller serve --recipes DIR`, default the packaged
library): regular `*.yaml`/`*.yml` files only (a FIFO or device is skipped), at most
`MAX_RECIPE_BYTES` each and `MAX_FILES` in all. A request names a recipe by
`name@version`, by `name` (when the library holds one version of it) or by its content
hash (64 hex digits, what `cellbatch recipe show` prints and `batch start FILE` sends):
no request ever makes the controller open a file.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recipes import Recipe, RecipeError, parse_recipe

MAX_RECIPE_BYTES = 1_000_000
MAX_FILES = 2_000
MAX_REFERENCE = 256
DEFAULT_LIBRARY = Path(__file__).resolve().parents[1] / "recipes" / "library"
_HASH = re.compile(r"[0-9a-f]{64}")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class LibraryError(Exception):
    """A recipe reference that names nothing (or several things) in the library."""


@dataclass
class RecipeLibrary:
    """Recipes by content hash, and the files that could not be loaded (with why)."""

    recipes: dict[str, Recipe] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, folders: Sequence[Path]) -> RecipeLibrary:
        """Load every recipe file of `folders` (blocking: run it in a thread)."""
        library = cls()
        files = 0
        for folder in folders:
            try:
                names = sorted(folder.iterdir())
            except OSError as exc:
                library.problems.append(f"{folder}: cannot list ({exc.strerror})")
                continue
            for path in names:
                if path.suffix not in (".yaml", ".yml"):
                    continue
                files += 1
                if files > MAX_FILES:
                    library.problems.append(f"{folder}: more than {MAX_FILES} recipe files")
                    return library
                library._add(path)
        return library

    def _add(self, path: Path) -> None:
        try:
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                self.problems.append(f"{path}: not a regular file, skipped")
                return
            if info.st_size > MAX_RECIPE_BYTES:
                self.problems.append(f"{path}: larger than {MAX_RECIPE_BYTES} bytes, skipped")
                return
            text = path.read_bytes()[: MAX_RECIPE_BYTES + 1].decode("utf-8")
            recipe = parse_recipe(text, str(path))
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(f"{path}: cannot read ({type(exc).__name__})")
            return
        except RecipeError as exc:
            self.problems.append(f"{path}: {len(exc.diagnostics)} problem(s), skipped")
            return
        self.recipes.setdefault(recipe.content_hash, recipe)

    def find(self, reference: str) -> Recipe:
        """The recipe `reference` names; LibraryError (never echoing file content) if none."""
        if len(reference) > MAX_REFERENCE or _UNPRINTABLE.search(reference) or not reference:
            raise LibraryError("a recipe reference is name@version, name or a content hash")
        if "/" in reference or "\\" in reference:
            raise LibraryError(
                "recipes are named, not given as paths: use name@version or the content "
                "hash of a recipe in the controller's library"
            )
        if _HASH.fullmatch(reference):
            found = self.recipes.get(reference)
            if found is None:
                raise LibraryError(f"no recipe with content hash {reference} in the library")
            return found
        name, _, version = reference.partition("@")
        matches = [
            r
            for r in self.recipes.values()
            if r.header.name == name and (not version or r.header.version == version)
        ]
        if not matches:
            raise LibraryError(f"no recipe {reference} in the controller's library")
        if len(matches) > 1:
            versions = ", ".join(sorted(f"{name}@{r.header.version}" for r in matches))
            raise LibraryError(f"{reference} names several recipes ({versions}); name one")
        return matches[0]

    def listing(self) -> list[dict[str, str]]:
        """name, version, status and content hash of every recipe (sorted)."""
        return sorted(
            (
                {
                    "name": r.header.name,
                    "version": r.header.version,
                    "status": r.header.status,
                    "content_hash": r.content_hash,
                }
                for r in self.recipes.values()
            ),
            key=lambda item: (item["name"], item["version"]),
        )
