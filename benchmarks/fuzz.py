"""Fuzz the governed paths with generated hostile and careless input; print one JSON object.

    python -m benchmarks.fuzz --json                 # 10,000 inputs, seed 0, 2 workers
    python -m benchmarks.fuzz --inputs 300 --seed 7  # a short run, with a table
    python -m benchmarks.fuzz --seed 0 --only 1234   # re-run one input, full traceback

Inputs (see benchmarks/fuzz_inputs.py): SQL over the PUMS catalog and a small generated
catalog, training job specs, grant dicts, grant files and dataset policies, and ``sandbox``
command lines. Each runs in a child process (benchmarks/fuzz_worker.py) through the governed
entry points against a real policy authority. The counts that must all be zero:

* ``crashes``: a child process died (a signal such as SIGSEGV, or an exit) while running an
  input; the rest of its batch is re-run in a new child;
* ``undocumented_exceptions``: an exception escaped an entry point that is not one of the
  project's documented errors (``SandboxError``, ``PolicyError``, ``FederationError``), or a
  CLI run printed a traceback or more than one error line;
* ``budget_spent_on_refusals``: an input was refused (an exception escaped) and the spent
  epsilon or delta of some account of the fuzzing grants or their datasets changed;
* ``log_gaps``: at the end, a reservation in the ledger without its log entries (the
  reservation and one release or refund), a release or refund entry without its reservation
  in that state, or a reservation left pending by a process that did not die.

``hangs`` (an input that made no progress for ``--hang-seconds``) are reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PUMS = ROOT / "examples" / "pums"


def _prepare(workdir: Path, seed: int) -> tuple[Path, dict[str, Any]]:
    """Generate the small catalog; return it and the metadata the generators need."""
    from benchmarks.fuzz_inputs import catalog_meta, column_kind
    from sandbox.catalog import load_catalog
    from sandbox.generate import generate

    generated = workdir / "generated"
    generate(generated, rows=3000, seed=seed)
    broken = broken_catalog(workdir / "broken")
    catalogs = {
        "pums": load_catalog(PUMS),
        "generated": load_catalog(generated),
        "broken": load_catalog(broken),
    }
    meta = {name: catalog_meta(cat) for name, cat in catalogs.items()}
    enterprise = [m for m in catalogs["generated"] if m.name.endswith("_enterprise")]
    first = enterprise[0]
    features = [c.name for c in first.columns if c.role != "identifier" and c.name != "default"]
    training = {
        "nodes": [m.name for m in enterprise],
        "features": features,
        "categorical": {
            c.name: len(c.categories) for c in first.columns if c.categories and c.name in features
        },
        "label": "default",
        "identifier": next(c.name for c in first.columns if c.role == "identifier"),
    }
    grantable = {
        m.name: [c.name for c in m.columns if column_kind(c) != "ident"]
        for cat in catalogs.values()
        for m in cat
    }
    return workdir, {"meta": meta, "training": training, "grantable": grantable}


def broken_catalog(out: Path) -> Path:
    """PUMS twice, with rows that break the manifest: ages of 987 and -3, a sex of 7, an
    income of -43217, missing values; once with ``out_of_bounds: refuse``, once ``clamp``.
    The worker looks for 987 and 43217 in error messages (no raw value may appear there)."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    lines = (PUMS / "pums.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    rows[0] = "987,1,9,1,0,1"
    rows[1] = "-3,7,1,3,17000,0"
    rows[2] = "40,1,9,1,-43217,1"
    rows[3] = "40,,9,1,,1"
    manifest = yaml.safe_load((PUMS / "pums.yaml").read_text())
    for policy in ("refuse", "clamp"):
        name = f"pums_broken_{policy}"
        (out / f"{name}.csv").write_text("\n".join([header, *rows]) + "\n")
        doc = {**manifest, "name": name, "file": f"{name}.csv", "out_of_bounds": policy}
        (out / f"{name}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return out


class Lane:
    """One sequence of inputs run by successive child processes (a new one after a death)."""

    def __init__(self, number: int, items: list[dict[str, Any]], workdir: Path, args: Any):
        self.number = number
        self.items = items
        self.workdir = workdir
        self.args = args
        self.runs = 0
        self.fruitless = 0
        self.results: dict[int, dict[str, Any]] = {}
        self.states: list[tuple[Path, bool]] = []
        self.setup_errors: list[dict[str, Any]] = []
        self.proc: subprocess.Popen | None = None
        self.done = not items

    def _remaining(self) -> list[dict[str, Any]]:
        return [x for x in self.items if x["index"] not in self.results]

    def start(self, generated: Path) -> None:
        rest = self._remaining()
        if not rest:
            self.done = True
            return
        self.runs += 1
        run_dir = self.workdir / f"lane{self.number}-run{self.runs}"
        run_dir.mkdir(parents=True)
        batch = run_dir / "batch.pkl"
        batch.write_bytes(pickle.dumps(rest))
        self.out = run_dir / "results.jsonl"
        self.out.touch()
        self.run_dir = run_dir
        self.last_size, self.last_change = 0, time.monotonic()
        self.stderr = open(run_dir / "stderr.txt", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.fuzz_worker",
                "run",
                str(batch),
                str(self.out),
                str(run_dir),
                str(PUMS),
                str(generated / "generated"),
                str(generated / "broken"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def _read(self) -> int | None:
        """Record finished results; return the index started but not finished, if any."""
        started = None
        for line in self.out.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by the death
            if "setup_error" in record:
                self.setup_errors.append(record)
            elif "start" in record:
                started = record["start"]
            elif "i" in record:
                self.results[record["i"]] = record
                if started == record["i"]:
                    started = None
        return started

    def poll(self, generated: Path) -> None:
        if self.done or self.proc is None:
            return
        code = self.proc.poll()
        if code is None:
            size = self.out.stat().st_size
            if size != self.last_size:
                self.last_size, self.last_change = size, time.monotonic()
            elif time.monotonic() - self.last_change > (
                self.args.hang_seconds if size else max(180.0, self.args.hang_seconds)
            ):  # a child's set-up (imports, datasets, grants) is not an input's hang
                self.proc.kill()
                self.proc.wait()
                self._finish(code=None, hung=True, generated=generated)
            return
        self._finish(code=code, hung=False, generated=generated)

    def _finish(self, code: int | None, hung: bool, generated: Path) -> None:
        self.stderr.close()
        started = self._read()
        # Pending reservations are excused only where a child died in the middle of an input.
        self.states.append((self.run_dir / "state", started is not None))
        died = hung or code != 0
        if started is None and not self._remaining():
            self.done = True  # every input has its result (a slow exit is not a failure)
            return
        if self.setup_errors and not self.results and started is None:
            self.done = True  # the environment itself cannot be set up: nothing more to try
            return
        if started is not None:
            self.fruitless = 0
            if hung:
                record = {"outcome": "hang", "entry": "(no progress)", "i": started}
            else:
                tail = (self.run_dir / "stderr.txt").read_bytes()[-600:].decode("utf-8", "replace")
                record = {
                    "outcome": "crash",
                    "entry": "(process)",
                    "exit": code,
                    "signal": -code if code is not None and code < 0 else None,
                    "stderr_tail": tail,
                    "i": started,
                }
            self.results[started] = record
        elif died:
            self.setup_errors.append(
                {"setup_error": f"worker {'hung' if hung else f'exited {code}'} between inputs"}
            )
            self.fruitless += 1
            if self.fruitless >= 3:
                self.done = True  # three children in a row ran nothing: give up on this lane
                return
        self.proc = None
        self.start(generated)


def _check_states(states: list[tuple[Path, bool]], workers: int) -> list[dict[str, Any]]:
    reports = []
    pending = list(states)
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < workers:
            state, crashed = pending.pop(0)
            if not state.exists():
                continue
            cmd = [sys.executable, "-m", "benchmarks.fuzz_worker", "check", str(state)]
            running.append(
                subprocess.Popen(
                    [*cmd, "--crashed"] if crashed else cmd,
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        if not running:
            continue
        proc = running.pop(0)
        out, _ = proc.communicate()
        try:
            reports.append(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            reports.append({"check_error": f"check exited {proc.returncode} without a report"})
    return reports


def _describe(x: dict[str, Any]) -> Any:
    """The input as shown in a report (long strings cut)."""
    from benchmarks.fuzz_worker import short

    shown = {k: v for k, v in x.items() if k not in ("index",)}
    return short(shown, 600)


def summarize(
    inputs: list[dict[str, Any]],
    results: dict[int, dict[str, Any]],
    checks: list[dict[str, Any]],
    setup_errors: list[dict[str, Any]],
    seconds: float,
    seed: int,
) -> dict[str, Any]:
    by_index = {x["index"]: x for x in inputs}
    families: dict[str, Counter[str]] = defaultdict(Counter)
    failures: dict[tuple[str, ...], dict[str, Any]] = {}
    spent_examples: list[dict[str, Any]] = []
    slowest: list[tuple[float, int]] = []
    multiline = rule_errors = raw_values = 0
    raw_value_examples: list[dict[str, Any]] = []
    rule_error_examples: list[dict[str, Any]] = []
    multiline_examples: list[dict[str, Any]] = []
    for i, record in results.items():
        x = by_index[i]
        outcome = record["outcome"]
        families[x["family"]][outcome] += 1
        families[x["family"]]["inputs"] += 1
        slowest.append((record.get("seconds", 0.0), i))
        if record.get("multiline_message"):
            multiline += 1
            if len(multiline_examples) < 3:
                multiline_examples.append(
                    {
                        "index": i,
                        "exc_type": record.get("exc_type"),
                        "message": record.get("message"),
                        "input": _describe(x)[:300],
                    }
                )
        if record.get("raw_value_in_error"):
            raw_values += 1
            if len(raw_value_examples) < 3:
                raw_value_examples.append(
                    {"index": i, "message": record.get("message"), "input": _describe(x)[:300]}
                )
        if record.get("rule_error"):
            rule_errors += 1
            if len(rule_error_examples) < 3:
                rule_error_examples.append(
                    {"index": i, "message": record.get("message"), "input": _describe(x)[:300]}
                )
        if record.get("spent_on_refusal"):
            families[x["family"]]["spent_on_refusal"] += 1
            if len(spent_examples) < 10:
                spent_examples.append(
                    {
                        "index": i,
                        "accounts": record["spent_on_refusal"],
                        "entry": record.get("entry"),
                        "exc_type": record.get("exc_type"),
                        "input": _describe(x),
                    }
                )
        if outcome in ("undocumented", "crash", "hang", "violation"):
            key = (
                outcome,
                x["family"],
                record.get("entry", "?"),
                record.get("exc_type", f"signal {record.get('signal')}"),
                record.get("where", "?"),
            )
            shown = _describe(x)
            known = failures.get(key)
            if known is None or len(shown) < len(known["input"]):
                failures[key] = {
                    "kind": outcome,
                    "family": x["family"],
                    "variant": x.get("variant"),
                    "entry": key[2],
                    "exc_type": key[3],
                    "where": key[4],
                    "message": record.get("message") or record.get("stderr_tail"),
                    "frames": record.get("frames"),
                    "index": i,
                    "input": shown,
                    "count": (known or {}).get("count", 0),
                }
            failures[key]["count"] += 1
    total = Counter()
    for counts in families.values():
        total.update(counts)
    slowest.sort(reverse=True)
    return {
        "inputs": len(results),
        "crashes": total["crash"],
        "undocumented_exceptions": total["undocumented"],
        "budget_spent_on_refusals": total["spent_on_refusal"],
        "log_gaps": sum(c.get("log_gaps", 0) for c in checks)
        + sum(1 for c in checks if "check_error" in c),
        "hangs": total["hang"],
        "policy_violations": total["violation"],
        "refused": total["refused"],
        "released_or_accepted": total["ok"],
        "not_applicable": total["not_applicable"],
        "refusals_with_multiline_message": multiline,
        "multiline_message_examples": multiline_examples,
        "denials_by_policy_engine_error": rule_errors,
        "raw_values_in_errors": raw_values,
        "raw_value_examples": raw_value_examples,
        "policy_engine_error_examples": rule_error_examples,
        "inputs_generated": len(inputs),
        "seed": seed,
        "seconds": round(seconds, 1),
        "families": {name: dict(counts) for name, counts in sorted(families.items())},
        "distinct_failures": sorted(failures.values(), key=lambda f: -f["count"]),
        "spent_on_refusal_examples": spent_examples,
        "log_checks": checks,
        "slowest_inputs": [
            {
                "index": i,
                "seconds": s,
                "family": by_index[i]["family"],
                "input": _describe(by_index[i])[:200],
            }
            for s, i in slowest[:5]
        ],
        "setup_errors": setup_errors,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.fuzz_inputs import generate_inputs

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="sandbox-fuzz-"))
    try:
        catalogs, info = _prepare(workdir, args.seed)
        wanted = set(args.family or ())
        inputs = generate_inputs(
            args.inputs,
            args.seed,
            info["meta"],
            info["training"],
            info["grantable"],
            subprocesses=args.subprocesses,
            families=lambda name: not wanted or name in wanted,
        )
        chosen = inputs
        if args.only is not None:
            chosen = [x for x in inputs if x["index"] == args.only]
            os.environ["FUZZ_FULL_TRACEBACK"] = "1"
        lanes = [Lane(n, chosen[n :: args.workers], workdir, args) for n in range(args.workers)]
        for lane in lanes:
            lane.start(catalogs)
        while not all(lane.done for lane in lanes):
            time.sleep(0.2)
            for lane in lanes:
                lane.poll(catalogs)
        results: dict[int, dict[str, Any]] = {}
        states, setup_errors = [], []
        for lane in lanes:
            results.update(lane.results)
            states.extend(lane.states)
            setup_errors.extend(lane.setup_errors)
        checks = _check_states(states, args.workers)
        report = summarize(
            chosen, results, checks, setup_errors, time.perf_counter() - started, args.seed
        )
        if args.only is not None:
            report["input"] = {k: v for k, v in chosen[0].items()} if chosen else None
            report["result"] = results.get(args.only)
        return report
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['inputs']:,} inputs in {report['seconds']} s (seed {report['seed']})",
        f"  crashes                   {report['crashes']}",
        f"  undocumented exceptions   {report['undocumented_exceptions']}",
        f"  budget spent on refusals  {report['budget_spent_on_refusals']}",
        f"  log gaps                  {report['log_gaps']}",
        f"  hangs                     {report['hangs']}",
        f"  policy violations         {report['policy_violations']}",
        "",
        f"{'family':<16}{'inputs':>8}{'ok':>8}{'refused':>9}{'undoc':>7}{'crash':>7}",
    ]
    for name, c in report["families"].items():
        lines.append(
            f"{name:<16}{c.get('inputs', 0):>8}{c.get('ok', 0):>8}{c.get('refused', 0):>9}"
            f"{c.get('undocumented', 0):>7}{c.get('crash', 0):>7}"
        )
    for f in report["distinct_failures"]:
        lines.append(
            f"\n[{f['count']}x {f['kind']}] {f['family']} -> {f['entry']}: {f['exc_type']} "
            f"at {f['where']}\n    {f['message']}\n    e.g. input #{f['index']}: {f['input'][:300]}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs to generate")
    parser.add_argument("--seed", type=int, default=0, help="generation seed (reproducible)")
    parser.add_argument("--workers", type=int, default=2, help="child processes at a time")
    parser.add_argument("--subprocesses", type=int, default=6, help="CLI runs as real processes")
    parser.add_argument("--hang-seconds", type=float, default=90.0, help="no progress: a hang")
    parser.add_argument(
        "--family",
        action="append",
        choices=["sql", "job", "grant", "cli"],
        help="only these families (repeatable)",
    )
    parser.add_argument("--only", type=int, help="run only the input with this index")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    report = run(args)
    print(json.dumps(report, indent=2, default=str) if args.json else _table(report))
    return 2 if report["setup_errors"] and not report["inputs"] else 0


if __name__ == "__main__":
    sys.exit(main())
