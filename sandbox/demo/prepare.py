"""What exists before any service starts: the departments' data, each node's own catalog, the
authority's state and signing key, and each node's own spending cap."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sandbox.demo.pki import Party

#: city code -> Chinese name, in the order the demo shows them.
CITIES = {"jinan": "济南", "qingdao": "青岛", "rizhao": "日照", "dezhou": "德州"}
FIRM = Party("firm", "qilu-credit-bank")
REGULATOR = Party("regulator", "shandong-cac")
HUB = Party("hub", "shandong-data-authority")
#: What each node will ever spend on its dataset, over all grants (its own cap).
NODE_CAP_EPSILON = 30.0
NODE_CAP_DELTA = 1e-3
#: The dataset-wide cap the authority registers.
DATASET_CAP_EPSILON = 20.0
DATASET_CAP_DELTA = 1e-3


@dataclass(frozen=True)
class City:
    code: str
    name: str  # 济南, ...

    @property
    def dataset(self) -> str:
        return f"{self.code}_enterprise"

    @property
    def department(self) -> Party:
        return Party("department", f"{self.name}市大数据局")  # the manifest's department

    @property
    def node(self) -> Party:
        return Party("node", f"{self.code}-node")


def cities() -> list[City]:
    return [City(code, name) for code, name in CITIES.items()]


def write_data(state: Path, rows: int) -> tuple[Path, dict[str, Path]]:
    """Generate every city's registers, then give each node a catalog holding only its own
    enterprise register, and the hub a catalog of manifests only (public metadata, no data).
    Returns the hub's catalog and each dataset's node catalog."""
    from sandbox.generate import generate

    generated = state / "data" / "generated"
    generate(generated, rows=rows, seed=2026)
    hub_catalog = state / "hub" / "catalog"
    hub_catalog.mkdir(parents=True)
    node_catalogs: dict[str, Path] = {}
    for city in cities():
        directory = state / "nodes" / city.code / "catalog"
        directory.mkdir(parents=True)
        for suffix in (".yaml", ".parquet"):
            shutil.move(generated / f"{city.dataset}{suffix}", directory)
        shutil.copy(directory / f"{city.dataset}.yaml", hub_catalog)
        node_catalogs[city.dataset] = directory
    shutil.rmtree(generated)  # the other registers are not part of the story
    return hub_catalog, node_catalogs


def init_authority(hub_state: Path, hub_catalog: Path, public_key_copy: Path) -> Path:
    """Create the authority's state and signing key and register the four datasets with their
    dataset-wide caps; copy the public key to ``public_key_copy``. Returns the key's path."""
    from policies.authority import Authority
    from policies.keys import PUBLIC_KEY_FILE
    from sandbox.catalog import load_catalog
    from sandbox.service import dataset_policy

    authority = Authority(hub_state)
    for manifest in load_catalog(hub_catalog):
        authority.register_dataset(dataset_policy(manifest, DATASET_CAP_EPSILON, DATASET_CAP_DELTA))
    key = authority.keys_dir / PUBLIC_KEY_FILE
    shutil.copy(key, public_key_copy)
    return public_key_copy
