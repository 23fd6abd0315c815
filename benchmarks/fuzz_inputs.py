"""What the fuzzer feeds the governed paths: hypothesis strategies for each input family.

Every input is a plain, picklable dict with a ``family`` key:

* ``sql``: a query with its firm, purpose, epsilon and delta, over the PUMS catalog or the
  small generated catalog (``catalog`` is ``"pums"`` or ``"generated"``);
* ``job``: a training job specification as a dict (what a firm would send as JSON);
* ``grant``: a grant as a dict or as the text of a grant file, or a dataset policy;
* ``cli``: an argument vector for the ``sandbox`` command line (run in-process or, for
  ``cli_subprocess``, as a real process).

Paths in CLI arguments are placeholders (``{pums}``, ``{state}``, ...) that the worker fills
in. Generation is reproducible: :func:`generate_inputs` with the same seed, counts and catalog
metadata returns the same inputs (hypothesis runs with that seed and no example database).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

FIRM = "fuzz-firm"
PURPOSE = "fuzzing the governed paths"
GRANT_FIRM = "grant-firm"

NAN, INF = float("nan"), float("inf")

#: Values that break numbers: non-finite, out of range, tiny, huge, wrong types.
HOSTILE_NUMBERS: tuple[Any, ...] = (
    NAN,
    INF,
    -INF,
    0.0,
    -0.0,
    -1.0,
    1e-12,
    1e-7,
    5e-324,
    1e-300,
    1e308,
    1e6,
    0.5,
    1.0,
    2**63,
    10**30,
    -(10**30),
    "1",
    "nan",
    None,
    True,
    [],
    {},
)

#: Text that breaks text handling: lone surrogates, NUL, control characters, long strings.
HOSTILE_TEXT: tuple[str, ...] = (
    "",
    " ",
    "\ud800",
    "a\udfffb",
    "\x00",
    "a\x00b",
    "\n\r\t",
    "'; DROP TABLE grants; --",
    "ünïcødé 数据 😀",
    "x" * 10_000,
    "a:b",
    "::",
    "%s%n",
    "../../etc/passwd",
)

TOKENS: tuple[str, ...] = (
    ",",
    "(",
    ")",
    "((",
    "))",
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "AND",
    "OR",
    "NOT",
    "IN",
    "'",
    '"',
    "`",
    "--",
    "/*",
    ";",
    "NULL",
    "1e999",
    "-",
    "*",
    " JOIN pums p2 ON 1=1 ",
    " UNION SELECT 1 ",
    "\x00",
    "\ud800",
    "é",
    "😀",
    "$1",
    "?",
    ":x",
    "99999999999999999999999999",
    "-0.0",
    "CAST(",
    "COUNT(",
    "\\",
)


@dataclass(frozen=True)
class Column:
    """What the generator needs to know about one column (from the public manifest)."""

    name: str
    kind: str  # "key" (categories), "num" (numeric with bounds), "ident", "other"
    type: str
    values: tuple[Any, ...] = ()  # categories, or (low, high) for numbers


#: dataset name -> its columns; one map per catalog ("pums", "generated").
Meta = dict[str, dict[str, tuple[Column, ...]]]


def column_kind(spec: Any) -> str:
    """How the fuzzer (and its grants) treat a manifest column."""
    if getattr(spec, "role", "attribute") == "identifier":
        return "ident"
    if spec.categories is not None:
        return "key"
    if spec.bounds is not None and spec.is_numeric:
        return "num"
    return "other"


def catalog_meta(catalog: Any) -> dict[str, tuple[Column, ...]]:
    """The generator's view of a loaded catalog."""
    out: dict[str, tuple[Column, ...]] = {}
    for manifest in catalog:
        cols = []
        for spec in manifest.columns:
            kind = column_kind(spec)
            values: tuple[Any, ...] = ()
            if kind == "key":
                values = tuple(spec.categories)
            elif kind == "num":
                values = tuple(spec.bounds)
            cols.append(Column(spec.name, kind, str(spec.type), values))
        out[manifest.name] = tuple(cols)
    return out


# -- SQL --------------------------------------------------------------------------------------


def _lit(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def _num_literal(col: Column, r: random.Random) -> str:
    low, high = col.values
    if isinstance(low, int | float) and isinstance(high, int | float):
        if col.type == "int":
            return str(r.randint(int(low), int(high)))
        return repr(round(r.uniform(float(low), float(high)), 3))
    return _lit(low)


def _condition(cols: tuple[Column, ...], r: random.Random, depth: int = 0) -> str:
    keys = [c for c in cols if c.kind == "key"]
    nums = [c for c in cols if c.kind == "num"]
    roll = r.random()
    if depth < 2 and roll < 0.2:
        op = r.choice(["AND", "OR"])
        return f"({_condition(cols, r, depth + 1)} {op} {_condition(cols, r, depth + 1)})"
    if depth < 2 and roll < 0.27:
        return f"NOT ({_condition(cols, r, depth + 1)})"
    if keys and (roll < 0.9 or not nums):
        col = r.choice(keys)
        choice = r.random()
        if choice < 0.5:
            return f"{col.name} {r.choice(['=', '!=', '<>'])} {_lit(r.choice(col.values))}"
        if choice < 0.85:
            picked = r.sample(list(col.values), k=r.randint(1, len(col.values)))
            return f"{col.name} IN ({', '.join(map(_lit, picked))})"
        return f"{col.name} IS {r.choice(['', 'NOT '])}NULL"
    if nums:
        col = r.choice(nums)
        if r.random() < 0.3:
            a, b = sorted([_num_literal(col, r), _num_literal(col, r)], key=float)
            return f"{col.name} BETWEEN {a} AND {b}"
        return f"{col.name} {r.choice(['<', '<=', '>', '>=', '='])} {_num_literal(col, r)}"
    return "1 = 1"


def valid_sql(dataset: str, cols: tuple[Column, ...], r: random.Random) -> str:
    """A query the grant allows: keys group, numbers aggregate, keys filter."""
    keys = [c for c in cols if c.kind == "key"]
    nums = [c for c in cols if c.kind == "num"]
    group = r.sample(keys, k=r.randint(0, min(2, len(keys)))) if keys and r.random() < 0.6 else []
    aggs: list[str] = []
    for i in range(r.randint(1, 3)):
        choice = r.random()
        if choice < 0.3 or not nums:
            agg = "COUNT(*)"
        else:
            col = r.choice(nums).name
            agg = r.choice(
                [
                    f"SUM({col})",
                    f"AVG({col})",
                    f"MEDIAN({col})",
                    f"QUANTILE({col}, {r.choice(['0.1', '0.25', '0.9'])})",
                    f"PERCENTILE_CONT({r.choice(['0.5', '0.75'])}) WITHIN GROUP (ORDER BY {col})",
                    f"COUNT({col})",
                ]
            )
        if r.random() < 0.5:
            agg += f" AS a{i}"
        aggs.append(agg)
    sql = f"SELECT {', '.join([c.name for c in group] + aggs)} FROM {dataset}"
    if r.random() < 0.5:
        sql += f" WHERE {_condition(tuple(cols), r)}"
    if group:
        sql += f" GROUP BY {', '.join(c.name for c in group)}"
        if r.random() < 0.3:
            sql += f" ORDER BY {group[0].name} {r.choice(['ASC', 'DESC'])}"
    if r.random() < 0.2:
        sql += f" LIMIT {r.randint(0, 20)}"
    return sql


def mutate(sql: str, r: random.Random) -> str:
    """One to three random edits of a query's text."""
    for _ in range(r.randint(1, 3)):
        op = r.randrange(7)
        i = r.randint(0, len(sql))
        j = min(len(sql), i + r.randint(1, 12))
        if op == 0:
            sql = sql[:i] + sql[j:]
        elif op == 1:
            sql = sql[:i] + " " + r.choice(TOKENS) + " " + sql[i:]
        elif op == 2:
            sql = sql[:j] + sql[i:j] * r.randint(1, 4) + sql[j:]
        elif op == 3:
            sql = sql[:i] + r.choice(["9" * r.randint(10, 400), "-1", "1e308", "0.0"]) + sql[i:]
        elif op == 4:
            sql = sql[:i]
        elif op == 5:
            sql = sql[:i] + chr(r.choice([0, 0xD800, 0xDFFF, 0x202E, 0xFEFF, 0x7F])) + sql[i:]
        else:
            sql = sql.lower() if r.random() < 0.5 else sql.swapcase()
    return sql


HOSTILE_SQL_KINDS = (
    "in_list",
    "deep_parens",
    "deep_not",
    "long_or",
    "deep_arith",
    "deep_agg_parens",
    "huge_limit",
    "surrogate",
    "nul",
    "unknown_column",
    "unknown_table",
    "identifier",
    "long_text",
    "not_select",
    "empty",
    "huge_literal",
    "many_aggregates",
    "many_group_keys",
)


def hostile_sql(kind: str, dataset: str, cols: tuple[Column, ...], r: random.Random) -> str:
    keys = [c for c in cols if c.kind == "key"] or list(cols)
    nums = [c for c in cols if c.kind == "num"] or list(cols)
    key, num = r.choice(keys).name, r.choice(nums).name
    base = f"SELECT COUNT(*) FROM {dataset}"
    n = r.choice([50, 500, 1000, 2000, 5000, 20000])
    if kind == "in_list":
        return f"{base} WHERE {num} IN ({', '.join(str(i) for i in range(n))})"
    if kind == "deep_parens":
        return f"{base} WHERE {'(' * n}{num} > 1{')' * n}"
    if kind == "deep_not":
        return f"{base} WHERE {'NOT ' * n}{num} > 1"
    if kind == "long_or":
        return f"{base} WHERE " + " OR ".join(f"{num} = {i}" for i in range(n))
    if kind == "deep_arith":
        return f"SELECT SUM({' + '.join([num] * n)}) FROM {dataset}"
    if kind == "deep_agg_parens":
        return f"SELECT SUM({'(' * n}{num}{')' * n}) FROM {dataset}"
    if kind == "huge_limit":
        limit = r.choice(["9" * r.randint(10, 500), "-1", "1e999", "'x'", "2147483648", "0"])
        return f"{base} LIMIT {limit}"
    if kind == "surrogate":
        return r.choice(
            [
                f'SELECT COUNT(*) AS "\ud800" FROM {dataset}',
                f"SELECT COUNT(*) AS \ud800 FROM {dataset}",
                f"{base} WHERE {key} = '\ud800'",
                f"SELECT COUNT(*) FROM {dataset}\udfff",
                f'SELECT {key}, COUNT(*) AS "x\udc80y" FROM {dataset} GROUP BY {key}',
            ]
        )
    if kind == "nul":
        return r.choice(
            [
                f"{base}\x00",
                f'SELECT COUNT(*) AS "a\x00b" FROM {dataset}',
                f"{base} WHERE {key} = 'a\x00'",
                f"SELECT\x00COUNT(*) FROM {dataset}",
            ]
        )
    if kind == "unknown_column":
        return r.choice(
            [
                f"SELECT SUM(no_such_column) FROM {dataset}",
                f"{base} WHERE nope = 1",
                f"SELECT nope, COUNT(*) FROM {dataset} GROUP BY nope",
                f'SELECT SUM("{num.upper()}") FROM {dataset}',
            ]
        )
    if kind == "unknown_table":
        return r.choice(["SELECT COUNT(*) FROM nowhere", "SELECT COUNT(*) FROM grants"])
    if kind == "identifier":
        idents = [c.name for c in cols if c.kind == "ident"] or ["person_id"]
        ident = r.choice(idents)
        return r.choice(
            [
                f"SELECT COUNT({ident}) FROM {dataset}",
                f"SELECT {ident}, COUNT(*) FROM {dataset} GROUP BY {ident}",
                f"{base} WHERE {ident} = 'x'",
                f"SELECT {ident} FROM {dataset}",
            ]
        )
    if kind == "long_text":
        size = r.choice([10_000, 100_000, 1_000_000])
        return r.choice(
            [
                f"{base} /* {'x' * size} */",
                f"SELECT COUNT(*) AS {'a' * size} FROM {dataset}",
                f"{base} WHERE {key} = '{'y' * size}'",
                " " * size + base,
            ]
        )
    if kind == "not_select":
        return r.choice(
            [
                f"DROP TABLE {dataset}",
                f"{base}; {base}",
                f"SELECT * FROM {dataset}",
                f"SELECT {num} FROM {dataset}",
                f"INSERT INTO {dataset} VALUES (1)",
                f"SELECT COUNT(*) FROM {dataset} a JOIN {dataset} b ON a.{key} = b.{key}",
                f"SELECT COUNT(*) FROM (SELECT * FROM {dataset})",
                f"WITH t AS (SELECT * FROM {dataset}) SELECT COUNT(*) FROM t",
                f"SELECT DISTINCT {key} FROM {dataset}",
                f"SELECT {key}, COUNT(*) FROM {dataset} GROUP BY {key} HAVING COUNT(*) > 1",
                f"SELECT SUM({num}) OVER () FROM {dataset}",
                f"{base} UNION SELECT COUNT(*) FROM {dataset}",
                "PRAGMA table_info(pums)",
                "SELECT 1",
            ]
        )
    if kind == "empty":
        return r.choice(["", " ", ";", "\n", "--", "/*", "SELECT", "(", "'"])
    if kind == "huge_literal":
        return r.choice(
            [
                f"{base} WHERE {num} > {'9' * 400}",
                f"{base} WHERE {num} > 1e999",
                f"{base} WHERE {num} > -1e999",
                f"{base} WHERE {num} BETWEEN 10 AND -10",
                f"SELECT QUANTILE({num}, 1.5) FROM {dataset}",
                f"SELECT QUANTILE({num}, -0.1) FROM {dataset}",
                f"SELECT QUANTILE({num}, 'nan') FROM {dataset}",
                f"{base} WHERE {key} = 1e308",
            ]
        )
    if kind == "many_aggregates":
        return f"SELECT {', '.join(['COUNT(*)'] * min(n, 5000))} FROM {dataset}"
    # many_group_keys
    group = ", ".join([key] * min(n, 2000))
    return f"SELECT {group}, COUNT(*) FROM {dataset} GROUP BY {group}"


def _hostile_number(r: random.Random) -> Any:
    return r.choice(HOSTILE_NUMBERS)


@st.composite
def sql_inputs(draw: st.DrawFn, meta: Meta) -> dict[str, Any]:
    catalog = draw(st.sampled_from(["pums"] * 4 + ["generated"] * 5 + ["broken"]))
    dataset = draw(st.sampled_from(sorted(meta[catalog])))
    cols = meta[catalog][dataset]
    r = random.Random(draw(st.integers(0, 2**32 - 1)))
    variant = draw(st.sampled_from(("valid",) * 4 + ("mutated",) * 3 + ("hostile",) * 3))
    if variant == "valid":
        sql = valid_sql(dataset, cols, r)
    elif variant == "mutated":
        sql = mutate(valid_sql(dataset, cols, r), r)
    else:
        variant = draw(st.sampled_from(HOSTILE_SQL_KINDS))
        sql = hostile_sql(variant, dataset, cols, r)
    params = draw(st.sampled_from(("valid",) * 7 + ("hostile",) * 3))
    if params == "valid":
        epsilon: Any = draw(
            st.one_of(
                st.sampled_from([0.01, 0.1, 0.5, 1.0, 2.0]),
                st.floats(min_value=0.001, max_value=5.0),
            )
        )
        delta: Any = draw(st.sampled_from([0.0, 0.0, 1e-9, 1e-7, 1e-6]))
    else:
        epsilon = draw(st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.floats()))
        delta = draw(
            st.one_of(
                st.sampled_from(HOSTILE_NUMBERS + (0.5, 0.999, 1e-3, 0.1)),
                st.floats(),
                st.sampled_from([1e-7]),
            )
        )
    who = draw(st.sampled_from(("granted",) * 17 + ("other_firm", "odd_firm", "odd_purpose")))
    firm, purpose = FIRM, PURPOSE
    if who == "other_firm":
        firm = "some-other-firm"
    elif who == "odd_firm":
        firm = draw(st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40)))
    elif who == "odd_purpose":
        purpose = draw(st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40)))
    extra: dict[str, Any] = {}
    if draw(st.integers(0, 9)) == 0:  # name a grant, or ask for another minimum group size
        extra = draw(
            st.sampled_from(
                [
                    {"grant_id": "fz-canary"},
                    {"grant_id": "fz-query"},
                    {"grant_id": "no-such-grant"},
                    {"grant_id": "fz:query"},
                    {"grant_id": "\ud800"},
                    {"grant_id": ""},
                    {"min_group_size": 0},
                    {"min_group_size": -1},
                    {"min_group_size": 10**9},
                    {"min_group_size": 10**30},
                ]
            )
        )
    return {
        **extra,
        "family": "sql",
        "catalog": catalog,
        "dataset": dataset,
        "variant": variant,
        "sql": sql,
        "epsilon": epsilon,
        "delta": delta,
        "firm": firm,
        "purpose": purpose,
    }


# -- training jobs ------------------------------------------------------------------------------

JOB_FIELDS = (
    "model",
    "model_params",
    "features",
    "categorical",
    "label",
    "nodes",
    "rounds",
    "local_epochs",
    "sample_rate",
    "batch_size",
    "learning_rate",
    "strategy",
    "proximal_mu",
    "server_learning_rate",
    "server_momentum",
    "dp",
    "target_epsilon",
    "target_delta",
    "noise_multiplier",
    "max_grad_norm",
    "accountant",
    "count_epsilon",
    "eval_epsilon",
    "client_dp",
    "client_noise_multiplier",
    "client_target_epsilon",
    "min_nodes",
    "round_timeout_s",
    "seed",
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(HOSTILE_TEXT[:9]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)


def _weird_value(r: random.Random) -> Any:
    return r.choice(HOSTILE_NUMBERS + HOSTILE_TEXT[:9] + ([1, 2], {"a": 1}, ["\ud800"]))


@st.composite
def job_inputs(draw: st.DrawFn, training: dict[str, Any]) -> dict[str, Any]:
    """``training``: {"nodes": [...], "features": [...], "categorical": {...}, "label": str,
    "identifier": str}, from the generated enterprise registers."""
    r = random.Random(draw(st.integers(0, 2**32 - 1)))
    variant = draw(st.sampled_from(("valid",) * 3 + ("mutated",) * 5 + ("random",)))
    if variant == "random":
        spec = draw(st.dictionaries(st.sampled_from(JOB_FIELDS) | st.text(max_size=8), json_values))
        return {"family": "job", "variant": variant, "spec": spec, "firm": FIRM, "purpose": PURPOSE}
    features = r.sample(training["features"], k=r.randint(1, min(4, len(training["features"]))))
    nodes = r.sample(training["nodes"], k=r.randint(1, len(training["nodes"])))
    spec: dict[str, Any] = {
        "model": r.choice(["logreg", "logreg", "mlp"]),
        "features": features,
        "categorical": {f: n for f, n in training["categorical"].items() if f in features},
        "label": training["label"],
        "nodes": nodes,
        "rounds": r.randint(1, 3),
        "local_epochs": r.choice([0.1, 0.5, 1.0]),
        "sample_rate": r.choice([0.05, 0.1, 0.3]),
        "learning_rate": 0.1,
        "target_epsilon": r.choice([0.5, 1.0, 2.0, 4.0]),
        "target_delta": r.choice([1e-9, 1e-10]),
        "max_grad_norm": 1.0,
        "min_nodes": 1,
        "seed": r.randint(0, 1000),
    }
    if variant == "mutated":
        for _ in range(r.randint(1, 3)):
            op = r.randrange(10)
            field = r.choice(JOB_FIELDS)
            if op <= 3:
                spec[field] = _weird_value(r)
            elif op == 4:
                spec.pop(r.choice(list(spec)), None)
            elif op == 5:
                spec[draw(st.text(max_size=10))] = 1
            elif op == 6:
                spec["nodes"] = r.choice(
                    [[], ["no_such_node"], nodes + nodes[:1], ["pums"], ["\ud800"], nodes * 50]
                )
            elif op == 7:
                spec["features"] = r.choice(
                    [
                        [],
                        [training["identifier"]],
                        ["no_such_column"],
                        features * 2,
                        [training["label"]],
                        ["\x00"],
                    ]
                )
            elif op == 8:
                spec.update(
                    r.choice(
                        [
                            {"dp": False, "target_epsilon": None},
                            {"target_epsilon": r.choice([NAN, INF, 1e-9, 1e-300, 1e6, -1.0])},
                            {"target_delta": r.choice([0.5, 0.999, 1e-300, NAN])},
                            {"noise_multiplier": 0.0, "target_epsilon": None},
                            {"rounds": 1000, "local_epochs": 100.0, "sample_rate": 1e-6},
                            {"batch_size": 10**9, "sample_rate": None},
                            {"model": r.choice(["resnet", "", "LOGREG", "logreg\x00"])},
                            {"model_params": {"hidden": r.choice([0, -1, 10**9, 10**30])}},
                            {"client_dp": True, "client_noise_multiplier": 1.0},
                            {"label": r.choice(["no_such", training["identifier"], ""])},
                            {"categorical": {features[0]: r.choice([0, -1, 10**12])}},
                            {"seed": r.choice([-1, 2**64, 10**100])},
                            {"strategy": "fedprox", "proximal_mu": INF},
                        ]
                    )
                )
            else:
                spec[field] = draw(json_values)
    who = draw(st.sampled_from(("granted",) * 9 + ("odd",)))
    firm, purpose = (FIRM, PURPOSE) if who == "granted" else ("some-other-firm", PURPOSE)
    return {"family": "job", "variant": variant, "spec": spec, "firm": firm, "purpose": purpose}


# -- grants -------------------------------------------------------------------------------------

GRANT_FIELDS = (
    "grant_id",
    "firm",
    "datasets",
    "purpose",
    "legal_basis",
    "actions",
    "epsilon_per_use",
    "min_group_size",
    "models",
    "valid_from",
    "valid_until",
    "approved_by",
    "version",
    "revoked",
)


@st.composite
def grant_inputs(draw: st.DrawFn, datasets: dict[str, list[str]]) -> dict[str, Any]:
    """``datasets``: registered dataset -> its non-identifier columns."""
    r = random.Random(draw(st.integers(0, 2**32 - 1)))
    variant = draw(
        st.sampled_from(
            ("valid",) * 2
            + ("mutated",) * 5
            + ("random",)
            + ("file",) * 2
            + ("dataset",)
            + ("revoke",)
        )
    )
    number = draw(st.integers(0, 10**9))
    if variant == "random":
        grant = draw(
            st.dictionaries(st.sampled_from(GRANT_FIELDS) | st.text(max_size=8), json_values)
        )
        return {"family": "grant", "variant": variant, "grant": grant}
    if variant == "revoke":
        hostile = draw(st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=30)))
        return {
            "family": "grant",
            "variant": variant,
            "grant_id": r.choice([hostile, "no-such-grant", "fz:query", "fz-query:x", "FZ-QUERY"]),
            "revoked_by": r.choice(["official-1", hostile]),
            "reason": r.choice(["fuzzing", hostile]),
        }
    if variant == "dataset":
        policy = {
            "dataset_id": f"fz-ds-{number}",
            "department": r.choice(["dept", "", "\ud800", "x" * 1000]),
            "level": r.choice(["general", "important", "core", "secret", 3, None]),
            "identity_columns": r.choice([[], ["id"], ["\x00"], "id", None]),
            "epsilon_cap": r.choice([1.0, 10.0, *HOSTILE_NUMBERS]),
            "delta_cap": r.choice([0.0, 1e-6, *HOSTILE_NUMBERS]),
        }
        if r.random() < 0.3:
            policy[r.choice(list(policy))] = _weird_value(r)
        return {"family": "grant", "variant": variant, "policy": policy}
    names = r.sample(sorted(datasets), k=r.randint(1, min(3, len(datasets))))
    terms = {}
    for name in names:
        cols = datasets[name]
        picked = r.sample(cols, k=r.randint(1, min(4, len(cols))))
        terms[name] = {
            "epsilon": r.choice([1.0, 5.0, 10.0]),
            "delta": r.choice([0.0, 1e-7]),
            "columns": {"*": "aggregate_only"}
            | {c: r.choice(["group_by", "aggregate_only", "filter_only", "never"]) for c in picked},
        }
    grant: dict[str, Any] = {
        "grant_id": f"fz-g-{number}",
        "firm": GRANT_FIRM,
        "datasets": terms,
        "purpose": "grant fuzzing",
        "legal_basis": "PIPL art. 13(1)",
        "actions": r.choice([["query"], ["query", "train"], ["train"]]),
        "epsilon_per_use": 0.5,
        "min_group_size": r.choice([1, 5, 10]),
        "models": ["logreg"],
        "valid_from": "2026-01-01T00:00:00+00:00",
        "valid_until": "2030-01-01T00:00:00+00:00",
        "approved_by": "official-1",
    }
    if variant in ("mutated", "file") and (variant == "mutated" or r.random() < 0.5):
        for _ in range(r.randint(1, 3)):
            op = r.randrange(9)
            if op <= 2:
                grant[r.choice(GRANT_FIELDS)] = _weird_value(r)
            elif op == 3:
                grant.pop(r.choice(list(grant)), None)
            elif op == 4:
                name = r.choice(list(terms))
                terms[name][r.choice(["epsilon", "delta"])] = r.choice(
                    [INF, NAN, 1e308, -1.0, 0.0, 0.5, 1.0, 1e-300, "inf", "NaN"]
                )
            elif op == 5:
                grant["grant_id"] = r.choice(
                    ["a:b", f"fz:{number}", "", "\ud800", "x" * 5000, "g 1", "../x", "g\x00"]
                )
            elif op == 6:
                grant["datasets"] = r.choice(
                    [{}, {"no_such_dataset": next(iter(terms.values()))}, {"": {}}, []]
                )
            elif op == 7:
                grant[r.choice(["valid_from", "valid_until"])] = r.choice(
                    [
                        "2026-01-01T00:00:00",
                        "not a date",
                        "9999-12-31T23:59:59+00:00",
                        "0001-01-01T00:00:00+00:00",
                        1e308,
                        -1,
                        "2031-01-01T00:00:00+00:00",
                    ]
                )
            else:
                grant["epsilon_per_use"] = r.choice([INF, NAN, 0.0, 1e-300, 1e308, 100.0])
    out: dict[str, Any] = {"family": "grant", "variant": variant, "grant": grant}
    if variant == "file":
        out["format"] = r.choice(["json", "yaml", "garbage"])
        if out["format"] == "garbage":
            out["text"] = r.choice(
                [
                    "",
                    "{",
                    "null",
                    "[]",
                    "\x00\x01\x02",
                    "grant_id: [",
                    "!!python/object:os.system",
                    "a: &a [*a, *a]",
                    "\ud800",
                    "{" * 5000 + "}" * 5000,
                    "- " * 10_000,
                ]
            )
    return out


# -- command line -------------------------------------------------------------------------------

CLI_PATHS = (
    "{pums}",
    "{generated}",
    "{broken}",
    "{state}",
    "{missing}",
    "{file}",
    "{tmp}/out",
    "{garbage}",
)


@st.composite
def cli_inputs(draw: st.DrawFn, pums_sql: tuple[str, ...]) -> dict[str, Any]:
    r = random.Random(draw(st.integers(0, 2**32 - 1)))
    text = st.one_of(st.sampled_from(HOSTILE_TEXT[:9]), st.text(max_size=20))
    number = st.sampled_from(
        [
            "0.5",
            "1",
            "0",
            "-1",
            "nan",
            "inf",
            "-inf",
            "1e-300",
            "abc",
            "",
            "1e999",
            "0x10",
            "99999999999999999999999",
            "1e-7",
            "0.5",
        ]
    )
    path = st.sampled_from(CLI_PATHS)
    command = draw(
        st.sampled_from(
            [
                "datasets",
                "query",
                "query",
                "query",
                "mock",
                "generate",
                "export",
                "verify",
                "show",
                "show",
                "check",
                "audit_check",
                "garbage",
            ]
        )
    )
    argv: list[str]
    if command == "datasets":
        argv = ["datasets", "--catalog", draw(path)] + (["--json"] if r.random() < 0.5 else [])
    elif command == "query":
        sql = r.choice(pums_sql) if r.random() < 0.7 else draw(text)
        argv = [
            "query",
            sql,
            "--catalog",
            r.choice(["{pums}", "{pums}", draw(path)]),
            "--epsilon",
            draw(number),
        ]
        if r.random() < 0.5:
            argv += ["--delta", draw(number)]
        if r.random() < 0.5:
            argv.append("--json")
    elif command == "mock":
        argv = [
            "mock",
            r.choice(["pums", "jinan_population", "nope", draw(text)]),
            "--catalog",
            r.choice(["{pums}", "{generated}", draw(path)]),
            "--out",
            r.choice(
                [
                    "{tmp}/m.csv",
                    "{tmp}/m.parquet",
                    "{tmp}/m.txt",
                    "{missing}/m.csv",
                    "{file}/m.csv",
                    "{tmp}",
                ]
            ),
            "--rows",
            r.choice(["-1", "0", "1", "10", "500", "abc", "99999999999999999999999"]),
            "--seed",
            r.choice(["0", "-1", "99999999999999999999999", "x"]),
        ]
    elif command == "generate":
        argv = [
            "generate",
            "--out",
            r.choice(["{tmp}/gen", "{file}", "{missing}/x/y", "{pums}"]),
            "--rows",
            r.choice(["-5", "0", "99", "100", "150", "x", "1e3"]),
            "--seed",
            r.choice(["0", "-1", "7", "x"]),
        ]
    elif command == "check":
        argv = ["check", "--catalog", r.choice(["{broken}", "{pums}", "{generated}", draw(path)])]
        if r.random() < 0.4:
            argv += r.sample(
                ["pums", "pums_broken_refuse", "pums_broken_clamp", "nope", "\ud800"], 2
            )
    elif command == "audit_check":
        argv = ["audit", "check", "--state", r.choice(["{state}", "{state}", draw(path)])]
    elif command == "export":
        argv = [
            "audit",
            "export",
            r.choice(["{tmp}/export.jsonl", "{missing}/e", "{file}/e", "{tmp}"]),
            "--state",
            r.choice(["{state}", "{state}", draw(path)]),
        ]
        if r.random() < 0.3:
            argv += ["--tree-head", r.choice(["{tmp}/head.json", "{missing}/h"])]
    elif command == "verify":
        argv = [
            "audit",
            "verify",
            r.choice(["{export}", "{export}", "{garbage}", "{missing}", "{tamper}", "{pums}"]),
            "--public-key",
            r.choice(["{pubkey}", "{pubkey}", "{garbage}", "{missing}", "{export}"]),
        ]
        if r.random() < 0.3:
            argv += ["--previous", r.choice(["{head}", "{garbage}", "{missing}", "{export}"])]
    elif command == "show":
        argv = ["audit", "show", "--state", r.choice(["{state}", "{state}", draw(path)])]
        for option, values in (
            ("--firm", [FIRM, "\ud800", ""]),
            ("--dataset", ["pums", "\x00"]),
            ("--decision", ["permit", "deny", "maybe", ""]),
            ("--kind", ["release", "reservation", "x"]),
            ("--since", ["2026-01-01T00:00+08:00", "yesterday", "9999-12-31", "0001-01-01", ""]),
            ("--until", ["2030-01-01", "-1", "2026-13-45"]),
            ("--limit", ["10", "-1", "0", "99999999999999999999999", "x"]),
        ):
            if r.random() < 0.3:
                argv += [option, r.choice(values)]
        if r.random() < 0.3:
            argv.append("--json")
    else:
        argv = draw(
            st.lists(
                text | st.sampled_from(["--catalog", "--epsilon", "--help", "audit", "query", "-"]),
                max_size=6,
            )
        )
    if command in ("export", "show", "audit_check") and r.random() < 0.25:
        argv += ["--keys", r.choice(["{missing}", "{file}", "{tmp}/newkeys", "{garbage}"])]
    return {"family": "cli", "variant": command, "argv": argv}


# -- putting it together ------------------------------------------------------------------------


def draw_examples(strategy: st.SearchStrategy, count: int, seed: int) -> list[Any]:
    """``count`` examples of ``strategy``, the same ones for the same seed."""
    out: list[Any] = []
    attempt = 0
    while len(out) < count and attempt < 20:
        want = count - len(out)

        @settings(
            max_examples=want,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=False,
        )
        @hypothesis_seed(seed * 1000 + attempt)
        @given(strategy)
        def collect(example: Any) -> None:
            if len(out) < count:
                out.append(example)

        collect()
        attempt += 1
    return out


def split_counts(total: int) -> dict[str, int]:
    """How many inputs each family gets out of ``total``."""
    shares = {"sql": 0.66, "job": 0.12, "grant": 0.15}
    counts = {name: int(total * share) for name, share in shares.items()}
    counts["cli"] = total - sum(counts.values())
    return counts


def generate_inputs(
    total: int,
    seed: int,
    meta: Meta,
    training: dict[str, Any],
    grantable: dict[str, list[str]],
    subprocesses: int = 6,
    families: Callable[[str], bool] = lambda name: True,
) -> list[dict[str, Any]]:
    """Every input of one run, shuffled with ``seed``; the last ``subprocesses`` CLI inputs
    are run as real processes."""
    counts = split_counts(total)
    pums_sql = tuple(
        valid_sql("pums", meta["pums"]["pums"], random.Random(seed + i)) for i in range(20)
    )
    strategies = {
        "sql": sql_inputs(meta),
        "job": job_inputs(training),
        "grant": grant_inputs(grantable),
        "cli": cli_inputs(pums_sql),
    }
    inputs: list[dict[str, Any]] = []
    for offset, (name, strategy) in enumerate(strategies.items()):
        if families(name) and counts[name]:
            inputs.extend(draw_examples(strategy, counts[name], seed * 10 + offset))
    cli = [x for x in inputs if x["family"] == "cli"]
    for x in cli[-subprocesses:] if subprocesses else []:
        x["family"] = "cli_subprocess"
    random.Random(seed).shuffle(inputs)
    for index, x in enumerate(inputs):
        x["index"] = index
    return inputs
