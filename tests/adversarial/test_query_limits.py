"""Hostile SQL: every parser or size problem is our own one-line error, before any spend."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox.catalog import load_catalog
from sandbox.errors import SandboxError, UnsupportedQuery
from sandbox.query import MAX_IN_LIST, MAX_PREDICATES, MAX_SELECT_ITEMS, MAX_SQL_LENGTH, QueryEngine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def engine(pums_catalog_dir):
    return QueryEngine(load_catalog(pums_catalog_dir))


def _refused(engine: QueryEngine, sql: str) -> str:
    """The query is refused with our error, one line, and OpenDP released nothing."""
    with pytest.raises(UnsupportedQuery) as info:
        engine.run(sql, epsilon=1.0)
    message = str(info.value)
    assert "\n" not in message and message
    assert engine.context("pums").odometer_loss() == (0.0, 0.0)
    return message


def test_in_list_of_2000_literals_does_not_kill_the_process(pums_catalog_dir):
    # Run in a child: on a regression the stack overflow kills only the child.
    script = textwrap.dedent(
        f"""
        from sandbox.catalog import load_catalog
        from sandbox.query import QueryEngine
        from sandbox.errors import UnsupportedQuery
        engine = QueryEngine(load_catalog({str(pums_catalog_dir)!r}))
        sql = "SELECT COUNT(*) FROM pums WHERE age IN (" + ",".join(
            str(i % 100) for i in range(2000)) + ")"
        try:
            engine.run(sql, epsilon=1.0)
        except UnsupportedQuery as exc:
            print("refused:", exc)
        print("spent", engine.context("pums").odometer_loss()[0])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])
    assert "refused:" in proc.stdout and f"at most {MAX_IN_LIST}" in proc.stdout
    assert "spent 0.0" in proc.stdout


def test_in_list_just_over_the_limit_is_refused(engine):
    values = ",".join(str(i % 100) for i in range(MAX_IN_LIST + 1))
    assert "IN lists" in _refused(engine, f"SELECT COUNT(*) FROM pums WHERE age IN ({values})")


def test_long_or_chain_within_the_limits_is_answered(engine):
    # A left-deep chain of 900 ORs: flattened when bound, compiled as a balanced tree.
    cond = " OR ".join(f"age = {i % 100}" for i in range(900))
    result = engine.run(f"SELECT COUNT(*) AS n FROM pums WHERE {cond}", epsilon=1.0)
    assert result.rows()[0]["n"]["value"] is not None


def test_too_many_comparisons_are_refused(engine):
    cond = " OR ".join(f"age = {i % 100}" for i in range(MAX_PREDICATES + 1))
    assert "comparisons" in _refused(engine, f"SELECT COUNT(*) FROM pums WHERE {cond}")


def test_deep_parentheses_are_refused_not_a_recursion_error(engine):
    sql = "SELECT COUNT(*) FROM pums WHERE " + "(" * 3000 + "age = 1" + ")" * 3000
    assert "nested too deeply" in _refused(engine, sql)


def test_deep_not_chain_is_refused(engine):
    sql = "SELECT COUNT(*) FROM pums WHERE " + "NOT " * 600 + "age = 1"
    assert "nested too deeply" in _refused(engine, sql)


def test_moderate_not_chain_beyond_the_depth_limit_is_refused(engine):
    # 60 NOTs parse fine in sqlglot but exceed the documented depth.
    sql = "SELECT COUNT(*) FROM pums WHERE " + "NOT " * 60 + "age = 1"
    assert "at most 32 levels" in _refused(engine, sql)


def test_unterminated_string_is_our_error(engine):
    assert "unterminated" in _refused(engine, "SELECT COUNT(*) FROM pums WHERE sex = 'abc")


def test_huge_limit_is_refused(engine):
    assert "LIMIT is at most" in _refused(engine, "SELECT COUNT(*) FROM pums LIMIT " + "9" * 30)


def test_limit_with_more_digits_than_python_converts_is_refused(engine):
    assert "LIMIT" in _refused(engine, "SELECT COUNT(*) FROM pums LIMIT " + "9" * 5000)


def test_lone_surrogate_alias_is_refused_at_plan_time(engine):
    with pytest.raises(UnsupportedQuery, match="surrogate"):
        engine.plan('SELECT COUNT(*) AS "\ud800" FROM pums')
    with pytest.raises(UnsupportedQuery):
        engine.prepare('SELECT COUNT(*) AS "\ud800" FROM pums', epsilon=1.0)
    assert engine.context("pums").odometer_loss() == (0.0, 0.0)


def test_control_characters_in_an_alias_are_refused(engine):
    assert "control" in _refused(engine, 'SELECT COUNT(*) AS "a\nb" FROM pums')


def test_nul_byte_is_refused(engine):
    assert "NUL" in _refused(engine, "SELECT COUNT(*) FROM pums WHERE sex = '\x00'")


def test_gigantic_sql_text_is_refused_before_parsing(engine):
    sql = "SELECT COUNT(*) FROM pums /*" + " " * MAX_SQL_LENGTH + "*/"
    assert f"at most {MAX_SQL_LENGTH}" in _refused(engine, sql)


def test_select_list_beyond_the_limit_is_refused(engine):
    items = ", ".join(f"COUNT(*) AS c{i}" for i in range(MAX_SELECT_ITEMS + 1))
    assert "SELECT list" in _refused(engine, f"SELECT {items} FROM pums")


def test_non_text_sql_is_our_error(engine):
    with pytest.raises(SandboxError):
        engine.plan(b"SELECT COUNT(*) FROM pums")  # type: ignore[arg-type]
