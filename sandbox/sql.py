"""The SQL a firm may send, parsed with sqlglot into a small validated plan.

Supported, in the spirit of BigQuery's ``SELECT WITH DIFFERENTIAL_PRIVACY``::

    SELECT [key, ...] agg [AS name], ...
    FROM dataset
    [WHERE condition]
    [GROUP BY key, ...]
    [ORDER BY output [ASC|DESC], ...] [LIMIT n]

Aggregates: ``COUNT(*)``, ``COUNT(col)``, ``SUM(col)``, ``AVG(col)``, ``MEDIAN(col)``,
``QUANTILE(col, q)`` and ``PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col)``.
Conditions: ``= != <> < <= > >=`` against a literal, ``IN (...)``, ``BETWEEN``, ``IS [NOT] NULL``,
``AND``, ``OR``, ``NOT``. ORDER BY and LIMIT act on the released (already private) rows.

Limits, checked before anything else (see ``docs/query.md``): :data:`MAX_SQL_LENGTH`
characters, :data:`MAX_IN_LIST` literals per ``IN``, :data:`MAX_EXPRESSION_DEPTH` levels of
nesting, :data:`MAX_PREDICATES` comparisons, :data:`MAX_SELECT_ITEMS` outputs,
:data:`MAX_GROUP_KEYS` group-by keys, ``LIMIT`` at most :data:`MAX_LIMIT`. Every failure,
whatever the parser raised, is an :class:`~sandbox.errors.UnsupportedQuery` with a one-line
reason.

>>> plan = parse_query("SELECT sex, COUNT(*) FROM pums GROUP BY sex", catalog)  # doctest: +SKIP
>>> plan.group_by                                                             # doctest: +SKIP
('sex',)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot import exp

from sandbox.catalog import Catalog, ColumnSpec, Manifest, _coerce
from sandbox.errors import MissingBounds, UnknownColumn, UnsupportedQuery

#: Longest SQL text accepted, in characters (an IN list of 1,000 codes fits easily).
MAX_SQL_LENGTH = 100_000
#: Most literals in one ``IN (...)`` list.
MAX_IN_LIST = 1_000
#: Deepest nesting of expressions. Parentheses and a chain of the same operator
#: (``a AND b AND c``) count once; ``NOT``, a switch between AND and OR, and each function or
#: comparison add a level.
MAX_EXPRESSION_DEPTH = 32
#: Most comparisons in WHERE (each literal of an IN list and each side of a BETWEEN counts).
MAX_PREDICATES = 1_000
#: Most items in the SELECT list (group-by keys and aggregates).
MAX_SELECT_ITEMS = 32
#: Most GROUP BY keys.
MAX_GROUP_KEYS = 4
#: Largest LIMIT.
MAX_LIMIT = 1_000_000_000
#: Longest output name (alias), in characters.
MAX_NAME_LENGTH = 128

_INT64 = (-(2**63), 2**63 - 1)

# sqlglot logs a warning when it falls back to parsing text as a bare command; the query is
# refused with our own message instead, so keep the parser quiet (one error line, no more).
logging.getLogger("sqlglot").setLevel(logging.ERROR)

AggregateKind = Literal["count", "sum", "avg", "quantile"]
ColumnUse = Literal["filter", "group_by", "aggregate"]


@dataclass(frozen=True)
class Aggregate:
    """One aggregate of the SELECT list. ``column`` is None for COUNT(*)."""

    kind: AggregateKind
    column: str | None
    alias: str
    quantile: float | None = None


@dataclass(frozen=True)
class Compare:
    column: str
    op: Literal["==", "!=", "<", "<=", ">", ">="]
    value: Any


@dataclass(frozen=True)
class InList:
    column: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Between:
    column: str
    low: Any
    high: Any


@dataclass(frozen=True)
class IsNull:
    column: str


@dataclass(frozen=True)
class BoolOp:
    op: Literal["and", "or"]
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Negation:
    part: Condition


Condition = Compare | InList | Between | IsNull | BoolOp | Negation


@dataclass(frozen=True)
class QueryPlan:
    """A validated query: what to filter, group and aggregate on one dataset."""

    sql: str
    dataset: str
    outputs: tuple[str | Aggregate, ...]  # group-by key names and aggregates in SELECT order
    group_by: tuple[str, ...]
    where: Condition | None = None
    order_by: tuple[tuple[str, bool], ...] = ()  # (output name, descending)
    limit: int | None = None
    aggregates: tuple[Aggregate, ...] = field(init=False)

    def __post_init__(self) -> None:
        aggs = tuple(o for o in self.outputs if isinstance(o, Aggregate))
        object.__setattr__(self, "aggregates", aggs)

    def column_uses(self) -> dict[str, set[ColumnUse]]:
        """Every column the query touches and how: what a policy engine checks."""
        uses: dict[str, set[ColumnUse]] = {}
        for name in _condition_columns(self.where):
            uses.setdefault(name, set()).add("filter")
        for name in self.group_by:
            uses.setdefault(name, set()).add("group_by")
        for agg in self.aggregates:
            if agg.column is not None:
                uses.setdefault(agg.column, set()).add("aggregate")
        return uses


def _condition_columns(cond: Condition | None) -> list[str]:
    if cond is None:
        return []
    if isinstance(cond, BoolOp):
        return [c for part in cond.parts for c in _condition_columns(part)]
    if isinstance(cond, Negation):
        return _condition_columns(cond.part)
    return [cond.column]


def parse_query(sql: str, catalog: Catalog) -> QueryPlan:
    """Parse and validate ``sql`` against the catalog. Raises a QueryError naming the problem.

    Nothing the text holds can make this raise anything but a
    :class:`~sandbox.errors.SandboxError`; the limits are checked before any recursion over
    the parsed tree.
    """
    _check_text(sql)
    statements = _parse(sql)
    if len(statements) != 1:
        raise UnsupportedQuery("send exactly one SELECT statement")
    _check_depth(statements[0])
    try:
        return _plan(sql, statements[0], catalog)
    except RecursionError:  # pragma: no cover - the depth limit is far below Python's
        raise UnsupportedQuery(
            f"the query is nested too deeply (at most {MAX_EXPRESSION_DEPTH} levels)"
        ) from None


def _check_text(sql: Any) -> None:
    if not isinstance(sql, str):
        raise UnsupportedQuery(f"the query must be SQL text, not {type(sql).__name__}")
    if not sql.strip():
        raise UnsupportedQuery("the query is empty; write SELECT ... FROM dataset")
    if len(sql) > MAX_SQL_LENGTH:
        raise UnsupportedQuery(
            f"the query is {len(sql)} characters long; at most {MAX_SQL_LENGTH} are accepted"
        )
    if "\x00" in sql:
        raise UnsupportedQuery("the query contains a NUL character; remove it")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsupportedQuery(
            f"the query is not valid Unicode text (a lone surrogate at character {exc.start}); "
            "send plain UTF-8"
        ) from None


def _parse(sql: str) -> list[exp.Expression]:
    try:
        return [s for s in sqlglot.parse(sql) if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else str(exc)
        raise UnsupportedQuery(f"cannot parse the SQL: {_one_line(first)}") from None
    except sqlglot.errors.TokenError:
        raise UnsupportedQuery(
            "cannot parse the SQL: it has an unterminated string, quoted name or comment"
        ) from None
    except RecursionError:
        raise UnsupportedQuery(
            f"the query is nested too deeply (at most {MAX_EXPRESSION_DEPTH} levels)"
        ) from None
    except Exception as exc:  # the parser's own defects must not escape as ours
        raise UnsupportedQuery(f"cannot parse the SQL ({type(exc).__name__})") from None


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_depth(tree: exp.Expression) -> None:
    """Refuse trees nested beyond MAX_EXPRESSION_DEPTH, without recursion.

    A parenthesis adds no level, nor does an AND inside an AND (or an OR inside an OR): such
    chains are flattened when the query is bound, and compiled as balanced trees.
    """
    stack: list[tuple[exp.Expression, int, type | None]] = [(tree, 0, None)]
    while stack:
        node, depth, chain = stack.pop()
        for child in node.iter_expressions():
            if isinstance(child, exp.Paren):
                stack.append((child, depth, chain))
                continue
            same_chain = isinstance(child, exp.And | exp.Or) and type(child) is chain
            level = depth if same_chain else depth + 1
            if level > MAX_EXPRESSION_DEPTH:
                raise UnsupportedQuery(
                    f"the query is nested too deeply (at most {MAX_EXPRESSION_DEPTH} levels of "
                    "NOT, AND/OR alternation and function calls)"
                )
            stack.append((child, level, type(child)))


def _plan(sql: str, tree: exp.Expression, catalog: Catalog) -> QueryPlan:
    if not isinstance(tree, exp.Select):
        raise UnsupportedQuery(f"only SELECT is supported, not {tree.key.upper()}")
    _refuse_unsupported_clauses(tree)
    manifest = catalog[_table_name(tree)]
    binder = _Binder(manifest)

    if len(tree.expressions) > MAX_SELECT_ITEMS:
        raise UnsupportedQuery(
            f"the SELECT list has {len(tree.expressions)} items; at most {MAX_SELECT_ITEMS}"
        )
    group = tree.args.get("group")
    if group is not None and not group.expressions:
        raise UnsupportedQuery("GROUP BY needs at least one column")
    if group is not None and len(group.expressions) > MAX_GROUP_KEYS:
        raise UnsupportedQuery(
            f"GROUP BY has {len(group.expressions)} keys; at most {MAX_GROUP_KEYS} are supported"
        )
    group_by = tuple(binder.key_column(e) for e in (group.expressions if group else []))
    if len(set(group_by)) != len(group_by):
        raise UnsupportedQuery("GROUP BY names a column twice")
    outputs: list[str | Aggregate] = []
    for item in tree.expressions:
        alias = _output_name(item.alias) if isinstance(item, exp.Alias) else None
        node = item.this if isinstance(item, exp.Alias) else item
        if isinstance(node, exp.Column):
            name = binder.key_column(node)
            if name not in group_by:
                raise UnsupportedQuery(
                    f"column {name!r} is selected but not in GROUP BY; "
                    "select only group-by keys and aggregates"
                )
            if alias and alias != name:
                raise UnsupportedQuery("aliases on group-by keys are not supported")
            outputs.append(name)
        else:
            outputs.append(binder.aggregate(node, alias, len(outputs)))
    if not any(isinstance(o, Aggregate) for o in outputs):
        raise UnsupportedQuery("select at least one aggregate (COUNT, SUM, AVG, MEDIAN, QUANTILE)")
    names = [o if isinstance(o, str) else o.alias for o in outputs]
    if len(set(names)) != len(names):
        raise UnsupportedQuery(f"output names must be distinct, got {names}")

    where = tree.args.get("where")
    condition = binder.condition(where.this) if where is not None else None
    predicates = _predicate_count(condition)
    if predicates > MAX_PREDICATES:
        raise UnsupportedQuery(
            f"WHERE makes {predicates} comparisons; at most {MAX_PREDICATES} are supported"
        )
    order_by = _order_by(tree, names)
    limit = _limit(tree)
    return QueryPlan(
        sql=sql,
        dataset=manifest.name,
        outputs=tuple(outputs),
        group_by=group_by,
        where=condition,
        order_by=order_by,
        limit=limit,
    )


def _output_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise UnsupportedQuery(f"an output name has 1 to {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise UnsupportedQuery("an output name may not hold control characters")
    return name


def _predicate_count(cond: Condition | None) -> int:
    if cond is None:
        return 0
    if isinstance(cond, BoolOp):
        return sum(_predicate_count(p) for p in cond.parts)
    if isinstance(cond, Negation):
        return _predicate_count(cond.part)
    if isinstance(cond, InList):
        return len(cond.values)
    return 2 if isinstance(cond, Between) else 1


_REFUSED_CLAUSES = {
    "joins": "JOIN",
    "having": "HAVING",
    "qualify": "QUALIFY",
    "distinct": "DISTINCT",
    "with_": "WITH",
    "with": "WITH",
    "windows": "WINDOW",
    "laterals": "LATERAL",
    "pivots": "PIVOT",
    "offset": "OFFSET",
    "into": "INTO",
}


def _refuse_unsupported_clauses(tree: exp.Select) -> None:
    for key, label in _REFUSED_CLAUSES.items():
        if tree.args.get(key):
            raise UnsupportedQuery(f"{label} is not supported by the DP query engine")
    for node in tree.walk():
        if isinstance(node, exp.Subquery | exp.Union | exp.Window) or (
            isinstance(node, exp.Select) and node is not tree
        ):
            raise UnsupportedQuery(
                "subqueries, set operations and window functions are not supported"
            )


def _table_name(tree: exp.Select) -> str:
    source = tree.args.get("from_") or tree.args.get("from")
    if source is None:
        raise UnsupportedQuery("the query needs FROM <dataset>")
    table = source.this
    if not isinstance(table, exp.Table) or table.args.get("db") or table.args.get("catalog"):
        raise UnsupportedQuery("FROM must name exactly one dataset of the catalog")
    return table.name


def _order_by(tree: exp.Select, names: list[str]) -> tuple[tuple[str, bool], ...]:
    order = tree.args.get("order")
    if order is None:
        return ()
    out = []
    for ordered in order.expressions:
        target = ordered.this
        if not isinstance(target, exp.Column) or target.name not in names:
            raise UnsupportedQuery(f"ORDER BY may only name output columns {names}")
        out.append((target.name, bool(ordered.args.get("desc"))))
    return tuple(out)


def _limit(tree: exp.Select) -> int | None:
    limit = tree.args.get("limit")
    if limit is None:
        return None
    value = limit.expression
    if (
        not isinstance(value, exp.Literal)
        or value.is_string
        or not value.this.isascii()
        or not value.this.isdigit()
    ):
        raise UnsupportedQuery("LIMIT takes a non-negative integer literal")
    digits = value.this.lstrip("0") or "0"
    if len(digits) > len(str(MAX_LIMIT)) or int(digits) > MAX_LIMIT:
        raise UnsupportedQuery(f"LIMIT is at most {MAX_LIMIT}")
    return int(digits)


class _Binder:
    """Resolves columns and literals of one query against a manifest."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    def column(self, node: exp.Expression) -> ColumnSpec:
        if not isinstance(node, exp.Column):
            raise UnsupportedQuery(f"expected a column name, got {node.sql()!r}")
        if node.table and node.table != self.manifest.name:
            raise UnknownColumn(f"{node.sql()!r} does not refer to dataset {self.manifest.name!r}")
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
                "be used in a query"
            )
        return spec

    def key_column(self, node: exp.Expression) -> str:
        spec = self.column(node)
        if spec.type == "float":
            raise UnsupportedQuery(f"cannot GROUP BY the float column {spec.name!r}")
        return spec.name

    def aggregate(self, node: exp.Expression, alias: str | None, position: int) -> Aggregate:
        if isinstance(node, exp.Count):
            arg = node.this
            if isinstance(arg, exp.Distinct):
                raise UnsupportedQuery("COUNT(DISTINCT ...) is not supported")
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
            "supported aggregate"
        )

    def _bounded(self, node: exp.Expression, what: str) -> ColumnSpec:
        spec = self.column(node)
        if not spec.is_numeric:
            raise UnsupportedQuery(f"{what} needs a numeric column; {spec.name!r} is {spec.type}")
        if spec.bounds is None:
            raise MissingBounds(
                f"{what}({spec.name}) needs public bounds; the manifest of "
                f"{self.manifest.name!r} declares none for {spec.name!r}"
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
            values = tuple(self.literal(v, spec) for v in node.expressions)
            return InList(spec.name, values)
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
        raise UnsupportedQuery(f"condition {_one_line(node.sql())!r} is not supported in WHERE")

    def literal(self, node: exp.Expression, spec: ColumnSpec) -> Any:
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
            raise UnsupportedQuery(f"column {spec.name!r} is {spec.type}; {raw!r} is a string")
        if isinstance(raw, float) and not math.isfinite(raw):
            raise UnsupportedQuery("literals must be finite numbers")
        if spec.type == "int" and isinstance(raw, float):
            return raw  # comparing an int column with 2.5 is meaningful
        if isinstance(raw, int) and not isinstance(raw, bool) and not _INT64[0] <= raw <= _INT64[1]:
            raise UnsupportedQuery(f"integer literals must fit in 64 bits (column {spec.name!r})")
        try:
            return _coerce(spec.type, raw, f"literal for {spec.name}")
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


_COMPARISONS: dict[type, Literal["==", "!=", "<", "<=", ">", ">="]] = {
    exp.EQ: "==",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_FLIPPED: dict[str, Literal["==", "!=", "<", "<=", ">", ">="]] = {
    "==": "==",
    "!=": "!=",
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
}
