"""How a dataset's rows match its manifest: problems named by column and count, never value.

>>> report = DatasetReport("pums", "refuse")
>>> report.problems.append(
...     DataProblem("age", "out_of_bounds", 3, "error", "column 'age': 3 rows outside the bounds")
... )
>>> report.ok, report.lines()
(False, ["error: pums: column 'age': 3 rows outside the bounds"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ProblemKind = Literal[
    "out_of_bounds", "unknown_category", "absent_category", "unreadable", "too_many_rows"
]
#: An error stops the dataset from being served; a warning says what was done instead.
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class DataProblem:
    """One way a dataset's rows break its manifest. Names a column and a count, never a value."""

    column: str | None
    kind: ProblemKind
    count: int
    severity: Severity
    message: str


@dataclass
class DatasetReport:
    """How a dataset's rows match its manifest, as found when the node loads it.

    ``errors`` stop the dataset from being served; ``warnings`` say what was done instead
    (values clamped, treated as missing). Messages name columns and counts, never values.
    """

    dataset: str
    out_of_bounds: str
    problems: list[DataProblem] = field(default_factory=list)

    @property
    def errors(self) -> list[DataProblem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[DataProblem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        """One line per problem, errors first."""
        ordered = self.errors + self.warnings
        return [f"{p.severity}: {self.dataset}: {p.message}" for p in ordered]
