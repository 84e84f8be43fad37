"""What every `cellbatch` command acting on a store shares: options, errors, passwords.

Passwords come from an interactive prompt when there is a terminal, otherwise from
CELLBATCH_PASSWORD (the signer's) and CELLBATCH_NEW_PASSWORD (a password being set),
as shared/design/CLI.md says; they are never taken from the command line.
"""

from __future__ import annotations

import functools
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from typing import NoReturn, ParamSpec, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from ebr.record.errors import EbrError
from ebr.record.store import Store

DEFAULT_DB = "sqlite:///cellbatch.sqlite"
EXIT_ERROR = 1
EXIT_TAMPERED = 2

_P = ParamSpec("_P")
_R = TypeVar("_R")

db_option = click.option(
    "--db",
    "db_url",
    envvar="CELLBATCH_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="Database URL or SQLite file path (env CELLBATCH_DB).",
)


def fail(message: str) -> NoReturn:
    """Print an error line on stderr and exit with status 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def plain_errors(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn expected failures into one line on stderr and exit 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except EbrError as exc:
            fail(str(exc))
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            fail(f"database error: {reason}")
        except OSError as exc:
            fail(str(exc))

    return wrapper


def open_store(db_url: str) -> Store:
    """Open an existing eBR database; never create one as a side effect."""
    return Store.open(db_url, create=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Format rows as left-aligned columns (the last column right-aligned)."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells[:-1], widths, strict=False)]
        return "  ".join([*padded, cells[-1].rjust(widths[-1])])

    return "\n".join(line(row) for row in (headers, *rows))


def _interactive() -> bool:
    return sys.stdin.isatty()


def password_of(username: str) -> str:
    """The password of `username`: asked on the terminal, else CELLBATCH_PASSWORD."""
    if _interactive():
        return str(click.prompt(f"password for {username}", hide_input=True))
    value = os.environ.get("CELLBATCH_PASSWORD")
    if value is None:
        fail(f"no terminal to ask the password of {username}: set CELLBATCH_PASSWORD")
    return value


def second_password(username: str) -> str:
    """The password of a second person (a verifier, the QA approving an override): asked
    on the terminal, else CELLBATCH_VERIFIER_PASSWORD."""
    if _interactive():
        return str(click.prompt(f"password for {username}", hide_input=True))
    value = os.environ.get("CELLBATCH_VERIFIER_PASSWORD")
    if value is None:
        fail(f"no terminal to ask the password of {username}: set CELLBATCH_VERIFIER_PASSWORD")
    return value


def new_password(username: str, *, generate: bool) -> tuple[str, bool]:
    """A password being set for `username`, and whether it was generated here.

    Asked twice on a terminal, else CELLBATCH_NEW_PASSWORD; with `generate` and neither,
    a random one is made (the caller prints it once).
    """
    if _interactive():
        typed = click.prompt(
            f"new password for {username}", hide_input=True, confirmation_prompt=True
        )
        return str(typed), False
    given = os.environ.get("CELLBATCH_NEW_PASSWORD")
    if given is not None:
        return given, False
    if generate:
        return f"{secrets.token_urlsafe(12)}7a", True
    fail(f"no terminal to ask the new password of {username}: set CELLBATCH_NEW_PASSWORD")


user_option = click.option(
    "--user",
    "username",
    required=True,
    help="Who acts (password: prompt, or CELLBATCH_PASSWORD without a terminal).",
)


def default_plant() -> str:
    """The demo plant shipped with the package (``plants/demo.toml`` in a checkout)."""
    return str(resources.files("cellbatch") / "plants" / "demo.toml")
