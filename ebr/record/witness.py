"""Witness files: signed heads kept OUTSIDE the store, to detect a store rolled back.

A store copied back from an older, self-consistent state verifies: every chain in it
is intact and signed. What it cannot hide is a signed head that someone kept elsewhere.
Every writer with `$CELLBATCH_WITNESS` set appends each checkpoint it makes through the
ledger (site chain entries: key changes, batch registrations and seals, logins, QA) as
one JSON line `{batch_id, seq, hash, key_id, signature}` to that file (O_APPEND,
fsync'd). `ebr verify --witness FILE` then requires that the store still holds every
witnessed entry with its hash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ebr.record.errors import EbrError
from ebr.record.signing import Checkpoint, configured_witness

MAX_WITNESS_LINE = 4096


class WitnessError(EbrError):
    """A witness file cannot be written or read (FILE:LINE:COL: message)."""


def append_witness(path: Path, signed: Sequence[Checkpoint]) -> None:
    """Append one line per checkpoint to the witness file `path` and fsync it."""
    if not signed:
        return
    text = "".join(json.dumps(c.to_dict(), sort_keys=True) + "\n" for c in signed)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise WitnessError(
            f"{path}: cannot append to the witness file ({exc.strerror}); the entries are "
            "recorded and signed in the store"
        ) from exc


def witness_configured(signed: Sequence[Checkpoint]) -> None:
    """Append to the witness file named by `$CELLBATCH_WITNESS`, if any."""
    path = configured_witness()
    if path is not None:
        append_witness(path, signed)


def read_witness(path: Path) -> Iterator[tuple[int, Checkpoint]]:
    """The (line number, checkpoint) of every line; malformed lines raise WitnessError."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise WitnessError(f"{path}: cannot read the witness file ({exc.strerror})") from exc
    with handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}:1"
            if len(raw) > MAX_WITNESS_LINE:
                raise WitnessError(f"{where}: line longer than {MAX_WITNESS_LINE} bytes")
            if not raw.strip():
                continue
            try:
                item = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise WitnessError(f"{where}: not a JSON line") from exc
            yield number, _checkpoint(item, where)


def _checkpoint(item: object, where: str) -> Checkpoint:
    if not isinstance(item, dict):
        raise WitnessError(f"{where}: not a JSON object")
    batch_id, seq, digest = item.get("batch_id"), item.get("seq"), item.get("hash")
    key_id, signature = item.get("key_id"), item.get("signature")
    if (
        not isinstance(batch_id, str)
        or not isinstance(seq, int)
        or isinstance(seq, bool)
        or not all(isinstance(v, str) for v in (digest, key_id, signature))
    ):
        raise WitnessError(f"{where}: needs batch_id, seq (integer), hash, key_id, signature")
    return Checkpoint(batch_id, seq, str(digest), str(key_id), str(signature))
