"""Reading manifests and catalogs from disk: every error names the file and the field.

A catalog is a directory; each ``*.yaml`` file at its top level is one dataset's manifest
(format: ``docs/catalog.md``). A separator given to :func:`load_catalog` (the CLI's
``--separator``), else the environment variable :data:`SEPARATOR_ENV`, overrides the manifest's
``separator`` and detection for every CSV file of the catalog.

>>> catalog = load_catalog("examples/pums")  # the shipped example, from the repository root
>>> [m.name for m in catalog], catalog["pums"].column("age").bounds
(['pums'], (0, 100))
>>> catalog["census"]
Traceback (most recent call last):
sandbox.errors.CatalogError: unknown dataset 'census'; the catalog has: pums
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sandbox.catalog.manifest import Manifest
from sandbox.errors import CatalogError, ManifestError

#: The largest manifest file read (a manifest is a page of metadata, not data).
MAX_MANIFEST_BYTES = 1_000_000
#: The environment variable that overrides the CSV separator of every catalog loaded:
#: ``sandbox node serve --separator`` sets it, so the node's Flower processes read the same.
SEPARATOR_ENV = "SANDBOX_CSV_SEPARATOR"
#: Names a shell passes easily for separators that are hard to type.
_SEPARATOR_NAMES = {"\\t": "\t", "tab": "\t", "TAB": "\t"}


def check_separator(value: str) -> str:
    """The CSV separator ``value`` (one character; ``\\t`` or ``tab`` for a tab), or a
    :class:`CatalogError` saying why it cannot be one.

    >>> check_separator(";"), check_separator("tab")
    (';', '\\t')
    """
    sep = _SEPARATOR_NAMES.get(value, value)
    if len(sep) != 1 or sep in ('"', "\r", "\n"):
        raise CatalogError(
            f"--separator takes one character such as ';', '|' or tab (not a quote or a line "
            f"break), not {value!r}"
        )
    return sep


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate one manifest file. Errors name the file and the offending field."""
    try:
        path = Path(path)
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"{path}: a manifest is at most {MAX_MANIFEST_BYTES} bytes; this one has {size}"
            )
        text = path.read_text(encoding="utf-8")
    except ManifestError:
        raise
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: a manifest must be UTF-8 text") from None
    except (TypeError, ValueError):
        raise ManifestError(f"{path!r} is not a valid manifest path") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ManifestError(f"{path}: not valid YAML: {reason}") from None
    except RecursionError:
        raise ManifestError(f"{path}: not valid YAML: nested too deeply") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: a manifest is a mapping of fields (see docs/catalog.md)")
    try:
        manifest = Manifest.model_validate({**raw, "path": path})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _field_path(raw, err["loc"])
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ManifestError(f"{path}: invalid manifest: " + "; ".join(problems)) from None
    except (RecursionError, TypeError, ValueError, OverflowError):
        raise ManifestError(f"{path}: invalid manifest; see docs/catalog.md") from None
    try:  # everything in a manifest is shown and logged: it must be plain Unicode text
        json.dumps(manifest.public_metadata(), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):
        raise ManifestError(
            f"{path}: the manifest holds text that is not valid Unicode (a lone surrogate "
            "escape?); write it as plain UTF-8"
        ) from None
    return manifest


def _field_path(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """Render a pydantic location, naming columns by name rather than index."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            node = node[item]
            name = node.get("name") if isinstance(node, dict) else None
            parts.append(f"[{name}]" if name else f"[{item}]")
            continue
        if isinstance(node, dict):
            node = node.get(item)
        parts.append(f".{item}" if parts else str(item))
    return "".join(parts) or "manifest"


class Catalog:
    """The datasets of one catalog directory, by name."""

    def __init__(self, manifests: dict[str, Manifest], root: Path):
        self._manifests = manifests
        self.root = root

    def __getitem__(self, name: str) -> Manifest:
        try:
            return self._manifests[name]
        except KeyError:
            known = ", ".join(sorted(self._manifests)) or "none"
            raise CatalogError(f"unknown dataset {name!r}; the catalog has: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._manifests

    def __iter__(self) -> Iterator[Manifest]:
        return iter(sorted(self._manifests.values(), key=lambda m: m.name))

    def __len__(self) -> int:
        return len(self._manifests)


def load_catalog(root: str | Path, separator: str | None = None) -> Catalog:
    """Load every ``*.yaml`` manifest at the top level of ``root``; ``separator`` (else
    ``$SANDBOX_CSV_SEPARATOR``) is the separator of every CSV file (checked first)."""
    if separator is None:
        separator = os.environ.get(SEPARATOR_ENV) or None
    if separator is not None:
        separator = check_separator(separator)
    try:
        root = Path(root)
        is_dir = root.is_dir()
        paths = sorted(root.glob("*.yaml")) if is_dir else []
    except (OSError, TypeError, ValueError):
        raise CatalogError(f"catalog {root!r} is not a directory of manifests (*.yaml)") from None
    if not is_dir:
        raise CatalogError(f"catalog {root} is not a directory of manifests (*.yaml)")
    manifests: dict[str, Manifest] = {}
    for path in paths:
        manifest = load_manifest(path)
        if manifest.name in manifests:
            other = manifests[manifest.name].path
            raise ManifestError(f"{path}: name: dataset {manifest.name!r} is also in {other}")
        if separator is not None and manifest.data_path.suffix == ".csv":
            manifest = manifest.model_copy(update={"separator": separator})
        manifests[manifest.name] = manifest
    if not manifests:
        raise CatalogError(f"catalog {root} holds no manifest (*.yaml); see docs/catalog.md")
    return Catalog(manifests, root)
