"""What a department declares about one of its datasets for the policy engine."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.bounds import check_all_text, check_delta, check_epsilon
from policies.parsing import load_document, parse_model


class DataLevel(StrEnum):
    """Data classification under the Data Security Law (一般 / 重要 / 核心)."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"


class DatasetPolicy(BaseModel):
    """A dataset's classification, its never-usable identity columns and its budget cap.

    ``epsilon_cap`` and ``delta_cap`` bound the total privacy loss of the dataset across all
    firms and grants, set by the department that holds it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any) -> Any:
        return check_all_text(data, "dataset policy")

    dataset_id: str = Field(min_length=1)
    department: str = Field(min_length=1)
    level: DataLevel = DataLevel.GENERAL
    identity_columns: frozenset[str] = Field(
        default=frozenset(), description="identity-card numbers and similar: never usable"
    )
    epsilon_cap: float
    delta_cap: float
    version: int = 1

    @field_validator("epsilon_cap")
    @classmethod
    def _epsilon_cap(cls, value: float) -> float:
        return check_epsilon(value, "epsilon_cap")

    @field_validator("delta_cap")
    @classmethod
    def _delta_cap(cls, value: float) -> float:
        return check_delta(value, "delta_cap")

    @classmethod
    def parse(cls, data: Any) -> DatasetPolicy:
        """A policy from a mapping or JSON text; ``InvalidRequestError`` names the first problem."""
        return parse_model(cls, data, "dataset policy")


def load_dataset_policy_file(path: Path) -> DatasetPolicy:
    """Read a dataset policy from a YAML or JSON file; ``InvalidRequestError`` on any problem."""
    return DatasetPolicy.parse(load_document(Path(path), "dataset policy"))
