"""``FirmService.MockData``: synthetic rows shaped like a dataset, from its public metadata
only (:func:`sandbox.mock.mock_frame`: bounds, categories, types; never a real row).

The count is capped at :data:`MAX_MOCK_VALUES` per column. The seed picks the synthetic values
(a function of public metadata), so it fixes nothing privacy-relevant.
"""

from __future__ import annotations

from sandbox.catalog import Manifest
from sandbox.node.convert import value_message
from sandbox.protocol.v1 import sandbox_pb2 as pb

#: The most synthetic values per column one call returns.
MAX_MOCK_VALUES = 1000
#: How many values per column when the request asks for none.
DEFAULT_MOCK_VALUES = 100
#: What every answer says about itself.
MOCK_NOTE = (
    "synthetic data drawn from the dataset's public metadata only (types, bounds, categories); "
    "no real record is in it and no budget was spent"
)


def mock_data(manifest: Manifest, count: int, seed: int) -> pb.MockDataResponse:
    """Up to :data:`MAX_MOCK_VALUES` synthetic values per column of ``manifest``."""
    from sandbox.mock import mock_frame  # polars and numpy on first use

    rows = min(count or DEFAULT_MOCK_VALUES, MAX_MOCK_VALUES)
    frame = mock_frame(manifest, rows=rows, seed=int(seed))
    columns = []
    for spec in manifest.columns:
        is_date = spec.type == "date"
        values = [value_message(v, date=is_date) for v in frame[spec.name].to_list()]
        columns.append(pb.MockColumn(name=spec.name, values=values))
    return pb.MockDataResponse(dataset=manifest.name, columns=columns, note=MOCK_NOTE)
