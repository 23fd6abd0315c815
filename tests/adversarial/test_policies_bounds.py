"""Epsilon and delta bounds on the policy side: NaN, infinity and below-floor values are refused
by every model and by the ledger, with the policies' own errors."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policies"))

from policy_helpers import credit_grant, query, tax_dataset  # noqa: E402

from policies import (  # noqa: E402
    BudgetLedger,
    ColumnRule,
    DatasetPolicy,
    DatasetTerms,
    Grant,
    InvalidRequestError,
    Loss,
)
from policies.ledger import dataset_account, grant_account  # noqa: E402

INF = math.inf


@pytest.mark.parametrize("epsilon", [INF, 1e-9])
def test_grant_budget_must_be_finite_and_above_the_floor(epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        DatasetTerms(epsilon=epsilon, delta=1e-7, columns={"income": ColumnRule.AGGREGATE_ONLY})


def test_grant_epsilon_per_use_must_be_above_the_floor() -> None:
    terms = {"tax": DatasetTerms(epsilon=3.0, delta=1e-7, columns={})}
    with pytest.raises(ValueError, match="epsilon_per_use must be at least"):
        credit_grant(epsilon_per_use=1e-9, datasets=terms)


def test_dataset_cap_must_be_finite() -> None:
    with pytest.raises(ValueError, match="epsilon_cap"):
        tax_dataset(epsilon_cap=INF)


def test_request_epsilon_below_the_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1e-06"):
        query(epsilon=1e-9)


def test_ledger_never_charges_zero_for_a_tiny_epsilon(tmp_path: Path) -> None:
    ledger = BudgetLedger(tmp_path / "ledger.db")
    ledger.open_account(grant_account("g", "tax"), 1.0, 1e-6)
    ledger.open_account(dataset_account("tax"), 1.0, 1e-6)
    with pytest.raises(InvalidRequestError, match="at least 1e-06"):
        ledger.reserve("g", "tax", "acme", Loss(1e-13, 0.0))
    assert ledger.reservations() == []


@pytest.mark.parametrize("cap", [INF, math.nan])
def test_ledger_refuses_an_infinite_or_nan_cap_with_our_error(tmp_path: Path, cap: float) -> None:
    ledger = BudgetLedger(tmp_path / "ledger.db")
    with pytest.raises(InvalidRequestError, match="finite"):
        ledger.open_account(dataset_account("tax"), cap, 1e-6)


def test_grant_file_errors_are_one_readable_line(tmp_path: Path) -> None:
    from policies import load_grant_file

    path = tmp_path / "grant.yaml"
    path.write_text(
        "grant_id: g-1\nfirm: acme\npurpose: p\nlegal_basis: b\nactions: [query]\n"
        "epsilon_per_use: .inf\nmin_group_size: 10\napproved_by: x\n"
        "valid_from: 2026-01-01T00:00:00+00:00\nvalid_until: 2027-01-01T00:00:00+00:00\n"
        "datasets: {tax: {epsilon: 1, delta: 0, columns: {}}}\n"
    )
    with pytest.raises(InvalidRequestError) as info:
        load_grant_file(path)
    assert "\n" not in str(info.value) and "finite" in str(info.value)
    path.write_text("grant_id: [unclosed\n")
    with pytest.raises(InvalidRequestError, match="not valid YAML"):
        load_grant_file(path)


def test_grant_file_bombs_are_refused_quickly(tmp_path: Path) -> None:
    from policies import load_grant_file

    levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    bombs = {
        "aliases.yaml": "\n".join(levels) + "\n",  # 9**9 values once expanded
        "recursive.yaml": "a: &x [*x]\n",
        "deep.json": "[" * 50_000 + "]" * 50_000,
        "deep.yaml": "a: " + "[" * 50_000 + "]" * 50_000 + "\n",
    }
    for name, text in bombs.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InvalidRequestError) as info:
            load_grant_file(path)
        assert "\n" not in str(info.value), name


@pytest.mark.parametrize("epsilon", [1e308, 1e8])
def test_grant_and_dataset_caps_beyond_the_integer_range_are_refused(epsilon: float) -> None:
    """A cap of 1e308 used to overflow the ledger's integer units (OverflowError)."""
    grant = credit_grant().model_dump(mode="json")
    grant["datasets"] = {"tax": {"epsilon": epsilon, "delta": 1e-7, "columns": {}}}
    with pytest.raises(InvalidRequestError, match="at most"):
        Grant.parse(grant)
    with pytest.raises(InvalidRequestError, match="at most"):
        DatasetPolicy.parse({**tax_dataset().model_dump(mode="json"), "epsilon_cap": epsilon})
