"""Throwaway certificates for the TLS tests: a CA, a server certificate and a client certificate, plus a
client certificate from another CA (for the "wrong CA" cases). Made fresh per run, never committed.

``python -m tests.support.certs OUTDIR`` writes them as PEM files (the interop script calls it):

    ca.pem                       the CA the server and client certificates chain to
    server.pem, server.key       for localhost, 127.0.0.1 and ::1 (serverAuth)
    client.pem, client.key       a client certificate from ca.pem (clientAuth)
    other-ca.pem                 an unrelated CA
    other-client.pem, .key       a client certificate from other-ca.pem
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of the PEM files written by write_pki."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


@dataclass(frozen=True, slots=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    *,
    issuer: _Issued | None,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.cert.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = issuer.key if issuer else key
    return _Issued(builder.sign(signer, hashes.SHA256()), key)


def _write(issued: _Issued, cert_path: Path, key_path: Path | None = None) -> None:
    cert_path.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
    if key_path is not None:
        key_path.write_bytes(
            issued.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)


def write_pki(directory: Path) -> Pki:
    """Make a CA, a server and a client certificate (and another CA with its own client) in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _issue("agentstream test CA", issuer=None, ca=True)
    server = _issue(
        "localhost",
        issuer=ca,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    client = _issue("agentstream test client", issuer=ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_ca = _issue("another CA", issuer=None, ca=True)
    other_client = _issue("a client of another CA", issuer=other_ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    pki = Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
        other_client_cert=directory / "other-client.pem",
        other_client_key=directory / "other-client.key",
    )
    _write(ca, pki.ca)
    _write(server, pki.server_cert, pki.server_key)
    _write(client, pki.client_cert, pki.client_key)
    _write(other_ca, pki.other_ca)
    _write(other_client, pki.other_client_cert, pki.other_client_key)
    return pki


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.support.certs OUTDIR", file=sys.stderr)
        return 2
    write_pki(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
