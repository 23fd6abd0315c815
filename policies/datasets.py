"""What a department declares about one of its datasets for the policy engine."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


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

    dataset_id: str = Field(min_length=1)
    department: str = Field(min_length=1)
    level: DataLevel = DataLevel.GENERAL
    identity_columns: frozenset[str] = Field(
        default=frozenset(), description="identity-card numbers and similar: never usable"
    )
    epsilon_cap: float = Field(gt=0)
    delta_cap: float = Field(ge=0, lt=1)
    version: int = 1
