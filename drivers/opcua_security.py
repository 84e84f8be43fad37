"""OPC UA secure-channel and identity settings of one connection, from a plant unit.

A plant unit's ``connection`` table (see ``plants/README.md``)::

    connection = { security_policy = "Basic256Sha256", security_mode = "SignAndEncrypt",
                   certificate = "pki/client-cert.der", private_key = "pki/client-key.pem",
                   server_certificate = "pki/server-cert.der",        # optional
                   identity = "username", username = "operator",
                   password_env = "CELLBATCH_OPCUA_PASSWORD" }

``identity`` is ``anonymous`` (default), ``username`` (``username`` plus the password
read from the environment variable named by ``password_env``, or ``password``) or
``certificate`` (the client certificate and key are also the user's identity).
The client's application URI is taken from the certificate's subjectAltName URI, as
OPC UA requires the two to match.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from asyncua import Client, ua
from asyncua.crypto import security_policies
from cryptography import x509

from drivers.errors import Disconnected, ProfileError

POLICIES: Final = ("None", "Basic256Sha256")
MODES: Final = ("None", "Sign", "SignAndEncrypt")
IDENTITIES: Final = ("anonymous", "username", "certificate")
_KEYS: Final = frozenset(
    {
        "security_policy",
        "security_mode",
        "certificate",
        "private_key",
        "private_key_password_env",
        "server_certificate",
        "identity",
        "username",
        "password",
        "password_env",
    }
)


@dataclass(frozen=True, slots=True)
class OpcUaSecurity:
    """How a client secures its channel and who it says it is."""

    policy: str = "None"
    mode: str = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    private_key_password: str | None = None
    server_certificate: Path | None = None
    identity: str = "anonymous"
    username: str | None = None
    password: str | None = None

    @property
    def secure(self) -> bool:
        """True when the channel is signed (and perhaps encrypted)."""
        return self.policy != "None"

    @classmethod
    def from_options(cls, options: Mapping[str, object], where: str) -> OpcUaSecurity:
        """Parse a plant unit's ``connection`` table; ProfileError names ``where`` and the key."""
        unknown = sorted(set(options) - _KEYS)
        if unknown:
            raise ProfileError(f"{where}: unknown connection keys {', '.join(unknown)}")

        def text(key: str, default: str | None = None) -> str | None:
            value = options.get(key, default)
            if value is not None and not isinstance(value, str):
                raise ProfileError(f"{where}: {key} must be a string, got {value!r}")
            return value

        def env(key: str) -> str | None:
            name = text(key)
            if name is None:
                return None
            if name not in os.environ:
                raise ProfileError(f"{where}: {key}: environment variable {name} is not set")
            return os.environ[name]

        policy = text("security_policy", "None") or "None"
        mode = text("security_mode", "None" if policy == "None" else "SignAndEncrypt") or "None"
        if policy not in POLICIES:
            raise ProfileError(f"{where}: security_policy must be one of {POLICIES}: {policy!r}")
        if mode not in MODES:
            raise ProfileError(f"{where}: security_mode must be one of {MODES}, got {mode!r}")
        if (policy == "None") != (mode == "None"):
            raise ProfileError(f"{where}: security_policy {policy} cannot go with mode {mode}")
        identity = text("identity", "anonymous") or "anonymous"
        if identity not in IDENTITIES:
            raise ProfileError(f"{where}: identity must be one of {IDENTITIES}, got {identity!r}")
        paths = {k: text(k) for k in ("certificate", "private_key", "server_certificate")}
        if (policy != "None" or identity == "certificate") and not (
            paths["certificate"] and paths["private_key"]
        ):
            raise ProfileError(f"{where}: certificate and private_key are required for security")
        for key, value in paths.items():
            if value is not None and not Path(value).is_file():
                raise ProfileError(f"{where}: {key} {value!r} is not a file")
        password = env("password_env") if "password_env" in options else text("password")
        username = text("username")
        if identity == "username" and (username is None or password is None):
            raise ProfileError(f"{where}: identity 'username' needs username and a password")
        return cls(
            policy=policy,
            mode=mode,
            certificate=Path(paths["certificate"]) if paths["certificate"] else None,
            private_key=Path(paths["private_key"]) if paths["private_key"] else None,
            private_key_password=env("private_key_password_env"),
            server_certificate=(
                Path(paths["server_certificate"]) if paths["server_certificate"] else None
            ),
            identity=identity,
            username=username,
            password=password,
        )

    async def apply(self, client: Client, url: str) -> None:
        """Configure ``client`` before connect (fetches the server certificate if not given)."""
        if self.certificate is not None:
            client.application_uri = application_uri(self.certificate)
        if self.identity == "username":
            assert self.username is not None and self.password is not None
            client.set_user(self.username)
            client.set_password(self.password)
        elif self.identity == "certificate":
            assert self.certificate is not None and self.private_key is not None
            await client.load_client_certificate(str(self.certificate))
            await client.load_private_key(self.private_key, self.private_key_password)
        if not self.secure:
            return
        assert self.certificate is not None and self.private_key is not None
        try:
            await client.set_security(
                security_policies.SecurityPolicyBasic256Sha256,
                str(self.certificate),
                str(self.private_key),
                self.private_key_password,
                str(self.server_certificate) if self.server_certificate else None,
                getattr(ua.MessageSecurityMode, self.mode),
            )
        except ua.UaError as exc:  # e.g. the server offers no such endpoint
            raise Disconnected(f"{url}: {self.policy}/{self.mode}: {exc}") from None


def application_uri(certificate: Path) -> str:
    """The URI in a certificate's subjectAltName (the OPC UA application URI)."""
    try:
        data = certificate.read_bytes()
        cert = (
            x509.load_pem_x509_certificate(data)
            if data.startswith(b"-----")
            else x509.load_der_x509_certificate(data)
        )
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    except (OSError, ValueError, x509.ExtensionNotFound) as exc:
        raise ProfileError(f"{certificate}: no usable certificate ({exc})") from None
    if not uris:
        raise ProfileError(f"{certificate}: certificate names no application URI")
    return uris[0]


__all__ = ["OpcUaSecurity", "application_uri"]
