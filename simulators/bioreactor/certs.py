"""Make a self-signed server and client certificate pair for trying OPC UA security.

Writes into DIR: ``server-cert.der``, ``server-key.pem`` (URI
``urn:cellbatch:simulators:bioreactor:server``), ``client-cert.der``,
``client-key.pem`` (URI ``urn:cellbatch:client``), ``trusted/client-cert.der``
(the server's trust list) and ``server-trusted/server-cert.der``; the client
certificate also names asyncua's default application URI, so ``uaread --security``
works with it. With
``--untrusted`` also ``rogue-cert.der`` / ``rogue-key.pem``, a client certificate
the server does not trust. For tests and demos only::

    python -m simulators.bioreactor.certs pki/
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Final

from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = ["CLIENT_URI", "CertSet", "make_certificate", "make_certificates"]

SERVER_URI: Final = "urn:cellbatch:simulators:bioreactor:server"
CLIENT_URI: Final = "urn:cellbatch:client"
#: asyncua's default client application URI: listed too, so that its command-line
#: tools (uaread, uals…) can use the client certificate as it is.
ASYNCUA_TOOLS_URI: Final = "urn:example.org:FreeOpcUa:opcua-asyncio"


@dataclass(frozen=True, slots=True)
class CertSet:
    """Paths of a generated server/client pair."""

    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    trusted: Path
    rogue_cert: Path | None = None
    rogue_key: Path | None = None


def make_certificate(
    cert: Path,
    key: Path,
    uri: str,
    name: str,
    *,
    server: bool,
    host: str = "localhost",
    more_uris: tuple[str, ...] = (),
) -> None:
    """Write a self-signed application certificate (DER) and its key (PEM).

    ``uri`` comes first among the subjectAltName URIs (the driver takes it as its
    application URI), then ``more_uris``.
    """
    private = generate_private_key()
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in (uri, *more_uris)]
    alt.append(x509.DNSName(host))
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    certificate = generate_self_signed_app_certificate(
        private, name, {"organizationName": "cellbatch"}, alt, extended=use, days=30
    )
    key.write_bytes(dump_private_key_as_pem(private))
    cert.write_bytes(certificate.public_bytes(Encoding.DER))


def make_certificates(folder: Path, *, untrusted: bool = False) -> CertSet:
    """Generate the pair (and optionally an untrusted client) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    s_cert, s_key = folder / "server-cert.der", folder / "server-key.pem"
    c_cert, c_key = folder / "client-cert.der", folder / "client-key.pem"
    make_certificate(s_cert, s_key, SERVER_URI, "cellbatch bioreactor simulator", server=True)
    make_certificate(
        c_cert, c_key, CLIENT_URI, "cellbatch client", server=False, more_uris=(ASYNCUA_TOOLS_URI,)
    )
    trusted = folder / "trusted"
    trusted.mkdir(exist_ok=True)
    shutil.copy(c_cert, trusted / c_cert.name)
    (folder / "server-trusted").mkdir(exist_ok=True)
    shutil.copy(s_cert, folder / "server-trusted" / s_cert.name)
    rogue_cert = rogue_key = None
    if untrusted:
        rogue_cert, rogue_key = folder / "rogue-cert.der", folder / "rogue-key.pem"
        make_certificate(rogue_cert, rogue_key, CLIENT_URI, "untrusted client", server=False)
    return CertSet(s_cert, s_key, c_cert, c_key, trusted, rogue_cert, rogue_key)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.bioreactor.certs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("folder", type=Path, help="where to write the certificates")
    parser.add_argument("--untrusted", action="store_true", help="also make an untrusted client")
    args = parser.parse_args(argv)
    try:
        made = make_certificates(args.folder, untrusted=args.untrusted)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in sorted(p for p in astuple(made) if p is not None):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
