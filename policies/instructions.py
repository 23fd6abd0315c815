"""Signed instructions: what the authority tells a department node to run, and nothing more.

An :class:`Instruction` names one use of one dataset under one grant: the kind (``query``,
``train`` or ``evaluate``), the approved content (the exact SQL text, or the training plan's
digest and its DP-SGD steps), the exact privacy loss to spend, the grant's own terms for that
dataset (its total budget there, its version and the end of its validity), the smallest group
a release may show, a single-use nonce and a short lifetime. The authority signs it with its
Ed25519 key; a node verifies it with the authority's public key alone (:func:`verify_signed`),
so whoever carries it (the hub, the network) cannot change a byte of it.

The signed bytes are canonical: a domain-separation tag (:data:`INSTRUCTION_TAG`) followed by
JSON with sorted keys, no whitespace, UTF-8 text, every field present (``null`` when unused)
and integers only. Amounts are in the ledger's integer units (micro-epsilon, femto-delta, see
:mod:`policies.loss`), times in milliseconds since the epoch. A verifier decodes the payload,
re-encodes it and refuses it unless the bytes are identical, so one instruction has exactly one
valid encoding. A :class:`Revocation` notice is signed the same way under its own tag, so
neither can be passed off as the other.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.generate()
>>> instr = Instruction(kind="query", grant_id="g-1", grant_version=1,
...     grant_valid_until_ms=2_000_000_000_000, grant_epsilon_cap=3_000_000,
...     grant_delta_cap=10**9, firm="acme", dataset="tax", epsilon=500_000, delta=0,
...     issued_at_ms=1_700_000_000_000, expires_at_ms=1_700_000_060_000,
...     nonce=new_nonce(), min_group_size=10, sql="SELECT COUNT(*) FROM tax")
>>> signed = sign_instruction(key, instr)
>>> signed.payload[:23]
b'sandbox-instruction-v1\\n'
>>> verify_signed(key.public_key(), signed) == instr
True
>>> edited = SignedInstruction(signed.payload.replace(b"500000", b"400000"),
...                            signed.signature, signed.key_id)
>>> verify_signed(key.public_key(), edited)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
policies.errors.InstructionSignatureError: the instruction's signature does not verify...
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal, Self, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policies.bounds import MAX_GROUP_SIZE
from policies.errors import InstructionError, InstructionSignatureError
from policies.grants import Grant
from policies.keys import key_id
from policies.loss import DELTA_UNITS, EPS_UNITS, PrivacyLoss, cap_units

#: Format version of instructions and revocation notices (also in their tags).
FORMAT_VERSION = 1
#: Domain-separation tag: the first bytes of every signed instruction.
INSTRUCTION_TAG = b"sandbox-instruction-v1\n"
#: Domain-separation tag: the first bytes of every signed revocation notice.
REVOCATION_TAG = b"sandbox-revocation-v1\n"
#: What an instruction asks a node to do.
KINDS = ("query", "train", "evaluate")
#: How long an instruction made by :meth:`Instruction.for_query` stays valid by default.
DEFAULT_TTL_MS = 60_000

Kind = Literal["query", "train", "evaluate"]

_INT_MAX = 2**63 - 1  # every integer must fit a SQLite INTEGER
_NONCE = re.compile(r"[0-9a-f]{32}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_GRANT_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_MAX_NAME = 200
_MAX_SQL = 100_000
_T = TypeVar("_T", "Instruction", "Revocation")


def new_nonce() -> str:
    """A fresh single-use nonce: 128 random bits from :mod:`secrets`, as 32 hex digits.

    >>> len(new_nonce())
    32
    """
    return secrets.token_hex(16)


def _int(name: str, value: Any, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= _INT_MAX:
        raise InstructionError(
            f"{name} must be an integer from {minimum} to 2**63-1, got {value!r:.60}"
        )
    return value


def _text(name: str, value: Any, max_length: int = _MAX_NAME) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise InstructionError(f"{name} must be text of 1 to {max_length} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InstructionError(f"{name} is not valid Unicode text") from None
    if any(ord(c) < 32 and c not in "\t\n\r" or ord(c) == 127 for c in value):
        raise InstructionError(f"{name} contains control characters; remove them")
    return value


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Instruction:
    """One use of one dataset under one grant, exactly as the authority approved it.

    ``epsilon``/``delta`` are what this use spends, ``grant_epsilon_cap``/``grant_delta_cap``
    what the grant may spend on ``dataset`` in total (both in micro-epsilon and femto-delta).
    A ``query`` carries ``sql``; a ``train`` job carries ``plan_digest`` (the job's
    configuration hash) and ``max_steps`` (the DP-SGD steps its loss covers); an ``evaluate``
    job carries ``plan_digest`` only. ``min_group_size`` is the smallest group a release may
    show (the grant's minimum, or a larger one the firm asked for): a node suppresses every
    group whose noisy row count is below it. Construction checks every field
    (``InstructionError``).
    """

    kind: Kind
    grant_id: str
    grant_version: int
    grant_valid_until_ms: int
    grant_epsilon_cap: int
    grant_delta_cap: int
    firm: str
    dataset: str
    epsilon: int
    delta: int
    issued_at_ms: int
    expires_at_ms: int
    nonce: str
    min_group_size: int
    sql: str | None = None
    plan_digest: str | None = None
    max_steps: int | None = None
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.version != FORMAT_VERSION:
            raise InstructionError(
                f"instruction format version {self.version!r} is not supported (this node "
                f"reads version {FORMAT_VERSION}); upgrade the node or the authority"
            )
        if self.kind not in KINDS:
            raise InstructionError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.grant_id, str) or not _GRANT_ID.fullmatch(self.grant_id):
            raise InstructionError("grant_id must be 1-200 letters, digits or . _ : -")
        _text("firm", self.firm)
        _text("dataset", self.dataset)
        _int("grant_version", self.grant_version, 1)
        _int("grant_valid_until_ms", self.grant_valid_until_ms)
        _int("grant_epsilon_cap", self.grant_epsilon_cap, 1)
        _int("grant_delta_cap", self.grant_delta_cap)
        _int("epsilon", self.epsilon, 1)
        _int("delta", self.delta)
        _int("issued_at_ms", self.issued_at_ms)
        _int("expires_at_ms", self.expires_at_ms)
        _int("min_group_size", self.min_group_size, 1)
        if self.min_group_size > MAX_GROUP_SIZE:
            raise InstructionError(
                f"min_group_size must be at most {MAX_GROUP_SIZE}, got {self.min_group_size}"
            )
        if self.expires_at_ms <= self.issued_at_ms:
            raise InstructionError("expires_at_ms must be after issued_at_ms")
        if not isinstance(self.nonce, str) or not _NONCE.fullmatch(self.nonce):
            raise InstructionError("nonce must be 32 lowercase hex digits (use new_nonce())")
        if self.kind == "query":
            _text("sql", self.sql, _MAX_SQL)
            if self.plan_digest is not None or self.max_steps is not None:
                raise InstructionError("a query instruction carries sql, not a training plan")
            return
        if self.sql is not None:
            raise InstructionError(f"a {self.kind} instruction carries a plan digest, not sql")
        if not isinstance(self.plan_digest, str) or not _DIGEST.fullmatch(self.plan_digest):
            raise InstructionError(
                f"a {self.kind} instruction needs plan_digest: the job's SHA-256 hex digest"
            )
        if self.kind == "train":
            _int("max_steps", self.max_steps, 1)
        elif self.max_steps is not None:
            raise InstructionError("an evaluate instruction carries no max_steps")

    @property
    def loss(self) -> PrivacyLoss:
        """The (epsilon, delta) this instruction spends, as a :class:`PrivacyLoss`."""
        return PrivacyLoss.from_units((self.epsilon, self.delta, None))

    def encode(self) -> bytes:
        """The canonical signed bytes: :data:`INSTRUCTION_TAG` + canonical JSON."""
        return _encode(INSTRUCTION_TAG, asdict(self))

    @classmethod
    def for_query(
        cls,
        grant: Grant,
        dataset: str,
        sql: str,
        loss: PrivacyLoss,
        *,
        now_ms: int,
        ttl_ms: int = DEFAULT_TTL_MS,
        min_group_size: int | None = None,
    ) -> Instruction:
        """The instruction to run ``sql`` on ``dataset`` under ``grant``, spending ``loss``.

        ``min_group_size`` defaults to the grant's; a caller may raise it (the decision's
        obligations carry the firm's larger wish), never lower it (``InstructionError``).
        """
        if min_group_size is not None and (
            type(min_group_size) is not int or min_group_size < grant.min_group_size
        ):
            raise InstructionError(
                f"min_group_size {min_group_size!r:.30} is below grant {grant.grant_id!r}'s "
                f"minimum {grant.min_group_size}; sign the grant's minimum or a larger one"
            )
        return cls._from_grant(
            "query",
            grant,
            dataset,
            loss,
            now_ms,
            ttl_ms,
            sql=sql,
            min_group_size=grant.min_group_size if min_group_size is None else min_group_size,
        )

    @classmethod
    def for_job(
        cls,
        kind: Literal["train", "evaluate"],
        grant: Grant,
        dataset: str,
        plan_digest: str,
        loss: PrivacyLoss,
        *,
        max_steps: int | None = None,
        now_ms: int,
        ttl_ms: int = DEFAULT_TTL_MS,
    ) -> Instruction:
        """The instruction to run the approved plan ``plan_digest`` on ``dataset``."""
        return cls._from_grant(
            kind,
            grant,
            dataset,
            loss,
            now_ms,
            ttl_ms,
            plan_digest=plan_digest,
            max_steps=max_steps,
            min_group_size=grant.min_group_size,
        )

    @classmethod
    def _from_grant(
        cls,
        kind: Kind,
        grant: Grant,
        dataset: str,
        loss: PrivacyLoss,
        now_ms: int,
        ttl_ms: int,
        **content: Any,
    ) -> Instruction:
        if grant.revoked:
            raise InstructionError(f"grant {grant.grant_id!r} is revoked; no instruction for it")
        terms = grant.datasets.get(dataset)
        if terms is None:
            raise InstructionError(f"grant {grant.grant_id!r} does not cover dataset {dataset!r}")
        if loss.units.rho is not None:
            raise InstructionError(
                "instructions carry an (epsilon, delta) loss; convert the zCDP loss first"
            )
        return cls(
            kind=kind,
            grant_id=grant.grant_id,
            grant_version=grant.version,
            grant_valid_until_ms=_ms(grant.valid_until),
            grant_epsilon_cap=cap_units(terms.epsilon, EPS_UNITS),
            grant_delta_cap=cap_units(terms.delta, DELTA_UNITS),
            firm=grant.firm,
            dataset=dataset,
            epsilon=loss.units.epsilon,
            delta=loss.units.delta,
            issued_at_ms=now_ms,
            expires_at_ms=now_ms + ttl_ms,
            nonce=new_nonce(),
            **content,
        )


@dataclass(frozen=True)
class Revocation:
    """The authority's notice that a grant is revoked, from ``grant_version`` on, for good.

    >>> Revocation("g-1", 2, 1_700_000_000_000).encode()
    b'sandbox-revocation-v1\\n{"grant_id":"g-1","grant_version":2,"revoked_at_ms":1700000000000,"version":1}'
    """

    grant_id: str
    grant_version: int
    revoked_at_ms: int
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.version != FORMAT_VERSION:
            raise InstructionError(
                f"revocation format version {self.version!r} is not supported; upgrade the node"
            )
        if not isinstance(self.grant_id, str) or not _GRANT_ID.fullmatch(self.grant_id):
            raise InstructionError("grant_id must be 1-200 letters, digits or . _ : -")
        _int("grant_version", self.grant_version, 1)
        _int("revoked_at_ms", self.revoked_at_ms)

    def encode(self) -> bytes:
        """The canonical signed bytes: :data:`REVOCATION_TAG` + canonical JSON."""
        return _encode(REVOCATION_TAG, asdict(self))


@dataclass(frozen=True)
class SignedMessage:
    """Canonical payload bytes, the Ed25519 signature over them, and the signer's key id."""

    payload: bytes
    signature: bytes
    key_id: str

    def to_json(self) -> dict[str, str]:
        """Plain text fields for transport (payload as UTF-8 text, signature as hex)."""
        return {
            "payload": self.payload.decode("utf-8", "backslashreplace"),
            "signature": self.signature.hex(),
            "key_id": self.key_id,
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """The inverse of :meth:`to_json`; ``InstructionError`` if a field is missing or bad."""
        try:
            return cls(
                payload=str(data["payload"]).encode("utf-8"),
                signature=bytes.fromhex(str(data["signature"])),
                key_id=str(data["key_id"]),
            )
        except (KeyError, TypeError, ValueError, UnicodeEncodeError):
            raise InstructionError(
                "a signed message needs payload, signature (hex) and key_id"
            ) from None


class SignedInstruction(SignedMessage):
    """A signed :class:`Instruction`."""


class SignedRevocation(SignedMessage):
    """A signed :class:`Revocation`."""


def sign_instruction(key: Ed25519PrivateKey, instr: Instruction) -> SignedInstruction:
    """Sign the canonical encoding of ``instr`` with the authority's key."""
    payload = instr.encode()
    return SignedInstruction(payload, key.sign(payload), key_id(key.public_key()))


def sign_revocation(key: Ed25519PrivateKey, notice: Revocation) -> SignedRevocation:
    """Sign the canonical encoding of ``notice`` with the authority's key."""
    payload = notice.encode()
    return SignedRevocation(payload, key.sign(payload), key_id(key.public_key()))


def verify_signed(public_key: Ed25519PublicKey, signed: SignedMessage) -> Instruction:
    """The instruction in ``signed`` if ``public_key`` signed exactly these canonical bytes.

    Raises :class:`InstructionSignatureError` for another key or a bad signature and
    :class:`InstructionError` for a wrong tag, version or a non-canonical payload.
    """
    data = _verified(public_key, signed, INSTRUCTION_TAG, "instruction")
    instr = _build(Instruction, data, "instruction")
    _same_bytes(instr.encode(), signed.payload, "instruction")
    return instr


def verify_revocation(public_key: Ed25519PublicKey, signed: SignedMessage) -> Revocation:
    """The revocation notice in ``signed`` if ``public_key`` signed exactly these bytes."""
    data = _verified(public_key, signed, REVOCATION_TAG, "revocation")
    notice = _build(Revocation, data, "revocation")
    _same_bytes(notice.encode(), signed.payload, "revocation")
    return notice


def _encode(tag: bytes, data: dict[str, Any]) -> bytes:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return tag + text.encode("utf-8")


def _verified(
    public_key: Ed25519PublicKey, signed: SignedMessage, tag: bytes, what: str
) -> dict[str, Any]:
    """Check key id and signature, then the tag; the decoded JSON object."""
    if not isinstance(signed, SignedMessage) or not all(
        isinstance(v, bytes) for v in (signed.payload, signed.signature)
    ):
        raise InstructionSignatureError(
            f"expected a signed {what} (payload, signature, key_id); it was not signed"
        )
    trusted = key_id(public_key)
    if signed.key_id != trusted:
        raise InstructionSignatureError(
            f"the {what} names signing key {signed.key_id!r:.40} but this node trusts only the "
            f"authority key {trusted}; refuse it (or configure the authority's current key)"
        )
    try:
        public_key.verify(signed.signature, signed.payload)
    except InvalidSignature:
        raise InstructionSignatureError(
            f"the {what}'s signature does not verify under the authority key {trusted}: it was "
            "altered or signed by someone else; refuse it"
        ) from None
    if not signed.payload.startswith(tag):
        raise InstructionError(
            f"the signed payload is not a {what} (its tag is not {tag!r}); refuse it"
        )
    try:
        data = json.loads(
            signed.payload[len(tag) :].decode("utf-8"),
            parse_float=_no_float,
            parse_constant=_no_float,
            object_pairs_hook=_unique_keys,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InstructionError(f"the signed {what} is not UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InstructionError(f"the signed {what} is not a JSON object")
    return data


def _build(cls: type[_T], data: dict[str, Any], what: str) -> _T:
    names = {f.name for f in fields(cls)}
    if data.get("version") != FORMAT_VERSION:
        raise InstructionError(
            f"{what} format version {data.get('version')!r:.20} is not supported (expected "
            f"{FORMAT_VERSION}); upgrade the node or the authority"
        )
    if set(data) != names:
        extra, missing = sorted(set(data) - names), sorted(names - set(data))
        raise InstructionError(f"the signed {what} has fields {extra} and lacks {missing}")
    return cls(**data)


def _same_bytes(canonical: bytes, payload: bytes, what: str) -> None:
    if canonical != payload:
        raise InstructionError(
            f"the signed {what} is not in canonical form (sorted keys, no spaces, UTF-8, "
            "integers only); refuse it"
        )


def _no_float(text: str) -> Any:
    raise InstructionError(f"signed messages carry integers only, found {text!r:.30}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise InstructionError("a signed message repeats a field name; refuse it")
    return data
