"""`cellbatch keys`: the Ed25519 keys that sign the record's chain heads.

A key lives in a file outside the store (`--key`, env CELLBATCH_SIGNING_KEY; mode 0600);
its public half and its validity are entries of the store's site chain. Every process
that writes the record (`run`, `controller serve`, `demo`, QA and user commands) signs
with the key `CELLBATCH_SIGNING_KEY` names. Exit codes: 0 done, 1 refused or invalid.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cellbatch.cli_common import db_option, open_store, plain_errors, table
from ebr.record.keys import init_key, list_keys, rotate_key
from ebr.record.signing import KEY_ENV, load_public_key, public_pem
from ebr.record.store import Store

key_option = click.option(
    "--key",
    "key_path",
    envvar=KEY_ENV,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The signing key file (env {KEY_ENV}).",
)


@click.group(name="keys")
def keys() -> None:
    """Signing keys of the record: init, list, rotate, public."""


@keys.command(name="init")
@db_option
@key_option
@click.option(
    "--endorse",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A key file the store already trusts (needed for any key but the first).",
)
@plain_errors
def keys_init(db_url: str, key_path: Path, endorse: Path | None) -> None:
    """Create the key file (if missing) and make the store trust its key."""
    with Store.open(db_url) as store:
        change = init_key(store, key_path, endorse=endorse)
    made = "created" if change.created else "using"
    click.echo(f"{made} {change.path}: key {change.key_id}, trusted by {db_url}")
    click.echo(f"sign with it: export {KEY_ENV}={change.path.resolve()}")


@keys.command(name="list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@plain_errors
def keys_list(db_url: str, as_json: bool) -> None:
    """The keys the store trusts (the first one is its anchor)."""
    with open_store(db_url) as store:
        found = list_keys(store)
    if as_json:
        rows = [
            {
                "key_id": k.key_id,
                "public_key": k.public_key,
                "trusted_at": k.trusted_at,
                "endorsed_by": k.endorsed_by,
                "retired_at": k.retired_at,
            }
            for k in found
        ]
        click.echo(json.dumps(rows, indent=1))
        return
    if not found:
        click.echo("no signing keys: this store's records are not signed (cellbatch keys init)")
        return
    lines = [(k.key_id, k.trusted_at, k.endorsed_by, k.retired_at or "valid") for k in found]
    click.echo(table(("KEY", "TRUSTED SINCE", "ENDORSED BY", "RETIRED"), lines))


@keys.command(name="rotate")
@db_option
@key_option
@plain_errors
def keys_rotate(db_url: str, key_path: Path) -> None:
    """Replace the key in --key by a new one it endorses; the old one is retired."""
    with open_store(db_url) as store:
        change = rotate_key(store, key_path)
    click.echo(f"{change.path}: new key {change.key_id}; {change.retired} retired")
    click.echo(f"old key file kept as {change.retired_path} (delete it when no longer needed)")


@keys.command(name="public")
@key_option
@plain_errors
def keys_public(key_path: Path) -> None:
    """Print the public key of --key as PEM (for `ebr verify --trust FILE`)."""
    click.echo(public_pem(load_public_key(key_path)), nl=False)
