"""`cellbatch users`: user administration, every change journaled on the site chain.

Exit codes: 0 done, 1 refused or invalid (the reason on stderr).
"""

from __future__ import annotations

import json
import os

import click

from cellbatch.cli_common import (
    db_option,
    new_password,
    open_store,
    password_of,
    plain_errors,
    table,
    user_option,
)
from ebr.people.duties import ADMIN, ROLES
from ebr.people.users import Directory, User, alert_text, site_entries
from ebr.record.kinds import Kind
from ebr.record.store import Store

role_option = click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(ROLES),
    help="A role (repeat for several; admin stands alone).",
)
reason_option = click.option("--reason", required=True, help="Why (journaled).")


def _admin(directory: Directory, username: str, purpose: str) -> User:
    """Authenticate the acting admin."""
    return directory.authenticate(username, password_of(username), purpose)


@click.group(name="users")
def users() -> None:
    """User administration (audited): init, add, list, disable, unlock, roles, passwd,
    reset; audit shows alerts for repeated failed logins and signatures."""


@users.command(name="init")
@db_option
@click.option("--username", default="admin", show_default=True, help="The bootstrap admin.")
@click.option("--name", "printed_name", default="Site Administrator", show_default=True)
@plain_errors
def init_command(db_url: str, username: str, printed_name: str) -> None:
    """Create the bootstrap admin of a store that has no users (creates the store too).

    Password: a prompt, else CELLBATCH_NEW_PASSWORD, else CELLBATCH_PASSWORD, else a
    generated one printed once. The admin administers users and can sign nothing.
    """
    password, generated = new_password(username, generate=True)
    if generated and os.environ.get("CELLBATCH_PASSWORD"):
        password, generated = os.environ["CELLBATCH_PASSWORD"], False
    with Store.open(db_url) as store:
        user = Directory(store).init(username, printed_name, password)
    click.echo(f"created user {user.user_id} {user.username} ({user.printed_name}), role {ADMIN}")
    if generated:
        click.echo(f"password: {password}   (shown once; keep it safe)")


@users.command(name="add")
@db_option
@click.argument("username_new", metavar="USERNAME")
@click.option("--name", "printed_name", required=True, help="Printed name shown on signatures.")
@role_option
@user_option
@plain_errors
def add_command(
    db_url: str, username_new: str, printed_name: str, roles: tuple[str, ...], username: str
) -> None:
    """Add a user (admin only). The initial password (prompt, else CELLBATCH_NEW_PASSWORD,
    else generated and printed once) must be changed by its owner before first use:
    `cellbatch users passwd --user USERNAME`."""
    with open_store(db_url) as store:
        directory = Directory(store)
        admin = _admin(directory, username, f"users add {username_new}")
        password, generated = new_password(username_new, generate=True)
        user = directory.add(admin, username_new, printed_name, roles, password)
    click.echo(
        f"created user {user.user_id} {user.username} ({user.printed_name}), "
        f"roles {', '.join(sorted(user.roles))}; password must be changed at first use"
    )
    if generated:
        click.echo(f"temporary password: {password}   (shown once)")


@users.command(name="list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@plain_errors
def list_command(db_url: str, as_json: bool) -> None:
    """List every user ever created (disabled ones too: IDs are never reused)."""
    with open_store(db_url) as store:
        accounts = Directory(store).users()
    if as_json:
        click.echo(json.dumps([user.to_dict() for user in accounts], indent=2))
        return
    if not accounts:
        click.echo("no users (run `cellbatch users init`)")
        return
    rows = [
        (
            u.user_id,
            u.username,
            u.printed_name,
            ",".join(sorted(u.roles)),
            u.status + (" (must change password)" if u.must_change else ""),
        )
        for u in accounts
    ]
    click.echo(table(("ID", "USERNAME", "NAME", "ROLES", "STATUS"), rows))


@users.command(name="disable")
@db_option
@click.argument("target")
@reason_option
@user_option
@plain_errors
def disable_command(db_url: str, target: str, reason: str, username: str) -> None:
    """Disable a user for good (admin only); the ID and username are never reused."""
    with open_store(db_url) as store:
        directory = Directory(store)
        admin = _admin(directory, username, f"users disable {target}")
        user = directory.disable(admin, target, reason)
    click.echo(f"disabled {user.user_id} {user.username}")


@users.command(name="unlock")
@db_option
@click.argument("target")
@reason_option
@user_option
@plain_errors
def unlock_command(db_url: str, target: str, reason: str, username: str) -> None:
    """Unlock a user locked after repeated failed attempts (admin only)."""
    with open_store(db_url) as store:
        directory = Directory(store)
        admin = _admin(directory, username, f"users unlock {target}")
        user = directory.unlock(admin, target, reason)
    click.echo(f"unlocked {user.user_id} {user.username}")


@users.command(name="roles")
@db_option
@click.argument("target")
@role_option
@reason_option
@user_option
@plain_errors
def roles_command(
    db_url: str, target: str, roles: tuple[str, ...], reason: str, username: str
) -> None:
    """Replace a user's roles (admin only)."""
    with open_store(db_url) as store:
        directory = Directory(store)
        admin = _admin(directory, username, f"users roles {target}")
        user = directory.set_roles(admin, target, roles, reason)
    click.echo(f"{user.user_id} {user.username}: roles {', '.join(sorted(user.roles))}")


@users.command(name="passwd")
@db_option
@user_option
@plain_errors
def passwd_command(db_url: str, username: str) -> None:
    """Change your own password (current: prompt or CELLBATCH_PASSWORD; new: prompt or
    CELLBATCH_NEW_PASSWORD). Also the way to replace a temporary or expired password."""
    with open_store(db_url) as store:
        directory = Directory(store)
        user = directory.authenticate(
            username, password_of(username), "users passwd", allow_must_change=True
        )
        password, _ = new_password(username, generate=False)
        directory.change_password(user, password)
    click.echo(f"password changed for {username}")


@users.command(name="reset")
@db_option
@click.argument("target")
@user_option
@plain_errors
def reset_command(db_url: str, target: str, username: str) -> None:
    """Set a temporary password for a user (admin only; changed by its owner at first use)."""
    with open_store(db_url) as store:
        directory = Directory(store)
        admin = _admin(directory, username, f"users reset {target}")
        password, generated = new_password(target, generate=True)
        directory.reset_password(admin, target, password)
    click.echo(f"temporary password set for {target}")
    if generated:
        click.echo(f"temporary password: {password}   (shown once)")


@users.command(name="audit")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--failures", default=20, show_default=True, help="How many recent failures.")
@plain_errors
def audit_command(db_url: str, as_json: bool, failures: int) -> None:
    """Alerts for repeated failed logins or signatures (R12) and the latest failed
    attempts, from the site audit chain. Exit 0 (alerts are shown, not errors)."""
    with open_store(db_url) as store:
        directory = Directory(store)
        alerts = directory.alerts()
        failed = site_entries(store, Kind.USER_AUTH_FAILED)[-failures:] if failures > 0 else []
    if as_json:
        click.echo(
            json.dumps(
                {
                    "alerts": [{"ts": a.ts, **a.data} for a in alerts],
                    "failures": [{"ts": f.ts, **f.data} for f in failed],
                },
                indent=2,
            )
        )
        return
    for alert in alerts:
        click.echo(alert_text({"ts": alert.ts, **alert.data}))
    if not alerts:
        click.echo("no alerts")
    if failed:
        rows = [
            (
                f.ts,
                str(f.data.get("username")),
                str(f.data.get("purpose")),
                str(f.data.get("reason")),
            )
            for f in failed
        ]
        click.echo(table(("TIME", "USERNAME", "PURPOSE", "REASON"), rows))
