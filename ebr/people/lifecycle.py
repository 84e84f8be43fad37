"""Recipe lifecycle in the record (R18): draft → approved (signature) → retired.

A recipe version is identified by name, version and content hash (the SHA-256 of its
canonical content, as `recipes` computes it). Approving it is a signature with the
meaning "approved" by QA or a QP on the site chain, followed by a `recipe.approved`
entry; retiring it is a signed `recipe.retired` entry. The status a recipe file
declares is the author's intent; what a GMP plant may run is what the store says.
Editing an approved file changes its hash, which makes it an unapproved draft again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ebr.people.signatures import (
    SIGNATURE,
    authenticate_signer,
    check_signature,
    signature_data,
)
from ebr.people.users import Directory, site_entries
from ebr.record.errors import EbrError
from ebr.record.kinds import Kind
from ebr.record.ledger import append_entries, ensure_site_chain
from ebr.record.model import SITE_CHAIN
from ebr.record.store import Store

APPROVED = Kind.RECIPE_APPROVED
RETIRED = Kind.RECIPE_RETIRED


@dataclass(frozen=True)
class RecipeId:
    """One exact recipe version."""

    name: str
    version: str
    content_hash: str

    def subject(self) -> dict[str, Any]:
        """The signature subject naming this version (also exactly what is signed)."""
        return {
            "type": "recipe",
            "name": self.name,
            "version": self.version,
            "content_hash": self.content_hash,
        }

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.content_hash[:12]})"


class LifecycleError(EbrError):
    """A lifecycle change was refused."""


def recipe_status(store: Store, recipe: RecipeId) -> str:
    """draft, approved or retired, as recorded (draft when nothing is recorded)."""
    status = "draft"
    signatures = {}
    for entry in site_entries(store, ""):
        if entry.kind == SIGNATURE and entry.data["subject"] == recipe.subject():
            signatures[entry.data["signature_id"]] = check_signature(entry, recipe.subject())
        elif entry.kind in (APPROVED, RETIRED) and entry.data["recipe"] == recipe.subject():
            signature = signatures.get(entry.data["signature_id"])
            if signature is not None and signature.valid:
                status = "approved" if entry.kind == APPROVED else "retired"
    return status


def _sign(
    store: Store,
    directory: Directory,
    username: str,
    password: str,
    recipe: RecipeId,
    kind: str,
    comment: str | None,
) -> None:
    ensure_site_chain(store, directory.clock)
    user = authenticate_signer(
        directory, SITE_CHAIN, username, password, "approved", recipe.subject()
    )
    signature = signature_data(user, "approved", recipe.subject(), recipe.subject(), comment)
    append_entries(
        store,
        SITE_CHAIN,
        [
            (SIGNATURE, signature),
            (
                kind,
                {
                    "recipe": recipe.subject(),
                    "signature_id": signature["signature_id"],
                    "comment": comment,
                },
            ),
        ],
        clock=directory.clock,
    )


def approve(
    store: Store,
    directory: Directory,
    username: str,
    password: str,
    recipe: RecipeId,
    comment: str | None = None,
) -> None:
    """Approve a draft recipe version (QA or QP signature)."""
    current = recipe_status(store, recipe)
    if current != "draft":
        raise LifecycleError(f"recipe {recipe} is already {current}")
    _sign(store, directory, username, password, recipe, APPROVED, comment)


def retire(
    store: Store,
    directory: Directory,
    username: str,
    password: str,
    recipe: RecipeId,
    reason: str,
) -> None:
    """Retire an approved recipe version (QA or QP signature; a reason is required)."""
    current = recipe_status(store, recipe)
    if current != "approved":
        raise LifecycleError(f"recipe {recipe} is {current}; only approved recipes retire")
    if not reason.strip():
        raise LifecycleError("a reason is required to retire a recipe")
    _sign(store, directory, username, password, recipe, RETIRED, reason)
