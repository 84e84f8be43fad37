"""Securing the controller's OPC UA interface, and the clients that talk to it.

A PKI folder holds, for the controller (`controller serve --pki DIR`): ``server-cert.der``
and ``server-key.pem`` (its application URI is the certificate's subjectAltName URI) and
``trusted/`` (certificates of the terminals allowed to connect, DER or PEM); for a
terminal (`cellbatch batch|hmi --pki DIR`): ``client-cert.der``, ``client-key.pem`` and,
optionally, ``server-cert.der`` (the controller it expects). A secured controller offers
Basic256Sha256 SignAndEncrypt only, so user IDs and passwords never cross the network in
the clear, and refuses any terminal whose certificate it does not trust.
``python -m simulators.bioreactor.certs DIR`` makes such a folder for trying it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, Server, ua
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

from drivers.opcua_security import OpcUaSecurity, application_uri

SERVER_CERT = "server-cert.der"
SERVER_KEY = "server-key.pem"
TRUSTED = "trusted"
CLIENT_CERT = "client-cert.der"
CLIENT_KEY = "client-key.pem"


class InterfaceSecurityError(Exception):
    """A PKI folder lacks what it must hold."""


def _need(folder: Path, name: str, *, folder_wanted: bool = False) -> Path:
    path = folder / name
    if not (path.is_dir() if folder_wanted else path.is_file()):
        kind = "folder" if folder_wanted else "file"
        raise InterfaceSecurityError(f"{folder}: no {kind} {name} (see `controller serve --help`)")
    return path


def check_server_pki(pki: Path) -> tuple[Path, Path, Path]:
    """The controller's certificate, key and trust folder in `pki` (raises
    InterfaceSecurityError naming what is missing)."""
    return (
        _need(pki, SERVER_CERT),
        _need(pki, SERVER_KEY),
        _need(pki, TRUSTED, folder_wanted=True),
    )


async def secure_server(server: Server, pki: Path) -> None:
    """Offer only SignAndEncrypt endpoints and accept only trusted terminals (call
    after ``server.init()`` and before ``server.start()``)."""
    certificate, key, trusted = check_server_pki(pki)
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.set_application_uri(application_uri(certificate))
    await server.load_certificate(str(certificate))
    await server.load_private_key(str(key))
    trust = TrustStore([trusted], [])
    await trust.load()
    options = (
        CertificateValidatorOptions.EXT_VALIDATION
        | CertificateValidatorOptions.TRUSTED
        | CertificateValidatorOptions.PEER_CLIENT
    )
    server.set_certificate_validator(CertificateValidator(options, trust).validate)


@dataclass(frozen=True)
class Endpoint:
    """Where a running controller listens, and the terminal's PKI folder if secured."""

    url: str
    pki: Path | None = None

    def __str__(self) -> str:
        return self.url

    async def secure(self, client: Client) -> None:
        """Configure `client` for this endpoint before it connects."""
        if self.pki is None:
            return
        server_cert = self.pki / SERVER_CERT
        security = OpcUaSecurity(
            policy="Basic256Sha256",
            mode="SignAndEncrypt",
            certificate=_need(self.pki, CLIENT_CERT),
            private_key=_need(self.pki, CLIENT_KEY),
            server_certificate=server_cert if server_cert.is_file() else None,
        )
        await security.apply(client, self.url)
