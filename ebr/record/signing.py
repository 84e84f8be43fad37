"""Signing keys and signed checkpoints: what anchors a hash chain (issue 16).

A hash chain alone proves nothing to someone who can rewrite the database: they can
recompute every hash. So every writer that appends (the controller's `Journal`, and the
short-lived QA and admin commands through `ebr.record.ledger`) holds an Ed25519 signing
key in a file OUTSIDE the store and signs, in the same transaction as the entries, the
new head of each chain it moved: a *checkpoint* `(batch_id, seq, hash)`. Public keys are
entries of the site chain (`key.trusted`, `key.retired`); `ebr verify` checks that the
head of every chain is covered by a checkpoint signed by a trusted key.

The key file is named by `$CELLBATCH_SIGNING_KEY` (or `--key` of `cellbatch keys`): a
PKCS#8 PEM file, readable by its owner only. Without it nothing is signed (a store
without trusted keys verifies as before, and `ebr verify` says it is unsigned).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ebr.record.errors import EbrError

ALGORITHM = "ed25519"
KEY_ENV = "CELLBATCH_SIGNING_KEY"
"""Environment variable naming the signing key file of this process."""
WITNESS_ENV = "CELLBATCH_WITNESS"
"""Environment variable naming the append-only witness file of this process."""
_MAX_KEY_FILE = 16 * 1024


class KeyFileError(EbrError):
    """A key file is missing, unreadable, not an Ed25519 key, or readable by others."""


def key_id_of(public_key: str) -> str:
    """The id of a public key (hex of its 32 raw bytes): `ed25519:` + 16 hex digits."""
    return f"{ALGORITHM}:{hashlib.sha256(bytes.fromhex(public_key)).hexdigest()[:16]}"


def checkpoint_message(batch_id: str, seq: int, digest: str) -> bytes:
    """The bytes a checkpoint signs: a chain's head (seq and entry hash)."""
    return f"cellbatch-checkpoint/1\n{batch_id}\n{seq}\n{digest}".encode()


def endorsement_message(public_key: str) -> bytes:
    """The bytes a trusted key signs to endorse a new public key (rotation, a second
    writer) — and that a first key signs itself with (proof of possession)."""
    return f"cellbatch-key/1\n{public_key}".encode()


def verify_signature(public_key: str, message: bytes, signature: str) -> bool:
    """Whether `signature` (hex) is a valid Ed25519 signature of `message`."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        key.verify(bytes.fromhex(signature), message)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed chain head."""

    batch_id: str
    seq: int
    hash: str
    key_id: str
    signature: str

    def valid(self, public_key: str) -> bool:
        """Whether the signature verifies with `public_key` (whose id must be key_id)."""
        return key_id_of(public_key) == self.key_id and verify_signature(
            public_key, checkpoint_message(self.batch_id, self.seq, self.hash), self.signature
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (exports, witness lines)."""
        return {
            "batch_id": self.batch_id,
            "seq": self.seq,
            "hash": self.hash,
            "key_id": self.key_id,
            "signature": self.signature,
        }


class Signer:
    """An Ed25519 private key loaded from its file."""

    def __init__(self, private: Ed25519PrivateKey, path: Path | None = None) -> None:
        """Wrap `private` (read from `path`, if any)."""
        self._private = private
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = raw.hex()
        """Hex of the 32 raw public key bytes."""
        self.key_id = key_id_of(self.public_key)
        self.path = path

    def sign(self, message: bytes) -> str:
        """The hex signature of `message`."""
        return self._private.sign(message).hex()

    def checkpoint(self, batch_id: str, seq: int, digest: str) -> Checkpoint:
        """Sign the head (seq, digest) of `batch_id`."""
        signature = self.sign(checkpoint_message(batch_id, seq, digest))
        return Checkpoint(batch_id, seq, digest, self.key_id, signature)

    def endorse(self, public_key: str) -> str:
        """Sign a public key (see `endorsement_message`)."""
        return self.sign(endorsement_message(public_key))


def create_key_file(path: Path) -> Signer:
    """Make a new key in a new file `path` (mode 0600); an existing file is never replaced."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path}: already exists; a key file is never overwritten") from exc
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create ({exc.strerror})") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    return Signer(private, path)


def _read_pem(path: Path) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        if info.st_size > _MAX_KEY_FILE:
            raise KeyFileError(f"{path}: too large for a key file")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(f"{path}: no such key file (cellbatch keys init)") from exc
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read ({exc.strerror})") from exc


def load_signer(path: Path) -> Signer:
    """Load a private key file; refuse one that others can read or that is not Ed25519."""
    pem = _read_pem(path)
    if path.stat().st_mode & 0o077:
        raise KeyFileError(f"{path}: readable by others; chmod 600 it (a signing key is secret)")
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return Signer(private, path)


def load_public_key(path: Path) -> str:
    """The public key (hex) in a PEM file holding a public or a private Ed25519 key."""
    pem = _read_pem(path)
    try:
        if b"PRIVATE KEY" in pem:
            return load_signer(path).public_key
        public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM key") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_pem(public_key: str) -> str:
    """The PEM (SubjectPublicKeyInfo) text of a public key given as hex."""
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


_cache: dict[tuple[str, int], Signer] = {}
_cache_lock = threading.Lock()


def configured_signer() -> Signer | None:
    """The signer named by `$CELLBATCH_SIGNING_KEY`, or None when it is not set.

    Raises KeyFileError when it is set but unusable: a writer that should sign must not
    quietly write unsigned records.
    """
    name = os.environ.get(KEY_ENV)
    if not name:
        return None
    path = Path(name)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    with _cache_lock:
        signer = _cache.get((name, mtime))
        if signer is None:
            signer = _cache[(name, mtime)] = load_signer(path)
        return signer


def configured_witness() -> Path | None:
    """The witness file named by `$CELLBATCH_WITNESS`, or None."""
    name = os.environ.get(WITNESS_ENV)
    return Path(name) if name else None
