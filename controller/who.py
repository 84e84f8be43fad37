"""Who acted and where (R2, R8): the identity every command entry of the record carries.

`Who.fields()` is stamped into `command.accepted`, `command.refused`, `command.override`
and `alarm.acknowledged`: the user name as given, the account's user ID and printed name
(None when no account was authenticated, e.g. a simulation plant or the engine itself),
the terminal and the software version. The terminal is the host and tty of a local
process (`local_terminal`), or for a call over the controller's OPC UA interface the
client's address and, when it presented a certificate, its application URI
(`opcua_caller`).
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import Any

from controller import __version__
from ebr.people.users import User

SOFTWARE = f"cellbatch {__version__}"


@dataclass(frozen=True, slots=True)
class Who:
    """A person (or the engine) acting on a batch, and from which terminal."""

    user: str
    terminal: str
    user_id: str | None = None
    printed_name: str | None = None

    @classmethod
    def of(cls, user: str, terminal: str, account: User | None = None) -> Who:
        """`user` as given, with the authenticated `account`'s ID and printed name."""
        if account is None:
            return cls(user, terminal)
        return cls(account.username, terminal, account.user_id, account.printed_name)

    def fields(self) -> dict[str, Any]:
        """The entry fields: user, user_id, printed_name, terminal, software."""
        return {
            "user": self.user,
            "user_id": self.user_id,
            "printed_name": self.printed_name,
            "terminal": self.terminal,
            "software": SOFTWARE,
        }


def local_terminal() -> str:
    """This process's host and controlling tty (`host tty /dev/pts/3`, or `host no tty`)."""
    tty = "no tty"
    for fd in (0, 1, 2):
        try:
            tty = f"tty {os.ttyname(fd)}"
            break
        except OSError:
            continue
    return f"{socket.gethostname()} {tty}"


def opcua_caller(server: Any) -> str:
    """The OPC UA client whose method call is running now: its address and, if it
    presented one, the application URI of its certificate.

    asyncua handles each client connection's requests in one task, so the connection
    is found by the current task; anything unexpected gives `opcua client (unknown)`.
    """
    client = _current_client(server)
    if client is None:
        return "opcua client (unknown)"
    peer = getattr(client, "peer_name", None)
    address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
    uri = _application_uri(client)
    return f"opcua {address}" + (f" {uri}" if uri else "")


def opcua_client_host(server: Any) -> str:
    """The network address (host, no port) of the OPC UA client whose method call is
    running now; `unknown` when it cannot be told (throttled as one client)."""
    client = _current_client(server)
    peer = getattr(client, "peer_name", None)
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return "unknown"


def _current_client(server: Any) -> Any:
    """asyncua's connection object whose task runs the current method call, or None."""
    task = asyncio.current_task()
    clients = getattr(getattr(server, "bserver", None), "clients", None) or []
    for client in clients:
        if getattr(client, "_task", None) is task:
            return client
    return None


def _application_uri(client: Any) -> str | None:
    """The URI in the client certificate's subjectAltName, when there is a certificate."""
    connection = getattr(getattr(client, "processor", None), "_connection", None)
    policy = getattr(connection, "security_policy", None)
    der = getattr(policy, "peer_certificate", None)
    if not der:
        return None
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    except (ValueError, x509.ExtensionNotFound):
        return None
    return uris[0] if uris else None
