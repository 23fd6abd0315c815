"""The SDK against a real hub and a real node over mTLS: a firm queries and verifies the answer
offline, a tampered proof fails, a regulator checks heads and consistency, profiles load from
files and the environment (and an API key others may read is refused)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policies.authority import Authority
from policies.grants import Action, ColumnRule, DatasetTerms, Grant
from sandbox.catalog import load_catalog
from sandbox.client import (
    FirmClient,
    Profile,
    QueryAnswer,
    RegulatorClient,
    check_consistency,
    check_inclusion,
    release_bytes,
    verify_answer,
)
from sandbox.credentials import (
    ApiKeyStore,
    Principal,
    init_ca,
    issue_api_key,
    issue_certificate,
)
from sandbox.errors import (
    ClientInvalidRequest,
    ClientNotFound,
    ClientPermissionDenied,
    ClientUnauthenticated,
    HubUnavailable,
    ProfileError,
    VerificationFailed,
)
from sandbox.hub import HubServer, HubTLS, NodeRoute, start
from sandbox.hub import release_bytes as hub_release_bytes
from sandbox.node import start as start_node
from sandbox.node_guard import NodeGuard
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.service import dataset_policy

PURPOSE = "labour-market research"
SQL = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"


@dataclass
class _Setup:
    authority: Authority
    hub: HubServer
    pki: Path
    firm_key: str
    regulator_key: str

    def profile(self, role: str, name: str) -> Profile:
        stem = self.pki / f"{role}-{name}"
        return Profile(
            hub=f"127.0.0.1:{self.hub.port}",
            ca=self.pki / "ca.pem",
            cert=Path(f"{stem}.pem"),
            key=Path(f"{stem}-key.pem"),
        )

    def keyed(self, key: str) -> Profile:
        return Profile(
            hub=f"127.0.0.1:{self.hub.api_key_port}", ca=self.pki / "ca.pem", api_key=key
        )


def _grant(grant_id: str, firm: str) -> Grant:
    now = datetime.now(UTC)
    return Grant(
        grant_id=grant_id,
        firm=firm,
        datasets={
            "pums": DatasetTerms(
                epsilon=5.0,
                delta=0.0,
                columns={"*": ColumnRule.AGGREGATE_ONLY, "sex": ColumnRule.GROUP_BY},
            )
        },
        purpose=PURPOSE,
        legal_basis="个人信息保护法 art. 13(5)",
        actions=frozenset({Action.QUERY}),
        epsilon_per_use=1.0,
        min_group_size=5,
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
        approved_by="official-1",
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pums_catalog_dir: Path) -> Iterator[_Setup]:
    root = tmp_path_factory.mktemp("client")
    ca = init_ca(root / "pki")
    for principal in (
        Principal("hub", "hub-1"),
        Principal("node", "node-1"),
        Principal("firm", "acme"),
        Principal("regulator", "csrc"),
    ):
        issue_certificate(ca, principal)
    catalog = load_catalog(pums_catalog_dir)
    authority = Authority(root / "state")
    authority.register_dataset(dataset_policy(catalog["pums"], epsilon_cap=20.0, delta_cap=1e-6))
    authority.create_grant(_grant("g-acme", "acme"))
    keys = ApiKeyStore(root / "keys.db")
    firm_key = issue_api_key(keys, "firm", "acme")
    regulator_key = issue_api_key(keys, "regulator", "csrc")

    guard = NodeGuard(root / "node", authority.public_key)
    guard.set_dataset_cap("pums", epsilon=20.0, delta=1e-6)
    pki = root / "pki"
    node = start_node(  # the real department node service, over mTLS
        pums_catalog_dir,
        authority.public_key,
        root / "node",
        ca=pki,
        cert=pki / "node-node-1.pem",
        key=pki / "node-node-1-key.pem",
        warm=False,
    )
    node_port = node.port

    tls = HubTLS.from_files(pki / "hub-hub-1.pem", pki / "hub-hub-1-key.pem", pki / "ca.pem")
    hub = start(
        authority,
        catalog,
        {"pums": NodeRoute("node-1", f"127.0.0.1:{node_port}")},
        tls=tls,
        api_key_address="127.0.0.1:0",
        api_keys=keys,
        node_timeout_s=10,
    )
    try:
        yield _Setup(authority, hub, pki, firm_key, regulator_key)
    finally:
        hub.stop()
        node.stop(None)


def _entry_of(setup: _Setup, answer: QueryAnswer) -> bytes:
    """The release entry's bytes, as a regulator's InclusionProof returns them."""
    with RegulatorClient(setup.profile("regulator", "csrc")) as regulator:
        proof = regulator.inclusion_proof(answer.log_index, answer.tree_size)
    return proof.entry


def test_a_firm_queries_and_verifies_the_answer_offline(setup: _Setup) -> None:
    key = setup.authority.public_key
    with FirmClient(setup.profile("firm", "acme")) as firm:
        assert [d.name for d in firm.datasets()] == ["pums"]
        info = firm.describe("pums")
        assert info.node == "node-1" and {"age", "sex"} <= {c.name for c in info.columns}
        before = firm.remaining("g-acme", "pums")
        answer = firm.query(SQL, 0.25, purpose=PURPOSE)
        after = firm.remaining("g-acme", "pums")
    assert answer.grant_id == "g-acme" and answer.outputs == ("sex", "n")
    assert [cells["sex"].value for cells in answer.rows] == [0, 1]
    assert all(cells["n"].ci95 is not None for cells in answer.rows)
    assert answer.epsilon_spent == pytest.approx(0.25)
    assert after.epsilon == pytest.approx(before.epsilon - 0.25)
    assert after.grant.committed == before.grant.committed + 1
    body = FirmClient.verify(answer, key, _entry_of(setup, answer))
    assert body["firm"] == "acme" and body["kind"] == "release"
    # The hub sends the entry's bytes with the proof: the firm checks inclusion on its own.
    assert verify_answer(answer, key)["kind"] == "release"
    with pytest.raises(VerificationFailed, match="no log entry bytes"):
        verify_answer(dataclasses.replace(answer, entry=None), key)


def test_tampered_answers_fail_verification(setup: _Setup) -> None:
    key = setup.authority.public_key
    with FirmClient(setup.profile("firm", "acme")) as firm:
        answer = firm.query(SQL, 0.1, purpose=PURPOSE)
    entry = _entry_of(setup, answer)
    verify_answer(answer, key, entry)
    path = list(answer.inclusion_proof)
    path[0] = bytes(b ^ 1 for b in path[0])
    bad_proof = dataclasses.replace(answer, inclusion_proof=tuple(path))
    with pytest.raises(VerificationFailed, match="does not lead to the tree head root"):
        verify_answer(bad_proof, key, entry)
    cells = dict(answer.rows[0])
    cells["n"] = dataclasses.replace(cells["n"], value=123456)
    bad_values = dataclasses.replace(answer, rows=(cells, *answer.rows[1:]))
    with pytest.raises(VerificationFailed, match="differ from the released bytes"):
        verify_answer(bad_values, key, entry)
    head = answer.tree_head
    forged = dataclasses.replace(answer, tree_head=dataclasses.replace(head, root=b"\0" * 32))
    with pytest.raises(VerificationFailed, match="not signed"):
        verify_answer(forged, key, entry)
    other = _entry_of(setup, dataclasses.replace(answer, log_index=0))  # the policy entry
    with pytest.raises(VerificationFailed):
        verify_answer(answer, key, other)


def test_a_regulator_checks_heads_consistency_and_entries(setup: _Setup) -> None:
    key = setup.authority.public_key
    with RegulatorClient(setup.profile("regulator", "csrc")) as regulator:
        first = regulator.tree_head()
        with FirmClient(setup.keyed(setup.firm_key)) as firm:
            answer = firm.query(SQL, 0.1, purpose=PURPOSE)
        proof = regulator.consistency_proof(first.size)
        newer = check_consistency(first, proof, key)
        assert newer.size > first.size
        included = regulator.inclusion_proof(answer.log_index)
        check_inclusion(included, key)
        assert included.body()["release_sha256"] == answer.release_digest
        page = regulator.entries(0, 2)
        assert [e.index for e in page.entries] == [0, 1] and page.next == 2
        assert page.entries[0].body()["kind"] == "policy"
        with pytest.raises(ClientInvalidRequest, match="not in a tree"):
            regulator.inclusion_proof(10**9)
        bad = dataclasses.replace(proof, proof=proof.proof[:-1] + (b"\1" * 32,))
        with pytest.raises(VerificationFailed, match="rewritten or forked"):
            check_consistency(first, bad, key)


def test_api_key_profiles_and_errors_carry_the_hubs_message(setup: _Setup, tmp_path: Path) -> None:
    file = tmp_path / "profile.toml"
    file.write_text(
        f'hub = "127.0.0.1:{setup.hub.api_key_port}"\nca = "{setup.pki / "ca.pem"}"\n'
        f'api_key = "{setup.firm_key}"\n'
    )
    file.chmod(0o600)
    profile = Profile.load(environ={"SANDBOX_PROFILE": str(file)})
    assert setup.firm_key not in repr(profile)
    with FirmClient(profile) as firm:
        budget = firm.remaining()
        assert budget.grant.grant_id == "g-acme"
        with pytest.raises(ClientNotFound, match="tax"):
            firm.describe("tax")
        with pytest.raises(ClientInvalidRequest):
            firm.query("SELECT * FROM pums", 0.1, purpose=PURPOSE)
    with RegulatorClient(setup.keyed(setup.regulator_key)) as regulator:
        assert regulator.tree_head().size > 0
    wrong = RegulatorClient(setup.keyed(setup.firm_key))
    with wrong, pytest.raises(ClientPermissionDenied, match="needs the role regulator"):
        wrong.tree_head()
    stranger = FirmClient(setup.keyed("sbx_0000000000000000_" + "a" * 43))
    with stranger, pytest.raises(ClientUnauthenticated) as info:
        stranger.datasets()
    assert info.value.code == "UNAUTHENTICATED" and "\n" not in str(info.value)
    # Environment variables build a profile and override the file's fields.
    env = {
        "SANDBOX_PROFILE": str(file),
        "SANDBOX_HUB": f"127.0.0.1:{setup.hub.port}",
        "SANDBOX_CERT": str(setup.pki / "firm-acme.pem"),
        "SANDBOX_KEY": str(setup.pki / "firm-acme-key.pem"),
    }
    mixed = Profile.load(environ=env)
    assert mixed.hub.endswith(str(setup.hub.port)) and mixed.cert is not None
    dead = Profile(hub="127.0.0.1:1", ca=setup.pki / "ca.pem", api_key=setup.firm_key)
    with FirmClient(dead, timeout=2) as nowhere, pytest.raises(HubUnavailable):
        nowhere.datasets()


def test_profiles_refuse_unsafe_or_incomplete_settings(tmp_path: Path) -> None:
    file = tmp_path / "profile.toml"
    file.write_text('hub = "hub:50052"\napi_key = "sbx_0123456789abcdef_secret"\n')
    file.chmod(0o644)
    with pytest.raises(ProfileError, match="chmod 600"):
        Profile.from_file(file)
    with pytest.raises(ProfileError, match="chmod 600"):
        Profile.load(environ={"SANDBOX_PROFILE": str(file)})
    file.chmod(0o600)
    assert Profile.from_file(file).api_key == "sbx_0123456789abcdef_secret"
    certs = tmp_path / "certs.yaml"
    certs.write_text("hub: hub:50051\nca: ca.pem\ncert: firm.pem\nkey: firm-key.pem\n")
    certs.chmod(0o644)  # no secret in it: the key file's own mode protects the key
    profile = Profile.from_file(certs)
    assert profile.ca == tmp_path / "ca.pem" and profile.key == tmp_path / "firm-key.pem"
    with pytest.raises(ProfileError, match="no hub address"):
        Profile.from_env({"SANDBOX_API_KEY": "sbx_x"})
    with pytest.raises(ProfileError, match="no credential"):
        Profile.from_env({"SANDBOX_HUB": "hub:1"})
    with pytest.raises(ProfileError, match="without its key"):
        Profile.from_env({"SANDBOX_HUB": "hub:1", "SANDBOX_CERT": "c.pem"})
    with pytest.raises(ProfileError, match="unknown fields"):
        (tmp_path / "x.toml").write_text('hub = "h:1"\npassword = "p"\n')
        Profile.from_file(tmp_path / "x.toml")
    with pytest.raises(ProfileError, match="cannot read the profile"):
        Profile.load(environ={"SANDBOX_PROFILE": str(tmp_path / "missing.toml")})
    home = tmp_path / "home"
    (home / ".config/sandbox").mkdir(parents=True)
    (home / ".config/sandbox/profile.toml").write_text('hub = "h:9"\ncert = "c"\nkey = "k"\n')
    assert Profile.load(environ={"HOME": str(home)}).hub == "h:9"


def test_release_bytes_match_the_hubs() -> None:
    result = pb.QueryResult(dataset="pums", sql=SQL, outputs=["sex", "n"], epsilon_spent=0.5)
    group = result.groups.add()
    group.cells.add(value=pb.Value(int_value=1))
    group.cells.add(value=pb.Value(float_value=12.5), ci95=pb.Interval(low=1.0, high=20.0))
    assert release_bytes(result) == hub_release_bytes(result)


def test_importing_the_sdk_loads_no_heavy_stack() -> None:
    code = (
        "import sys, sandbox.client\n"
        "heavy = {'torch', 'flwr', 'ray', 'opendp', 'polars', 'numpy'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env, check=True
    )
    assert out.stdout.strip() == "[]"
