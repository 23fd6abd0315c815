"""Binding a parsed SQL tree to a dataset's manifest: columns, aggregates, conditions, literals.

The :class:`Binder` resolves every name against the manifest (identifiers are never
queryable), checks that each aggregate has the public bounds it needs, and turns literals into
values of the column's type. It raises only :class:`~sandbox.errors.QueryError` subclasses.

>>> import sqlglot
>>> from sandbox.catalog import load_catalog
>>> binder = Binder(load_catalog("examples/pums")["pums"])
>>> binder.condition(sqlglot.parse_one("SELECT 1 WHERE age BETWEEN 18 AND 65").args["where"].this)
Between(column='age', low=18, high=65)
"""

from __future__ import annotations

import math
from typing import Any, Literal

from sqlglot import exp

from sandbox.catalog import ColumnSpec, Manifest, coerce_value
from sandbox.errors import MissingBounds, UnknownColumn, UnsupportedQuery
from sandbox.query.limits import MAX_IN_LIST, MAX_NAME_LENGTH
from sandbox.query.plan import (
    Aggregate,
    AggregateKind,
    Between,
    BoolOp,
    Compare,
    ComparisonOp,
    Condition,
    InList,
    IsNull,
    Negation,
)

_INT64 = (-(2**63), 2**63 - 1)

_COMPARISONS: dict[type, ComparisonOp] = {
    exp.EQ: "==",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_FLIPPED: dict[ComparisonOp, ComparisonOp] = {
    "==": "==",
    "!=": "!=",
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
}


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Binder:
    """Resolves columns and literals of one query against a manifest."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    @staticmethod
    def output_name(name: str) -> str:
        """Check an alias: 1 to MAX_NAME_LENGTH printable characters."""
        if not name or len(name) > MAX_NAME_LENGTH:
            raise UnsupportedQuery(f"an output name has 1 to {MAX_NAME_LENGTH} characters")
        if not name.isprintable():
            raise UnsupportedQuery("an output name may not hold control characters")
        return name

    def column(self, node: exp.Expression) -> ColumnSpec:
        """The queryable column ``node`` names."""
        if not isinstance(node, exp.Column):
            raise UnsupportedQuery(
                f"expected a column name, got {node.sql()!r}; name a column of the dataset"
            )
        if node.table and node.table != self.manifest.name:
            raise UnknownColumn(
                f"{node.sql()!r} does not refer to dataset {self.manifest.name!r}; qualify "
                "columns with the dataset named in FROM, or not at all"
            )
        try:
            spec = self.manifest.column(node.name)
        except KeyError:
            declared = [c.name for c in self.manifest.columns if c.role != "identifier"]
            raise UnknownColumn(
                f"unknown column {node.name!r} in dataset {self.manifest.name!r}; "
                f"declared columns: {declared}"
            ) from None
        if spec.role == "identifier":
            raise UnknownColumn(
                f"column {spec.name!r} is an identifier of {self.manifest.name!r} and can never "
                "be used in a query; use its other columns (see `sandbox datasets`)"
            )
        return spec

    def key_column(self, node: exp.Expression) -> str:
        """A column that may be a GROUP BY key (not a float)."""
        spec = self.column(node)
        if spec.type == "float":
            raise UnsupportedQuery(
                f"cannot GROUP BY the float column {spec.name!r}; group by an int, string, "
                "bool or date column"
            )
        return spec.name

    def aggregate(self, node: exp.Expression, alias: str | None, position: int) -> Aggregate:
        """The aggregate of one SELECT item."""
        if isinstance(node, exp.Count):
            arg = node.this
            if isinstance(arg, exp.Distinct):
                raise UnsupportedQuery(
                    "COUNT(DISTINCT ...) is not supported; use COUNT(*) or COUNT(column)"
                )
            if isinstance(arg, exp.Star) or arg is None:
                return Aggregate("count", None, alias or "count")
            return Aggregate("count", self.column(arg).name, alias or f"count_{arg.name}")
        if isinstance(node, exp.Sum | exp.Avg):
            kind: AggregateKind = "sum" if isinstance(node, exp.Sum) else "avg"
            spec = self._bounded(node.this, kind.upper())
            return Aggregate(kind, spec.name, alias or f"{kind}_{spec.name}")
        if isinstance(node, exp.Median):
            spec = self._bounded(node.this, "MEDIAN")
            return Aggregate("quantile", spec.name, alias or f"median_{spec.name}", 0.5)
        if isinstance(node, exp.Quantile):
            spec = self._bounded(node.this, "QUANTILE")
            q = self._probability(node.args.get("quantile"))
            return Aggregate("quantile", spec.name, alias or f"q{q:g}_{spec.name}", q)
        if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.PercentileCont):
            q = self._probability(node.this.this)
            order = node.expression.expressions if node.expression is not None else []
            if len(order) != 1:
                raise UnsupportedQuery("PERCENTILE_CONT needs WITHIN GROUP (ORDER BY one column)")
            spec = self._bounded(order[0].this, "PERCENTILE_CONT")
            return Aggregate("quantile", spec.name, alias or f"q{q:g}_{spec.name}", q)
        if isinstance(node, exp.AggFunc):
            raise UnsupportedQuery(
                f"aggregate {node.sql_name()} is not supported; use COUNT, SUM, AVG, MEDIAN, "
                "QUANTILE or PERCENTILE_CONT"
            )
        raise UnsupportedQuery(
            f"select item {position + 1} ({node.sql()!r}) is neither a group-by key nor a "
            "supported aggregate; select group-by keys and COUNT, SUM, AVG, MEDIAN or QUANTILE"
        )

    def _bounded(self, node: exp.Expression, what: str) -> ColumnSpec:
        spec = self.column(node)
        if not spec.is_numeric:
            raise UnsupportedQuery(
                f"{what} needs a numeric column; {spec.name!r} is {spec.type}; use an int or "
                "float column, or COUNT"
            )
        if spec.bounds is None:
            raise MissingBounds(
                f"{what}({spec.name}) needs public bounds; the manifest of "
                f"{self.manifest.name!r} declares none for {spec.name!r}; use COUNT, or ask the "
                "department to declare bounds"
            )
        return spec

    @staticmethod
    def _probability(node: exp.Expression | None) -> float:
        if not isinstance(node, exp.Literal) or node.is_string:
            raise UnsupportedQuery("the quantile must be a number literal between 0 and 1")
        q = float(node.this)
        if not 0.0 < q < 1.0:
            raise UnsupportedQuery(f"the quantile must be strictly between 0 and 1, got {q}")
        return q

    def condition(self, node: exp.Expression) -> Condition:
        """The condition of a WHERE clause."""
        if isinstance(node, exp.Paren):
            return self.condition(node.this)
        if isinstance(node, exp.And | exp.Or):
            op: Literal["and", "or"] = "and" if isinstance(node, exp.And) else "or"
            return BoolOp(op, tuple(self.condition(part) for part in _chain(node)))
        if isinstance(node, exp.Not):
            return Negation(self.condition(node.this))
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise UnsupportedQuery("IS is only supported as IS [NOT] NULL")
            return IsNull(self.column(node.this).name)
        if isinstance(node, exp.In):
            spec = self.column(node.this)
            if node.args.get("query") or not node.expressions:
                raise UnsupportedQuery("IN takes a non-empty list of literals")
            if len(node.expressions) > MAX_IN_LIST:
                raise UnsupportedQuery(
                    f"IN lists {len(node.expressions)} literals; at most {MAX_IN_LIST} are "
                    "supported (use BETWEEN for ranges)"
                )
            return InList(spec.name, tuple(self.literal(v, spec) for v in node.expressions))
        if isinstance(node, exp.Between):
            spec = self.column(node.this)
            low = self.literal(node.args["low"], spec)
            high = self.literal(node.args["high"], spec)
            return Between(spec.name, low, high)
        comparison = _COMPARISONS.get(type(node))
        if comparison is not None:
            left, right = node.this, node.expression
            if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
                left, right = right, left
                comparison = _FLIPPED[comparison]
            spec = self.column(left)
            return Compare(spec.name, comparison, self.literal(right, spec))
        raise UnsupportedQuery(
            f"condition {one_line(node.sql())!r} is not supported in WHERE; compare columns "
            "with literals using = != < <= > >= IN BETWEEN IS NULL, joined by AND OR NOT"
        )

    def literal(self, node: exp.Expression, spec: ColumnSpec) -> Any:
        """A literal compared with ``spec``'s column, as a value of its type."""
        if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
            node = node.this
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
            inner = self.literal(node.this, spec)
            if isinstance(inner, bool) or not isinstance(inner, int | float):
                raise UnsupportedQuery(f"cannot negate {node.this.sql()!r}")
            return -inner
        if isinstance(node, exp.Boolean):
            raw: Any = node.this
        elif isinstance(node, exp.Literal):
            raw = node.this if node.is_string else float(node.this)
            if isinstance(raw, float) and not math.isfinite(raw):
                raise UnsupportedQuery("literals must be finite numbers")
            if not node.is_string and raw == int(raw) and "." not in node.this:
                raw = int(raw)
        elif isinstance(node, exp.Null):
            raise UnsupportedQuery("compare with NULL using IS NULL / IS NOT NULL")
        else:
            raise UnsupportedQuery(
                f"{node.sql()!r} is not a literal; compare columns with literals"
            )
        if spec.type in ("int", "float") and isinstance(raw, str):
            raise UnsupportedQuery(
                f"column {spec.name!r} is {spec.type}; {raw!r} is a string; compare with a number"
            )
        if isinstance(raw, float) and not math.isfinite(raw):
            raise UnsupportedQuery("literals must be finite numbers")
        if spec.type == "int" and isinstance(raw, float):
            return raw  # comparing an int column with 2.5 is meaningful
        if isinstance(raw, int) and not isinstance(raw, bool) and not _INT64[0] <= raw <= _INT64[1]:
            raise UnsupportedQuery(f"integer literals must fit in 64 bits (column {spec.name!r})")
        try:
            return coerce_value(spec.type, raw, f"literal for {spec.name}")
        except ValueError as exc:
            raise UnsupportedQuery(str(exc)) from None


def _chain(node: exp.Expression) -> list[exp.Expression]:
    """The operands of a chain of the same AND (or OR), through parentheses, without recursion."""
    kind = type(node)
    out: list[exp.Expression] = []
    stack = [node]
    while stack:
        current = stack.pop()
        inner = current
        while isinstance(inner, exp.Paren):
            inner = inner.this
        if type(inner) is kind:
            stack.extend((inner.expression, inner.this))  # popped left first: keeps order
        else:
            out.append(current)
    return out
