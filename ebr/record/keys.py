"""Managing the signing keys a store trusts: `cellbatch keys init | list | rotate`.

The first key of a store is trusted on its own word (it signs its own public key: proof
of possession) — that is the store's anchor, which `ebr verify --trust FILE` pins from
outside. Every later key must be endorsed by a key already trusted: `keys init --endorse
OLD` for a second writer, `keys rotate` (the old key endorses its successor, then is
retired: it signs nothing recorded after that).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ebr.record.anchors import SiteIndex, TrustedKey, load_index
from ebr.record.errors import EbrError
from ebr.record.kinds import Kind
from ebr.record.ledger import append_site
from ebr.record.signing import ALGORITHM, Signer, create_key_file, load_signer
from ebr.record.store import Store


class KeyAdminError(EbrError):
    """A key change that is refused (not endorsed, already trusted, retired...)."""


@dataclass(frozen=True, slots=True)
class KeyChange:
    """What `init_key` / `rotate_key` did."""

    key_id: str
    path: Path
    created: bool
    """Whether a new key file was written."""
    retired: str | None = None
    """The key retired by a rotation (its file kept as `retired_path`)."""
    retired_path: Path | None = None


def site_index(store: Store) -> SiteIndex:
    """The keys and batch index the site chain of `store` records."""
    with store.snapshot() as conn:
        return load_index(conn)


def list_keys(store: Store) -> list[TrustedKey]:
    """Trusted keys, oldest first (retired ones included, with their retirement time)."""
    return list(site_index(store).keys.values())


def init_key(store: Store, path: Path, *, endorse: Path | None = None) -> KeyChange:
    """Create the key file `path` if missing and make `store` trust its key.

    The store's first key needs no endorsement; a further key needs `endorse`, the file
    of a key the store already trusts.
    """
    created = not path.exists()
    signer = create_key_file(path) if created else load_signer(path)
    index = site_index(store)
    known = index.keys.get(signer.key_id)
    if known is not None:
        if known.retired_at is not None:
            raise KeyAdminError(f"key {signer.key_id} was retired at {known.retired_at}")
        return KeyChange(signer.key_id, path, created)
    endorser = signer
    if index.keys:
        if endorse is None:
            raise KeyAdminError(
                f"this store already trusts {', '.join(index.keys)}; a new key must be "
                "endorsed by one of them (--endorse KEYFILE)"
            )
        endorser = load_signer(endorse)
        _check_usable(index, endorser)
    _trust(store, signer, endorser)
    return KeyChange(signer.key_id, path, created)


def rotate_key(store: Store, path: Path) -> KeyChange:
    """Replace the key in `path` by a new one: the old key endorses it and is retired.

    The old file is kept beside it as `<path>.retired-<key id>`.
    """
    old = load_signer(path)
    index = site_index(store)
    _check_usable(index, old)
    staging = path.with_name(path.name + ".new")
    if staging.exists():
        raise KeyAdminError(f"{staging}: left over from an interrupted rotation; remove it first")
    new = create_key_file(staging)
    _trust(store, new, old, retire=old.key_id)
    retired_path = path.with_name(f"{path.name}.retired-{old.key_id.split(':')[-1]}")
    os.replace(path, retired_path)
    os.replace(staging, path)
    return KeyChange(new.key_id, path, True, old.key_id, retired_path)


def _check_usable(index: SiteIndex, signer: Signer) -> None:
    known = index.keys.get(signer.key_id)
    if known is None:
        raise KeyAdminError(f"key {signer.key_id} ({signer.path}) is not trusted by this store")
    if known.retired_at is not None:
        raise KeyAdminError(f"key {signer.key_id} was retired at {known.retired_at}")


def _trust(store: Store, new: Signer, endorser: Signer, *, retire: str | None = None) -> None:
    """Record `key.trusted` for `new` (and `key.retired`), signed by `new` itself."""
    items: list[tuple[str, dict[str, object]]] = [
        (
            Kind.KEY_TRUSTED,
            {
                "key_id": new.key_id,
                "algorithm": ALGORITHM,
                "public_key": new.public_key,
                "endorsed_by": endorser.key_id,
                "endorsement": endorser.endorse(new.public_key),
            },
        )
    ]
    if retire is not None:
        items.append((Kind.KEY_RETIRED, {"key_id": retire, "successor": new.key_id}))
    append_site(store, items, signer=new)
