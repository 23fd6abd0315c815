"""The local certificate authority: ECDSA P-256 keys and X.509 certificates for every party.

``init_ca(DIR)`` makes a self-signed CA (``ca.pem``, ``ca-key.pem``) in a 0700 directory;
``issue_certificate(ca, principal)`` makes a certificate whose SAN URI and subject carry the
principal (see :mod:`sandbox.credentials.identity`), written as ``ROLE-NAME.pem`` and
``ROLE-NAME-key.pem``. Private keys are written 0600 and never overwritten.

ECDSA P-256 with SHA-256 is used for the CA and every leaf: gRPC's TLS (BoringSSL) accepts it
for server and client certificates everywhere, which is not true of Ed25519.

Hub and node certificates may serve TLS (server and client auth, with DNS/IP names, by default
``localhost``, ``127.0.0.1`` and ``::1``); department, firm and regulator certificates are
client-only.

>>> import tempfile
>>> from pathlib import Path
>>> from sandbox.credentials.identity import Principal, principal_from_certificate
>>> d = Path(tempfile.mkdtemp())
>>> ca = init_ca(d / "ca")
>>> issued = issue_certificate(ca, Principal("firm", "acme"))
>>> issued.cert_path.name, oct(issued.key_path.stat().st_mode & 0o777)
('firm-acme.pem', '0o600')
>>> principal_from_certificate(issued.cert_path.read_bytes(), issuer=ca.certificate)
Principal(role='firm', name='acme')
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.credentials.identity import MACHINE_ROLES, Principal
from sandbox.errors import CredentialError

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
#: Names a hub or node certificate answers to unless told otherwise.
DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
LEAF_DAYS = 365
_BACKDATE = timedelta(minutes=5)  # tolerate small clock differences between machines


@dataclass(frozen=True)
class CertificateAuthority:
    """A loaded CA: its certificate, its private key and the directory they live in."""

    directory: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT_FILE

    def cert_pem(self) -> bytes:
        """The CA certificate in PEM: the root every party pins."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IssuedCertificate:
    """Where an issued certificate and its private key were written."""

    principal: Principal
    cert_path: Path
    key_path: Path
    ca_path: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed; an existing directory keeps its mode."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CredentialError(
            f"cannot create {path}: {exc.strerror}; choose another directory"
        ) from None
    if not path.is_dir():
        raise CredentialError(f"{path} is not a directory; choose another directory")
    return path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, created with ``mode`` (no window with wider rights)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise CredentialError(
            f"{path} already exists; it is never overwritten: remove it or choose another --out"
        ) from None
    except OSError as exc:
        raise CredentialError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; make it exact
        os.write(fd, data)
    finally:
        os.close(fd)


def _now() -> datetime:
    return datetime.now(UTC)


def init_ca(
    directory: Path | str, *, common_name: str = "sandbox local CA", days: int = CA_DAYS
) -> CertificateAuthority:
    """Make a new self-signed CA in ``directory`` (created 0700); refuses to replace one."""
    directory = Path(directory)
    if days < 1:
        raise CredentialError("--days must be at least 1")
    if (directory / CA_KEY_FILE).exists() or (directory / CA_CERT_FILE).exists():
        raise CredentialError(
            f"{directory} already holds a CA; use it with `sandbox certs issue --dir {directory}`"
            " or choose another --dir"
        )
    _private_dir(directory)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_new(directory / CA_KEY_FILE, _key_pem(key), 0o600)
    _write_new(directory / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return CertificateAuthority(directory, cert, key)


def load_ca(directory: Path | str) -> CertificateAuthority:
    """Load the CA in ``directory``; its key file must be readable by its owner only."""
    directory = Path(directory)
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    if not key_path.is_file() or not cert_path.is_file():
        raise CredentialError(
            f"no CA in {directory}; make one with `sandbox certs init --dir {directory}`"
        )
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        raise CredentialError(
            f"{key_path} is readable by others (mode {mode:04o}); run `chmod 600 {key_path}`"
        )
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (ValueError, TypeError) as exc:
        raise CredentialError(f"the CA in {directory} cannot be read ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise CredentialError(f"{key_path} is not the key of {cert_path}; the CA is damaged")
    return CertificateAuthority(directory, cert, key)


def _hosts(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            try:
                names.append(x509.DNSName(host.encode("idna").decode("ascii")))
            except UnicodeError:
                raise CredentialError(f"invalid host name {host!r}") from None
    return names


def make_certificate(
    ca: CertificateAuthority,
    principal: Principal,
    *,
    hosts: Iterable[str] | None = None,
    days: int = LEAF_DAYS,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new key and a certificate for ``principal`` signed by ``ca`` (nothing is written).

    ``hosts`` (DNS names or IP addresses) are only for hub and node certificates, which may
    serve TLS; ``None`` gives them :data:`DEFAULT_HOSTS`."""
    if days < 1:
        raise CredentialError("--days must be at least 1")
    serves = principal.role in MACHINE_ROLES
    host_list = list(DEFAULT_HOSTS if hosts is None and serves else hosts or ())
    if host_list and not serves:
        raise CredentialError(
            f"a {principal.role} certificate is for clients only; host names are for hub and "
            "node certificates"
        )
    key = _new_key()
    now = _now()
    not_after = min(now + timedelta(days=days), ca.certificate.not_valid_after_utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if serves:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, principal.role),
            x509.NameAttribute(NameOID.COMMON_NAME, principal.name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(principal.uri), *_hosts(host_list)]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


def issue_certificate(
    ca: CertificateAuthority,
    principal: Principal,
    *,
    out_dir: Path | str | None = None,
    hosts: Iterable[str] | None = None,
    days: int = LEAF_DAYS,
) -> IssuedCertificate:
    """Issue and write ``ROLE-NAME.pem`` (0644) and ``ROLE-NAME-key.pem`` (0600) in ``out_dir``.

    ``out_dir`` defaults to the CA directory and is created 0700; existing files are never
    overwritten."""
    out = _private_dir(Path(out_dir) if out_dir is not None else ca.directory)
    stem = f"{principal.role}-{principal.name}"
    cert_path, key_path = out / f"{stem}.pem", out / f"{stem}-key.pem"
    for path in (cert_path, key_path):
        if path.exists():
            raise CredentialError(
                f"{path} already exists; it is never overwritten: remove it or choose another --out"
            )
    cert, key = make_certificate(ca, principal, hosts=hosts, days=days)
    _write_new(key_path, _key_pem(key), 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return IssuedCertificate(principal, cert_path, key_path, ca.cert_path)
