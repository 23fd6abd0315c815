"""The dataset catalog: manifests a department declares, validated, and the data they describe.

* :mod:`~sandbox.catalog.manifest` — the manifest model (columns, privacy unit, row bound).
* :mod:`~sandbox.catalog.load` — reading manifests and catalog directories from disk.
* :mod:`~sandbox.catalog.conform` — checking rows against a manifest, refusing or clamping.
* :mod:`~sandbox.catalog.report` — what that check found, by column and count.

>>> catalog = load_catalog("examples/pums")  # the shipped example, from the repository root
>>> catalog["pums"].column("age").bounds
(0, 100)
"""

from sandbox.catalog.conform import check_dataset, conform_frame, load_checked, load_frame
from sandbox.catalog.load import (
    MAX_MANIFEST_BYTES,
    SEPARATOR_ENV,
    Catalog,
    check_separator,
    load_catalog,
    load_manifest,
)
from sandbox.catalog.manifest import (
    DEFAULT_ROW_BOUND,
    MAX_ENUMERABLE_INT_KEYS,
    MAX_ROW_BOUND,
    Classification,
    ColumnSpec,
    ColumnType,
    Manifest,
    PrivacyUnit,
    coerce_value,
    polars_type,
)
from sandbox.catalog.report import DataProblem, DatasetReport, ProblemKind

__all__ = [
    "DEFAULT_ROW_BOUND",
    "MAX_ENUMERABLE_INT_KEYS",
    "MAX_MANIFEST_BYTES",
    "MAX_ROW_BOUND",
    "SEPARATOR_ENV",
    "Catalog",
    "Classification",
    "ColumnSpec",
    "ColumnType",
    "DataProblem",
    "DatasetReport",
    "Manifest",
    "PrivacyUnit",
    "ProblemKind",
    "check_dataset",
    "check_separator",
    "coerce_value",
    "conform_frame",
    "load_catalog",
    "load_checked",
    "load_frame",
    "load_manifest",
    "polars_type",
]
