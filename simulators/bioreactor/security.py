"""OPC UA security of the bioreactor server: certificate, endpoints, trust list, users.

With a :class:`ServerSecurity`, the server offers the endpoints listed in
``policies`` (default: None, Basic256Sha256 Sign and Basic256Sha256
SignAndEncrypt), presents ``certificate`` (its subjectAltName URI must be
:data:`~simulators.bioreactor.opcua_server.APPLICATION_URI`), and accepts a secure
channel only from a client whose certificate is in the ``trusted`` folder (DER or
PEM files). Identities: a username must match ``users``; a user certificate must
be trusted too; anonymous sessions are allowed unless ``allow_anonymous`` is false.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509

__all__ = ["POLICIES", "ServerSecurity", "apply_security"]

#: Endpoint names accepted in ``policies``.
POLICIES: Final = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSecurity:
    """Where the server's certificate, key and trust list are, and who may log in."""

    certificate: Path
    private_key: Path
    trusted: Path
    policies: tuple[str, ...] = tuple(POLICIES)
    users: Mapping[str, str] = field(default_factory=dict)
    allow_anonymous: bool = True

    def __post_init__(self) -> None:
        for name in ("certificate", "private_key"):
            if not Path(getattr(self, name)).is_file():
                raise ValueError(f"security: {name} {str(getattr(self, name))!r} is not a file")
        if not Path(self.trusted).is_dir():
            raise ValueError(f"security: trusted {str(self.trusted)!r} is not a folder")
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies:
            raise ValueError(
                f"security: policies must be some of {', '.join(POLICIES)}, got {self.policies!r}"
            )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], where: str) -> ServerSecurity:
        """Parse a plant file's ``security`` table of a bioreactor simulator."""
        allowed = {"certificate", "private_key", "trusted", "policies", "users", "allow_anonymous"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(f"{where}: security: unknown keys {', '.join(unknown)}")
        try:
            policies = spec.get("policies", list(POLICIES))
            users = spec.get("users", {})
            if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
                raise ValueError(f"security: policies must be a list of names, got {policies!r}")
            if not isinstance(users, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in users.items()
            ):
                raise ValueError("security: users must be a table of name = password")
            return cls(
                certificate=Path(str(spec["certificate"])),
                private_key=Path(str(spec["private_key"])),
                trusted=Path(str(spec["trusted"])),
                policies=tuple(policies),
                users=dict(users),
                allow_anonymous=bool(spec.get("allow_anonymous", True)),
            )
        except KeyError as exc:
            raise ValueError(f"{where}: security: missing key {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


class _Users:
    """asyncua user manager: usernames from a table, user certificates from the trust list."""

    def __init__(self, security: ServerSecurity, trust: TrustStore) -> None:
        self._security = security
        self._trust = trust

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None:
            if self._security.users.get(username) == password:
                return User(role=UserRole.User, name=username)
            _log.info("refused user %r", username)
            return None
        if certificate is not None:  # DER bytes: the user's or the channel's certificate
            if isinstance(certificate, bytes):
                try:
                    certificate = x509.load_der_x509_certificate(certificate)
                except ValueError:
                    return None
            return User(role=UserRole.User) if self._trust.validate(certificate) else None
        return User(role=UserRole.User) if self._security.allow_anonymous else None


async def apply_security(server: Server, security: ServerSecurity) -> None:
    """Configure endpoints, certificate, key, trust list and user checks of ``server``."""
    server.set_security_policy([POLICIES[p] for p in security.policies])
    await server.load_certificate(str(security.certificate))
    await server.load_private_key(str(security.private_key))
    trust = TrustStore([Path(security.trusted)], [])
    await trust.load()
    options = (
        CertificateValidatorOptions.EXT_VALIDATION
        | CertificateValidatorOptions.TRUSTED
        | CertificateValidatorOptions.PEER_CLIENT
    )
    server.set_certificate_validator(CertificateValidator(options, trust).validate)
    server.iserver.set_user_manager(_Users(security, trust))  # type: ignore[arg-type]
