"""A department node's secret key: 32 bytes from ``os.urandom`` in ``secret.key`` (mode 0600).

It keys the node's HMACs (e.g. the train/test split of its rows) and never leaves the node.
Created once, atomically, by whichever process needs it first; every later read checks its
mode and length.

>>> import tempfile
>>> key = node_secret(Path(tempfile.mkdtemp()))
>>> len(key)
32
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from federation.errors import NodeStateError

SECRET_FILE = "secret.key"
SECRET_BYTES = 32


def node_secret(directory: Path) -> bytes:
    """The node's HMAC key in ``directory``: created once from ``os.urandom``, then read."""
    path = directory / SECRET_FILE
    if not path.exists():
        _create_secret(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        key = path.read_bytes()
    except OSError as exc:
        raise NodeStateError(
            f"cannot read the node secret {path} ({exc.strerror}); check its owner and mode"
        ) from None
    if mode & 0o077:
        raise NodeStateError(
            f"the node secret {path} is readable by others; run `chmod 600 {path}`"
        )
    if len(key) != SECRET_BYTES:
        raise NodeStateError(
            f"the node secret {path} is damaged (expected {SECRET_BYTES} bytes); restore it "
            "from the node's backup. A new key would move rows between train and test"
        )
    return key


def _create_secret(path: Path) -> None:
    """Write a fresh key atomically: a temporary file (0600), then a hard link that fails if
    another process created the key first (that one wins; both then read the same key)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(SECRET_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except OSError as exc:
        raise NodeStateError(
            f"cannot create the node secret {path} ({exc.strerror}); check that the node "
            "state directory is writable"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
