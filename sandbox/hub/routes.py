"""The hub's routing table and catalog, grown by ``DepartmentService.RegisterDataset``.

Each registered dataset has one row in ``<state>/routes.db`` (SQLite, mode 0600): the node
that holds it (name and ``HOST:PORT``), the registering department and the manifest YAML as
registered (public metadata only). :meth:`RouteStore.catalog` parses the stored manifests with
the catalog's own manifest code (:func:`sandbox.catalog.load.load_manifest`).

:func:`parse_manifest_yaml` validates a manifest document sent over the wire the same way a
manifest file is validated.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from policies.db import Database, private_dir, transaction
from sandbox.catalog import Manifest
from sandbox.catalog.load import MAX_MANIFEST_BYTES, load_manifest
from sandbox.errors import ManifestError
from sandbox.hub.nodes import NodeRoute

#: The routing table's file in the hub's state directory.
ROUTES_FILE = "routes.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS routes (
    dataset TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    address TEXT NOT NULL,
    department TEXT NOT NULL,
    manifest_yaml TEXT NOT NULL,
    registered_ms INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class StoredRoute:
    """One registered dataset: where it lives, who registered it, its manifest."""

    dataset: str
    node: str
    address: str
    department: str
    manifest_yaml: str
    registered_ms: int

    @property
    def route(self) -> NodeRoute:
        return NodeRoute(self.node, self.address)


def parse_manifest_yaml(text: str) -> Manifest:
    """Validate a manifest document exactly as a manifest file is validated
    (``ManifestError`` naming the field, the file path replaced by ``manifest``)."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"a manifest is at most {MAX_MANIFEST_BYTES} bytes; send the YAML")
    directory = Path(tempfile.mkdtemp(prefix="sandbox-manifest-"))
    path = directory / "manifest.yaml"
    try:
        path.write_bytes(data)
        return load_manifest(path).model_copy(update={"path": None})
    except ManifestError as exc:
        raise ManifestError(str(exc).replace(str(path), "manifest")) from None
    finally:
        path.unlink(missing_ok=True)
        os.rmdir(directory)


class RouteStore:
    """The registered datasets of one hub (``<state_dir>/routes.db``)."""

    def __init__(self, state_dir: Path | str) -> None:
        self.path = private_dir(Path(state_dir)) / ROUTES_FILE
        self.db = Database(self.path)
        self.db.conn().execute(_SCHEMA)

    def put(
        self, manifest_yaml: str, dataset: str, route: NodeRoute, department: str
    ) -> StoredRoute:
        """Store (or replace) the dataset's route and manifest."""
        stored = StoredRoute(
            dataset,
            route.name,
            route.address,
            department,
            manifest_yaml,
            int(time.time() * 1000),
        )
        with transaction(self.db.conn()) as conn:
            conn.execute(
                "INSERT INTO routes VALUES (?,?,?,?,?,?) ON CONFLICT (dataset) DO UPDATE SET "
                "node = excluded.node, address = excluded.address, department = "
                "excluded.department, manifest_yaml = excluded.manifest_yaml, "
                "registered_ms = excluded.registered_ms",
                (
                    stored.dataset,
                    stored.node,
                    stored.address,
                    stored.department,
                    stored.manifest_yaml,
                    stored.registered_ms,
                ),
            )
        self.db.wrote()
        return stored

    def get(self, dataset: str) -> StoredRoute | None:
        row = (
            self.db.conn().execute("SELECT * FROM routes WHERE dataset = ?", (dataset,)).fetchone()
        )
        return None if row is None else StoredRoute(*row)

    def all(self) -> list[StoredRoute]:
        rows = self.db.conn().execute("SELECT * FROM routes ORDER BY dataset").fetchall()
        return [StoredRoute(*row) for row in rows]

    def manifests(self) -> dict[str, Manifest]:
        """Every stored manifest, parsed again (each was valid when registered)."""
        return {r.dataset: parse_manifest_yaml(r.manifest_yaml) for r in self.all()}
