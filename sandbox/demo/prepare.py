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
#: The dataset-wide cap each department registers with the hub.
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


def write_data(state: Path, rows: int) -> None:
    """Generate every city's registers, then give each node a catalog holding only its own
    enterprise register (``nodes/<city>/catalog``); the other registers are not used."""
    from sandbox.generate import generate

    generated = state / "data" / "generated"
    generate(generated, rows=rows, seed=2026)
    for city in cities():
        directory = state / "nodes" / city.code / "catalog"
        directory.mkdir(parents=True)
        for suffix in (".yaml", ".parquet"):
            shutil.move(generated / f"{city.dataset}{suffix}", directory)
    shutil.rmtree(state / "data")


def init_authority(hub_state: Path, public_key_copy: Path) -> Path:
    """Create the authority's state and signing key (the hub serves them) and copy the public
    key, which the nodes and the regulator trust, to ``public_key_copy``."""
    from policies.authority import Authority
    from policies.keys import PUBLIC_KEY_FILE

    authority = Authority(hub_state)
    shutil.copy(authority.keys_dir / PUBLIC_KEY_FILE, public_key_copy)
    return public_key_copy
