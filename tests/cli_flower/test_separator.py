"""``--separator`` wherever the CLI reads a department's CSV files: it overrides the manifest's
``separator`` (here a wrong one) and detection for every CSV of the catalog; a value that is
not one character is refused with one error line. The files' headers have hyphens and spaces,
read through the manifest's ``source`` mapping."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sandbox.catalog import SEPARATOR_ENV, load_catalog
from sandbox.catalog.conform import load_frame
from sandbox.cli import app
from sandbox.cli_support import FLOWER_LOGGERS

MANIFEST = """\
name: {name}
title: Working hours
department: Labour bureau
file: {name}.csv
classification: 内部
separator: ","
privacy_unit:
  max_rows: 1
columns:
  - {{name: hours_per_week, source: hours-per-week, type: int, bounds: [0, 100]}}
  - {{name: marital_status, source: marital status, type: string,
      categories: [married, single]}}
"""


def _catalog(root: Path, name: str, sep: str) -> Path:
    root.mkdir()
    (root / f"{name}.yaml").write_text(MANIFEST.format(name=name), encoding="utf-8")
    rows = [f"{20 + i % 40}{sep}{'married' if i % 3 else 'single'}" for i in range(60)]
    text = "\n".join([f"hours-per-week{sep}marital status", *rows]) + "\n"
    (root / f"{name}.csv").write_text(text, encoding="utf-8")
    return root


def _run(*argv: str) -> Any:
    return CliRunner().invoke(app, list(argv))


@pytest.mark.parametrize(("name", "sep"), [("semi", ";"), ("pipe", "|")])
def test_separator_overrides_the_manifest_for_check_query_datasets_and_mock(
    tmp_path: Path, name: str, sep: str
) -> None:
    catalog = str(_catalog(tmp_path / "catalog", name, sep))
    wrong = _run("check", "--catalog", catalog)  # the manifest's "," finds no such columns
    assert wrong.exit_code == 2
    done = _run("check", "--catalog", catalog, "--separator", sep)
    assert done.exit_code == 0 and f"ok: {name}" in done.output, done.output
    sql = f"SELECT marital_status, COUNT(*) AS n FROM {name} GROUP BY marital_status"
    answered = _run("query", sql, "--epsilon", "1", "--catalog", catalog, "--separator", sep)
    assert answered.exit_code == 0, answered.output
    assert "married" in answered.output and "single" in answered.output
    listed = _run("datasets", "--catalog", catalog, "--separator", sep, "--json")
    assert json.loads(listed.output)[0]["separator"] == sep
    out = tmp_path / "mock.csv"
    mocked = _run("mock", name, "--catalog", catalog, "--separator", sep, "--out", str(out))
    assert mocked.exit_code == 0 and out.exists(), mocked.output
    frame = load_frame(load_catalog(catalog, sep)[name])
    assert frame.columns == ["hours_per_week", "marital_status"] and frame.height == 60


@pytest.mark.parametrize("bad", ["", ";;", '"', "\n", "comma"])
def test_a_bad_separator_is_refused_in_one_line(tmp_path: Path, bad: str) -> None:
    catalog = str(_catalog(tmp_path / "catalog", "semi", ";"))
    for argv in (
        ["check", "--catalog", catalog],
        ["query", "SELECT COUNT(*) AS n FROM semi", "--epsilon", "1", "--catalog", catalog],
        ["datasets", "--catalog", catalog],
        ["mock", "semi", "--catalog", catalog, "--out", str(tmp_path / "m.csv")],
    ):
        result = _run(*argv, "--separator", bad)
        assert result.exit_code == 2, (argv, result.output)
        assert "--separator takes one character" in result.output
        assert "Traceback" not in result.output


def test_separator_needs_a_local_catalog() -> None:
    result = _run("datasets", "--separator", ";")
    assert result.exit_code == 2 and "give --catalog" in result.output


def test_tab_by_name() -> None:
    from sandbox.catalog import check_separator

    assert check_separator("tab") == check_separator("\\t") == "\t"


def test_node_serve_reads_the_catalog_with_the_separator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sandbox.node.server as server

    monkeypatch.setenv(SEPARATOR_ENV, "")  # restored (unset) after the test
    catalog = _catalog(tmp_path / "catalog", "pipe", "|")
    seen: list[int] = []

    def serve(catalog_dir: Path, *args: Any, **kwargs: Any) -> None:
        seen.append(load_frame(load_catalog(catalog_dir)["pipe"]).height)  # as the node does

    monkeypatch.setattr(server, "serve", serve)
    for name in FLOWER_LOGGERS:  # node serve sends them to STATE/logs/flower.log
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", logger.handlers[:])
        monkeypatch.setattr(logger, "propagate", logger.propagate)
    state = str(tmp_path / "state")
    common = ["--catalog", str(catalog), "--authority-key", "a.pem", "--state", state]
    common.append("--insecure")
    refused = _run("node", "serve", *common, "--separator", "||")
    assert refused.exit_code == 2 and "--separator takes one character" in refused.output
    assert not seen and not os.environ.get(SEPARATOR_ENV)
    served = _run("node", "serve", *common, "--separator", "|")
    assert served.exit_code == 0, served.output
    assert seen == [60] and os.environ[SEPARATOR_ENV] == "|"  # the SuperNodes inherit it
    assert (tmp_path / "state" / "logs" / "flower.log").exists()
