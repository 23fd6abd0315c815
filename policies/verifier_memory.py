"""A regulator's own memory of a log: the pinned authority key and the last verified head.

Verifying one export against a public key shipped beside it proves little: whoever can replace
the export can replace the key, cut entries off the end, or show a different (forked) log.
The verifier therefore keeps, per log it audits, a small file of its own (never the
authority's) holding

* the authority's public key the first verification pinned (trust on first use), and
* the last tree head it verified.

Every later verification of that log requires the same key and a log that extends the
remembered head (same entries under the same root for its size); a different key, a shorter
log, or a log whose first entries hash to another root fails with a message saying which.
The memory moves forward only after a verification succeeded.

Files live in ``$SANDBOX_VERIFIER_HOME`` or ``~/.config/sandbox/verifier/``, one JSON file per
log name (default ``default``), mode 0600.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
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
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, TreeHeadError) as exc:
            raise VerificationError(
                f"the verifier's memory {path} is unreadable ({exc}); restore it from your "
                "backup (or `sandbox audit forget` to start over, losing what it pinned)"
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise VerificationError(f"the verifier's memory {path} holds a non-Ed25519 key")
        try:
            verify_tree_head(head, key)
        except TreeHeadError:
            raise VerificationError(
                f"the verifier's memory {path} was edited: its tree head does not verify"
            ) from None
        return Remembered(key, head)

    def remember(self, log: str, public_key: Ed25519PublicKey, head: SignedTreeHead) -> None:
        path = self.path(log)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = {"public_key_pem": public_key_pem(public_key).decode(), "head": head.to_json()}
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
        min_witnesses: int = 0,
    ) -> MemoryVerdict:
        """Verify ``export`` against the pinned key and the remembered head, then remember.

        The first verification of ``log`` pins ``public_key``; later ones refuse another key.
        """
        before = self.recall(log)
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
                witness_keys=witness_keys,
                min_witnesses=min_witnesses,
            )
        except VerificationError as exc:
            if previous is None:
                raise
            raise VerificationError(
                f"{exc} (you last verified {previous.size} entries of this log)"
            ) from None
        if before is None or result.size >= before.head.size:
            self.remember(log, public_key, result.tree_head)
        return MemoryVerdict(result, before)
