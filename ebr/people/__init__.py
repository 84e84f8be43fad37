"""People in the record: user accounts and roles (site chain), Part 11 electronic
signatures, and the recipe lifecycle (approve, retire) that QA signs.

Imports only ``ebr.record``.
"""

from ebr.people.duties import ROLES, DutyRefused
from ebr.people.lifecycle import RecipeId, approve, recipe_status, retire
from ebr.people.signatures import SignatureError, SigningSession, check_may_sign
from ebr.people.users import AuthError, Directory, User, UserAdminError

__all__ = [
    "ROLES",
    "AuthError",
    "Directory",
    "DutyRefused",
    "RecipeId",
    "SignatureError",
    "SigningSession",
    "User",
    "UserAdminError",
    "approve",
    "check_may_sign",
    "recipe_status",
    "retire",
]
