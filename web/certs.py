"""Self-signed certificate for first HTTPS setup (``entry-buzzer make-cert``).

Why self-signed: a door controller on a school LAN rarely has a public name for a
CA to sign. Staff browsers trust this one certificate once (or the district replaces
it with one from its own CA); the key never leaves the Pi (mode 0600).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "panel-cert.pem"
KEY_FILE = "panel-key.pem"


def make_self_signed(out_dir: str | os.PathLike[str], hosts: list[str] | None = None,
                     days: int = 825) -> tuple[Path, Path]:
    """Write panel-cert.pem and panel-key.pem (P-256) into out_dir; refuses to overwrite."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / CERT_FILE, out / KEY_FILE
    for p in (cert_path, key_path):
        if p.exists():
            raise FileExistsError(f"{p} already exists; remove it first to make a new pair")
    hosts = hosts or [socket.gethostname(), "localhost", "127.0.0.1"]
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Entry buzzer panel")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
