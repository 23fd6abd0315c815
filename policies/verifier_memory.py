"""A regulator's own memory of a log: the pinned authority key and the last verified head.

Verifying one export against a public key shipped beside it proves little: whoever can replace
the export can replace the key, cut entries off the end, or show a different (forked) log.
The verifier therefore keeps, per log it audits, a small file of its own (never the
authority's) holding

* the authority's public key the first verification pinned (trust on first use),
* the last tree head it verified, and
* the witnesses (name -> public key) and the number of their cosignatures it requires, pinned
  the first time they are given (later verifications require them without being told again).

Every later verification of that log requires the same key and a log that extends the
remembered head (same entries under the same root for its size); a different key, a shorter
log, or a log whose first entries hash to another root fails with a message saying which;
so does an export missing a cosignature the pinned witnesses and count require, or a witness
name given with another key than the one pinned. More witnesses, or a larger count, may be
added later (they only make the check stricter). The memory moves forward only after a
verification (and the caller's own ``check`` of the verified export) succeeded.

Files live in ``$SANDBOX_VERIFIER_HOME`` or ``~/.config/sandbox/verifier/``, one JSON file per
log name (default ``default``), mode 0600.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from policies.errors import TreeHeadError, VerificationError
from policies.keys import key_id, public_key_pem
from policies.treehead import SignedTreeHead, verify_tree_head
from policies.verify import VerifiedLog, verify_export

ENV_HOME = "SANDBOX_VERIFIER_HOME"
DEFAULT_HOME = Path("~/.config/sandbox/verifier")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def verifier_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(ENV_HOME) or DEFAULT_HOME).expanduser()


@dataclass(frozen=True)
class Remembered:
    """What the verifier pinned for one log."""

    public_key: Ed25519PublicKey
    head: SignedTreeHead
    #: Pinned witnesses: name -> public key.
    witness_keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    #: How many of the pinned witnesses must have cosigned every later head.
    min_witnesses: int = 0

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)


@dataclass(frozen=True)
class MemoryVerdict:
    """A verification that succeeded, and what the memory held before it."""

    log: VerifiedLog
    before: Remembered | None


class VerifierMemory:
    """The remembered key and head of each log this verifier audits."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = verifier_home() if home is None else Path(home)

    def path(self, log: str) -> Path:
        if not _NAME.match(log):
            raise VerificationError(
                f"log name {log!r}: use letters, digits, '.', '_' or '-' (at most 100)"
            )
        return self.home / f"{log}.json"

    def recall(self, log: str = "default") -> Remembered | None:
        path = self.path(log)
        try:
            data = json.loads(path.read_text())
            key = load_pem_public_key(data["public_key_pem"].encode())
            head = SignedTreeHead.from_json(data["head"])
            witnesses = {
                str(name): load_pem_public_key(pem.encode())
                for name, pem in dict(data.get("witnesses", {})).items()
            }
            minimum = data.get("min_witnesses", 0)
            if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
                raise ValueError(f"min_witnesses {minimum!r}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, TreeHeadError) as exc:
            raise VerificationError(
                f"the verifier's memory {path} is unreadable ({exc}); restore it from your "
                "backup (or `sandbox audit forget` to start over, losing what it pinned)"
            ) from None
        if not isinstance(key, Ed25519PublicKey) or not all(
            isinstance(k, Ed25519PublicKey) for k in witnesses.values()
        ):
            raise VerificationError(f"the verifier's memory {path} holds a non-Ed25519 key")
        try:
            verify_tree_head(head, key)
        except TreeHeadError:
            raise VerificationError(
                f"the verifier's memory {path} was edited: its tree head does not verify"
            ) from None
        checked = {n: k for n, k in witnesses.items() if isinstance(k, Ed25519PublicKey)}
        return Remembered(key, head, checked, minimum)

    def remember(
        self,
        log: str,
        public_key: Ed25519PublicKey,
        head: SignedTreeHead,
        witness_keys: Mapping[str, Ed25519PublicKey] | None = None,
        min_witnesses: int = 0,
    ) -> None:
        path = self.path(log)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = {
            "public_key_pem": public_key_pem(public_key).decode(),
            "head": head.to_json(),
            "witnesses": {
                name: public_key_pem(k).decode() for name, k in sorted((witness_keys or {}).items())
            },
            "min_witnesses": min_witnesses,
        }
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, sort_keys=True, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def forget(self, log: str = "default") -> bool:
        path = self.path(log)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def verify(
        self,
        export: Path,
        public_key: Ed25519PublicKey,
        log: str = "default",
        *,
        witness_keys: Mapping[str, Ed25519PublicKey] | None = None,
        min_witnesses: int | None = None,
        check: Callable[[VerifiedLog], None] | None = None,
    ) -> MemoryVerdict:
        """Verify ``export`` against the pinned key, witnesses and remembered head, run
        ``check`` on the result (e.g. a budget replay), then remember.

        The first verification of ``log`` pins ``public_key``; later ones refuse another key.
        Witnesses and ``min_witnesses`` given are pinned too (added to those pinned before);
        the pinned ones are required whether or not they are given again.
        """
        before = self.recall(log)
        witnesses, minimum = _merged_witnesses(before, witness_keys or {}, min_witnesses, log)
        if before is not None and before.key_id != key_id(public_key):
            raise VerificationError(
                f"this log is signed by key {key_id(public_key)}, but you pinned key "
                f"{before.key_id} when you first verified it: the key was replaced. If the "
                "authority announced a new key, confirm it with them, then run `sandbox audit "
                f"forget --log {log}` and verify again"
            )
        previous = None if before is None else before.head
        try:
            result = verify_export(
                export,
                public_key,
                previous,
                witness_keys=witnesses,
                min_witnesses=minimum,
            )
            if check is not None:
                check(result)
        except VerificationError as exc:
            if previous is None:
                raise
            raise VerificationError(
                f"{exc} (you last verified {previous.size} entries of this log)"
            ) from None
        if before is None or result.size >= before.head.size:
            self.remember(log, public_key, result.tree_head, witnesses, minimum)
        return MemoryVerdict(result, before)


def _merged_witnesses(
    before: Remembered | None,
    given: Mapping[str, Ed25519PublicKey],
    minimum: int | None,
    log: str,
) -> tuple[dict[str, Ed25519PublicKey], int]:
    """The pinned witnesses plus the ``given`` ones, and the larger of the two counts."""
    pinned = dict(before.witness_keys) if before is not None else {}
    for name, k in given.items():
        old = pinned.get(name)
        if old is not None and key_id(old) != key_id(k):
            raise VerificationError(
                f"witness {name!r} has key {key_id(k)} here, but you pinned key {key_id(old)} "
                "for it: confirm the new key with the witness, then run `sandbox audit forget "
                f"--log {log}` and verify again"
            )
        pinned[name] = k
    pinned_min = before.min_witnesses if before is not None else 0
    wanted = max(pinned_min, minimum or 0)
    if minimum is None and given and pinned_min == 0:
        wanted = len(pinned)  # witnesses named without a count: require all of them
    if wanted > len(pinned):
        raise VerificationError(
            f"{wanted} witness cosignatures are required but only {len(pinned)} witness keys "
            "are known: give each with --witness NAME=PEMFILE"
        )
    return pinned, wanted
