"""The hub's public calibration is remembered per (manifest, plan, epsilon, delta, group size)."""

from __future__ import annotations

from pathlib import Path

from sandbox.catalog import load_catalog
from sandbox.hub.calibration import PublicCalibrator
from sandbox.query import parse_query

PUMS = Path(__file__).resolve().parents[2] / "examples" / "pums"


def test_a_repeated_query_is_calibrated_once_and_parameters_are_part_of_the_key() -> None:
    catalog = load_catalog(PUMS)
    manifest = catalog["pums"]
    plan = parse_query("SELECT COUNT(*) AS n, AVG(income) AS m FROM pums", catalog)
    calibrator = PublicCalibrator()
    first = calibrator.loss(manifest, plan, 0.5, 1e-7, 10)
    again = calibrator.loss(manifest, plan, 0.5, 1e-7, 10)
    assert again == first and calibrator.hits == 1
    other = calibrator.loss(manifest, plan, 0.25, 1e-7, 10)
    assert calibrator.hits == 1 and other.epsilon < first.epsilon
    fresh = PublicCalibrator().loss(manifest, plan, 0.5, 1e-7, 10)
    assert fresh == first  # the cached value is exactly what calibrating again gives
