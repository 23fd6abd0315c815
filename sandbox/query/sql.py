"""The SQL a firm may send, parsed with sqlglot into a validated :class:`QueryPlan`.

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

>>> from sandbox.catalog import load_catalog
>>> catalog = load_catalog("examples/pums")  # the shipped example, from the repository root
>>> plan = parse_query("SELECT sex, COUNT(*) FROM pums GROUP BY sex", catalog)
>>> plan.group_by, plan.aggregates[0].alias
(('sex',), 'count')
>>> parse_query("DELETE FROM pums", catalog)
Traceback (most recent call last):
sandbox.errors.UnsupportedQuery: only SELECT is supported, not DELETE
"""

from __future__ import annotations

import logging
from typing import Any, cast

import sqlglot
from sqlglot import exp

from sandbox.catalog import Catalog
from sandbox.errors import UnsupportedQuery
from sandbox.query.bind import Binder, one_line
from sandbox.query.limits import (
    MAX_EXPRESSION_DEPTH,
    MAX_GROUP_KEYS,
    MAX_LIMIT,
    MAX_PREDICATES,
    MAX_SELECT_ITEMS,
    MAX_SQL_LENGTH,
)
from sandbox.query.plan import Aggregate, QueryPlan, predicate_count

# sqlglot logs a warning when it falls back to parsing text as a bare command; the query is
# refused with our own message instead, so keep the parser quiet (one error line, no more).
logging.getLogger("sqlglot").setLevel(logging.ERROR)


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
            f"the query is nested too deeply (at most {MAX_EXPRESSION_DEPTH} levels); "
            "simplify the conditions"
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
        statements = [s for s in sqlglot.parse(sql) if s is not None]
        return cast(list[exp.Expression], statements)
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else str(exc)
        raise UnsupportedQuery(f"cannot parse the SQL: {one_line(first)}") from None
    except sqlglot.errors.TokenError:
        raise UnsupportedQuery(
            "cannot parse the SQL: it has an unterminated string, quoted name or comment"
        ) from None
    except RecursionError:
        raise UnsupportedQuery(
            f"the query is nested too deeply (at most {MAX_EXPRESSION_DEPTH} levels); "
            "simplify the conditions"
        ) from None
    except Exception as exc:  # the parser's own defects must not escape as ours
        raise UnsupportedQuery(f"cannot parse the SQL ({type(exc).__name__})") from None


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
    binder = Binder(manifest)

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
        alias = binder.output_name(item.alias) if isinstance(item, exp.Alias) else None
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
    predicates = predicate_count(condition)
    if predicates > MAX_PREDICATES:
        raise UnsupportedQuery(
            f"WHERE makes {predicates} comparisons; at most {MAX_PREDICATES} are supported"
        )
    return QueryPlan(
        sql=sql,
        dataset=manifest.name,
        outputs=tuple(outputs),
        group_by=group_by,
        where=condition,
        order_by=_order_by(tree, names),
        limit=_limit(tree),
    )


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
    return str(table.name)


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
