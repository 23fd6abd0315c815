"""A job's label settings against the label's categories in the manifest (public metadata):
refused before any budget is reserved, with a message that says what to write."""

from __future__ import annotations

import pytest

from sandbox.catalog.manifest import Manifest
from sandbox.errors import TrainingError
from sandbox.training import check_trainable


def _manifest(categories: list[object] | None) -> Manifest:
    label: dict[str, object] = {"name": "y", "type": "string" if categories else "int"}
    if categories is not None:
        label["categories"] = categories
    return Manifest.model_validate(
        {
            "name": "d",
            "file": "d.csv",
            "classification": "内部",
            "columns": [{"name": "x", "type": "float", "bounds": [0, 1]}, label],
        }
    )


def test_classes_must_cover_every_category() -> None:
    m = _manifest(["low", "mid", "high"])
    check_trainable(m, ("x",), "y", classes=("low", "mid", "high"))
    with pytest.raises(TrainingError, match=r"leave out \['mid'\]"):
        check_trainable(m, ("x",), "y", classes=("low", "high", "other"))


def test_positive_must_be_a_category() -> None:
    m = _manifest(["<=50K", ">50K"])
    check_trainable(m, ("x",), "y", positive=">50K")
    with pytest.raises(TrainingError, match="is not a category"):
        check_trainable(m, ("x",), "y", positive=">50k")


def test_a_string_label_needs_positive_or_classes() -> None:
    with pytest.raises(TrainingError, match="positive: ...") as err:
        check_trainable(_manifest(["<=50K", ">50K"]), ("x",), "y")
    assert "classes" in str(err.value)


def test_a_zero_one_label_or_one_without_categories_needs_nothing() -> None:
    check_trainable(_manifest([0, 1]), ("x",), "y")
    check_trainable(_manifest(None), ("x",), "y")
