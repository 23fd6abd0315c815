"""Credentials: a real mTLS gRPC server derives the caller's principal from its certificate."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.credentials import (
    ROLES,
    ApiKeyStore,
    CertificateAuthority,
    Principal,
    authenticate,
    init_ca,
    issue_api_key,
    issue_certificate,
    key_id,
    load_ca,
    make_certificate,
    principal_from_auth_context,
    principal_from_certificate,
    require_role,
    revoke_api_key,
)
from sandbox.errors import AuthenticationError, CredentialError, RoleError

runner = CliRunner()
METHOD = "/sandbox.test.Whoami/Call"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------- CA and certs


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki") / "ca"
    ca = init_ca(directory)
    for role in ROLES:
        issue_certificate(ca, Principal(role, f"{role}-1"))
    issue_certificate(ca, Principal("firm", "智慧金融"))
    return directory


@pytest.fixture(scope="module")
def ca(ca_dir: Path) -> CertificateAuthority:
    return load_ca(ca_dir)


def test_ca_files_and_modes(ca_dir: Path, ca: CertificateAuthority) -> None:
    assert _mode(ca_dir) == 0o700
    assert _mode(ca_dir / "ca-key.pem") == 0o600
    assert _mode(ca_dir / "ca.pem") == 0o644
    basic = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is True
    assert ca.certificate.signature_hash_algorithm is not None
    for role in ROLES:
        assert _mode(ca_dir / f"{role}-{role}-1-key.pem") == 0o600
        pem = (ca_dir / f"{role}-{role}-1.pem").read_bytes()
        assert principal_from_certificate(pem, issuer=ca.certificate) == Principal(
            role, f"{role}-1"
        )


def test_ca_refuses_to_be_replaced_and_files_are_never_overwritten(
    ca_dir: Path, ca: CertificateAuthority
) -> None:
    with pytest.raises(CredentialError, match="already holds a CA"):
        init_ca(ca_dir)
    with pytest.raises(CredentialError, match="never overwritten"):
        issue_certificate(ca, Principal("firm", "firm-1"))


def test_ca_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    os.chmod(tmp_path / "ca" / "ca-key.pem", 0o644)
    with pytest.raises(CredentialError, match="chmod 600"):
        load_ca(tmp_path / "ca")
    with pytest.raises(CredentialError, match="sandbox certs init"):
        load_ca(tmp_path / "nothing")


def test_only_hub_and_node_certificates_serve(ca: CertificateAuthority) -> None:
    def usages(cert: x509.Certificate) -> set[str]:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        return {u.dotted_string for u in eku}

    server, client = "1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"
    hub, _ = make_certificate(ca, Principal("hub", "hub"))
    firm, _ = make_certificate(ca, Principal("firm", "acme"))
    assert usages(hub) == {server, client}
    assert usages(firm) == {client}
    with pytest.raises(CredentialError, match="clients only"):
        make_certificate(ca, Principal("firm", "acme"), hosts=["example.org"])


def test_principal_names_and_uris() -> None:
    for bad in ["", "a/b", "a b", "../x", ".hidden", "x" * 65, "a:b"]:
        with pytest.raises(CredentialError):
            Principal("firm", bad)
    with pytest.raises(CredentialError, match="unknown role"):
        Principal("admin", "x")  # type: ignore[arg-type]
    for uri in ["https://firm/x", "sandbox://firm/a/b", "sandbox://admin/x", "sandbox://firm/"]:
        with pytest.raises(CredentialError):
            Principal.from_uri(uri)


def test_forged_certificates_are_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    other = init_ca(tmp_path / "other")
    foreign, _ = make_certificate(other, Principal("firm", "acme"))
    with pytest.raises(AuthenticationError, match="not issued by this sandbox's CA"):
        principal_from_certificate(foreign, issuer=ca.certificate)
    # expired (checked again when the issuer is given)
    cert, _ = make_certificate(ca, Principal("firm", "acme"), days=1)
    later = datetime.now(UTC) + timedelta(days=3)
    with pytest.raises(AuthenticationError, match="expired"):
        principal_from_certificate(cert, issuer=ca.certificate, now=later)
    # CA-signed, but the subject says another name than the SAN URI
    _, key = make_certificate(ca, Principal("firm", "acme"))
    now = datetime.now(UTC)
    mismatched = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "department"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "acme"),
                ]
            )
        )
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("sandbox://firm/acme")]),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    with pytest.raises(AuthenticationError, match="does not match"):
        principal_from_certificate(mismatched, issuer=ca.certificate)
    with pytest.raises(AuthenticationError, match="cannot be read"):
        principal_from_certificate(b"not a certificate")


def test_auth_context_without_tls_or_certificate_is_refused() -> None:
    with pytest.raises(AuthenticationError):
        principal_from_auth_context({})
    with pytest.raises(AuthenticationError):
        principal_from_auth_context({"transport_security_type": [b"ssl"]})
    with pytest.raises(AuthenticationError):
        principal_from_auth_context(
            {"transport_security_type": [b"insecure"], "x509_pem_cert": [b"x"]}
        )


def test_require_role_refuses_every_other_role() -> None:
    for role in ROLES:
        principal = Principal(role, "x")
        assert require_role(principal, role) is principal
        for other in ROLES:
            if other != role:
                with pytest.raises(RoleError, match=f"needs the role {other}"):
                    require_role(principal, other)
    assert require_role(Principal("department", "d"), "firm", "department").role == "department"


# ---------------------------------------------------------------------------- real mTLS server


def _whoami(issuer: x509.Certificate) -> grpc.GenericRpcHandler:
    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            principal = principal_from_auth_context(context.auth_context(), issuer=issuer)
        except AuthenticationError as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if request == b"approve":
            try:
                require_role(principal, "department")
            except RoleError as exc:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        return json.dumps([principal.role, principal.name], ensure_ascii=False).encode()

    handler = grpc.unary_unary_rpc_method_handler(
        call, request_deserializer=None, response_serializer=None
    )
    return grpc.method_handlers_generic_handler("sandbox.test.Whoami", {"Call": handler})


@pytest.fixture(scope="module")
def server(ca_dir: Path, ca: CertificateAuthority) -> Iterator[int]:
    from concurrent import futures

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    srv.add_generic_rpc_handlers((_whoami(ca.certificate),))
    creds = grpc.ssl_server_credentials(
        [((ca_dir / "hub-hub-1-key.pem").read_bytes(), (ca_dir / "hub-hub-1.pem").read_bytes())],
        root_certificates=ca.cert_pem(),
        require_client_auth=True,
    )
    port = srv.add_secure_port("127.0.0.1:0", creds)
    assert port > 0
    srv.start()
    yield port
    srv.stop(grace=None)


def _call(
    port: int, root: bytes, cert: bytes | None, key: bytes | None, request: bytes = b"who"
) -> object:
    creds = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=cert
    )
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        stub = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        return json.loads(stub(request, timeout=5))


def _files(directory: Path, role: str, name: str) -> tuple[bytes, bytes]:
    stem = directory / f"{role}-{name}"
    return Path(f"{stem}.pem").read_bytes(), Path(f"{stem}-key.pem").read_bytes()


def test_mtls_caller_is_the_principal_in_its_certificate(
    server: int, ca_dir: Path, ca: CertificateAuthority
) -> None:
    cert, key = _files(ca_dir, "firm", "智慧金融")
    assert _call(server, ca.cert_pem(), cert, key) == ["firm", "智慧金融"]
    cert, key = _files(ca_dir, "node", "node-1")
    assert _call(server, ca.cert_pem(), cert, key) == ["node", "node-1"]
    cert, key = _files(ca_dir, "department", "department-1")
    assert _call(server, ca.cert_pem(), cert, key, b"approve") == ["department", "department-1"]


def test_a_firm_cannot_approve(server: int, ca_dir: Path, ca: CertificateAuthority) -> None:
    cert, key = _files(ca_dir, "firm", "firm-1")
    with pytest.raises(grpc.RpcError) as info:
        _call(server, ca.cert_pem(), cert, key, b"approve")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs the role department" in (info.value.details() or "")


def test_certificate_from_another_ca_fails_the_handshake(
    server: int, ca: CertificateAuthority, tmp_path: Path
) -> None:
    other = init_ca(tmp_path / "other")
    issued = issue_certificate(other, Principal("firm", "firm-1"))
    with pytest.raises(grpc.RpcError) as info:
        _call(server, ca.cert_pem(), issued.cert_path.read_bytes(), issued.key_path.read_bytes())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_no_client_certificate_fails_the_handshake(server: int, ca: CertificateAuthority) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(server, ca.cert_pem(), None, None)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_refuses_a_server_from_another_ca(server: int, ca_dir: Path, tmp_path: Path) -> None:
    other = init_ca(tmp_path / "other")
    cert, key = _files(ca_dir, "firm", "firm-1")
    with pytest.raises(grpc.RpcError) as info:
        _call(server, other.cert_pem(), cert, key)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------------------- API keys


def test_api_keys_issue_authenticate_refuse_revoke(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys.db"
    key = issue_api_key(path, "firm", "智慧金融")
    assert _mode(path) == 0o600
    assert key.startswith("sbx_") and len(key.split("_", 2)[2]) == 43
    store = ApiKeyStore(path)
    assert authenticate(store, key) == Principal("firm", "智慧金融")
    assert authenticate(store, key) == Principal("firm", "智慧金融")  # remembered, same answer
    kid = key_id(key)
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationError, match="wrong API key secret"):
        authenticate(store, wrong)
    unknown = "sbx_0000000000000000_" + key.split("_", 2)[2]
    with pytest.raises(AuthenticationError, match="unknown API key"):
        authenticate(store, unknown)
    for garbage in ["", "sbx_", "Bearer x", key + "x"]:
        with pytest.raises(AuthenticationError, match="not a sandbox API key"):
            authenticate(store, garbage)
    revoke_api_key(path, kid)  # through another store object: this one must still see it
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(store, key)
    with pytest.raises(CredentialError, match="already revoked"):
        revoke_api_key(store, kid)
    with pytest.raises(CredentialError, match="no API key with id"):
        revoke_api_key(store, "ffffffffffffffff")


def test_stored_hash_never_equals_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    keys = [issue_api_key(path, "department", "jinan"), issue_api_key(path, "regulator", "r")]
    raw = path.read_bytes()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key_id, salt, hash FROM api_keys").fetchall()
    salts = {salt for _, salt, _ in rows}
    assert len(salts) == 2  # one salt per key
    for key in keys:
        secret = key.split("_", 2)[2]
        assert secret.encode() not in raw and key.encode() not in raw
        for _, _, digest in rows:
            assert digest not in (key.encode(), secret.encode())


def test_api_keys_are_not_for_machines_and_store_mode_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    for role in ("hub", "node"):
        with pytest.raises(CredentialError, match="client certificate"):
            issue_api_key(path, role, "x")
    os.chmod(path, 0o644)
    with pytest.raises(CredentialError, match="chmod 600"):
        ApiKeyStore(path)


# ---------------------------------------------------------------------------- CLI


def test_cli_certs_and_keys(tmp_path: Path) -> None:
    ca_dir, out = tmp_path / "ca", tmp_path / "bank"
    result = runner.invoke(app, ["certs", "init", "--dir", str(ca_dir)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["certs", "issue", "firm", "bank", "--dir", str(ca_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert _mode(out) == 0o700 and _mode(out / "firm-bank-key.pem") == 0o600
    issued = (out / "firm-bank.pem").read_bytes()
    assert principal_from_certificate(issued, issuer=load_ca(ca_dir).certificate) == Principal(
        "firm", "bank"
    )

    store = tmp_path / "keys.db"
    result = runner.invoke(app, ["keys", "issue", "firm", "bank", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert authenticate(store, doc["key"]) == Principal("firm", "bank")
    key_file = tmp_path / "dept.key"
    result = runner.invoke(
        app,
        ["keys", "issue", "department", "jinan", "--store", str(store), "--key-file"]
        + [str(key_file)],
    )
    assert result.exit_code == 0, result.output
    assert _mode(key_file) == 0o600
    assert "sbx_" not in result.stdout
    assert authenticate(store, key_file.read_text().strip()).role == "department"
    result = runner.invoke(app, ["keys", "list", "--store", str(store), "--json"])
    assert sorted(e["name"] for e in json.loads(result.stdout)) == ["bank", "jinan"]
    result = runner.invoke(app, ["keys", "revoke", doc["id"], "--store", str(store)])
    assert result.exit_code == 0, result.output
    with pytest.raises(AuthenticationError):
        authenticate(store, doc["key"])


@pytest.mark.parametrize(
    "args",
    [
        ["certs", "issue", "firm", "bank", "--dir", "{tmp}/none"],
        ["certs", "issue", "admin", "bank", "--dir", "{tmp}/ca"],
        ["certs", "issue", "firm", "a/b", "--dir", "{tmp}/ca"],
        ["certs", "init", "--dir", "{tmp}/ca"],
        ["keys", "issue", "hub", "h", "--store", "{tmp}/k.db"],
        ["keys", "revoke", "ffffffffffffffff", "--store", "{tmp}/k.db"],
        ["keys", "list", "--store", "{tmp}/missing.db"],
    ],
)
def test_cli_failures_are_one_error_line(tmp_path: Path, args: list[str]) -> None:
    init_ca(tmp_path / "ca")
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output


def test_private_key_pem_is_pkcs8_p256(ca_dir: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(
        (ca_dir / "firm-firm-1-key.pem").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
