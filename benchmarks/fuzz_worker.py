"""The fuzzer's child process: runs a batch of inputs through the governed paths.

    python -m benchmarks.fuzz_worker run BATCH.pkl RESULTS.jsonl WORKDIR PUMS GENERATED BROKEN
    python -m benchmarks.fuzz_worker check STATE_DIR [--crashed]

``run`` sets up a policy authority in ``WORKDIR/state`` (datasets registered, grants for the
fuzzing firm), then for each input writes ``{"start": i}`` and, once it returns, one result
line. If the process dies on an input, the parent sees a start with no result. ``check``
compares the ledger with the transparency log of a state directory and prints one JSON line.

Entry points called (each one counts as the place an exception escapes from):

* ``QueryService.query`` (SQL over PUMS or the generated catalog);
* ``JobSpec.parse`` then ``TrainingService.train``, with Flower's simulation call replaced by
  a no-op: every check, decision, reservation and commit of the real path runs, the nodes
  train nothing (the job ends as "aborted" and is charged what was reserved);
* ``Grant.parse`` / ``load_grant_file`` then ``Authority.create_grant`` and
  ``Authority.revoke_grant``; ``DatasetPolicy.parse`` then ``Authority.register_dataset``;
  after each, a canary query of another firm must still be answered;
* the ``sandbox`` Typer app through ``CliRunner`` (and real subprocesses).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import subprocess
import sys
import time
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.fuzz_inputs import FIRM, PURPOSE, column_kind

CANARY_FIRM = "canary-firm"
CANARY_PURPOSE = "isolation canary"
QUERY_GRANT, FILTER_GRANT = "fz-query", "fz-filter"
TRAIN_GRANT, CANARY_GRANT = "fz-train", "fz-canary"
DELTA_CAP = 1e-4
#: Values planted in the broken catalog's rows (benchmarks.fuzz.broken_catalog).
PLANTED_VALUES = ("987", "43217")
#: The budget of the fuzzing grants: large, so that valid inputs rarely exhaust it (when one
#: does, the refusal is legitimate and costs nothing like any other).
EPSILON_TOTAL = 1e5
EPSILON_PER_USE = 100.0
EPSILON_DATASET = 1e6


def documented_types() -> tuple[type[BaseException], ...]:
    from federation.errors import FederationError
    from policies.errors import PolicyError
    from sandbox.errors import SandboxError

    return (SandboxError, PolicyError, FederationError)


def short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def frames(exc: BaseException, count: int = 4) -> list[str]:
    """The innermost frames of ``exc`` as ``path:line function``, paths relative to the repo."""
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    out = []
    for frame in traceback.extract_tb(exc.__traceback__)[-count:]:
        out.append(f"{frame.filename.replace(root, '')}:{frame.lineno} {frame.name}")
    return out


def product_frame(exc: BaseException) -> str:
    """The innermost frame inside the product (sandbox/, policies/, federation/)."""
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    found = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename.replace(root, "")
        if name.split(os.sep)[0] in ("sandbox", "policies", "federation"):
            found = f"{name}:{frame.name}"
    return found


class Env:
    """The governed services of one worker, over one state directory."""

    def __init__(self, workdir: Path, pums: Path, generated: Path, broken: Path) -> None:
        from policies.authority import Authority
        from sandbox.catalog import load_catalog
        from sandbox.service import QueryService

        self.workdir = workdir
        self.tmp = workdir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.state = workdir / "state"
        self.catalog_dirs = {"pums": pums, "generated": generated, "broken": broken}
        self.catalogs = {name: load_catalog(path) for name, path in self.catalog_dirs.items()}
        self.authority = Authority(self.state)
        self._register()
        self.services = {
            name: QueryService(cat, self.authority) for name, cat in self.catalogs.items()
        }
        self.accounts = [
            (grant_id, dataset)
            for grant_id, datasets in self.grants.items()
            for dataset in datasets
        ]
        self._patch_training()
        self._cli_files()

    def _register(self) -> None:
        from policies.grants import Grant
        from sandbox.service import dataset_policy

        now = datetime.now(UTC)
        query_terms, filter_terms, train_terms = {}, {}, {}
        for catalog in self.catalogs.values():
            for manifest in catalog:
                self.authority.register_dataset(
                    dataset_policy(manifest, epsilon_cap=EPSILON_DATASET, delta_cap=DELTA_CAP)
                )
                rules = {"*": "aggregate_only"}
                for spec in manifest.columns:
                    kind = column_kind(spec)
                    if kind == "key":
                        rules[spec.name] = "group_by"
                    elif kind == "num":
                        rules[spec.name] = "aggregate_only"
                    elif kind == "other":
                        rules[spec.name] = "filter_only"
                query_terms[manifest.name] = {
                    "epsilon": EPSILON_TOTAL,
                    "delta": DELTA_CAP,
                    "columns": rules,
                }
                # A second grant lets the same firm filter on the numeric columns (one rule per
                # column and grant), so hostile conditions on them reach the engine.
                filter_terms[manifest.name] = {
                    **query_terms[manifest.name],
                    "columns": {
                        name: "filter_only" if rule == "aggregate_only" and name != "*" else rule
                        for name, rule in rules.items()
                    },
                }
                if manifest.name.endswith("_enterprise"):
                    train_terms[manifest.name] = {
                        "epsilon": EPSILON_TOTAL,
                        "delta": DELTA_CAP,
                        "columns": {
                            s.name: "aggregate_only"
                            for s in manifest.columns
                            if s.role != "identifier"
                        },
                    }
        common = {
            "legal_basis": "PIPL art. 13(1)",
            "min_group_size": 1,
            "valid_from": now - timedelta(days=1),
            "valid_until": now + timedelta(days=365),
            "approved_by": "official-1",
            "epsilon_per_use": EPSILON_PER_USE,
        }
        grants = [
            Grant(
                grant_id=QUERY_GRANT,
                firm=FIRM,
                purpose=PURPOSE,
                datasets=query_terms,
                actions={"query"},
                **common,
            ),
            Grant(
                grant_id=FILTER_GRANT,
                firm=FIRM,
                purpose=PURPOSE,
                datasets=filter_terms,
                actions={"query"},
                **common,
            ),
            Grant(
                grant_id=TRAIN_GRANT,
                firm=FIRM,
                purpose=PURPOSE,
                datasets=train_terms,
                actions={"train"},
                models={"logreg", "mlp"},
                **common,
            ),
            Grant(
                grant_id=CANARY_GRANT,
                firm=CANARY_FIRM,
                purpose=CANARY_PURPOSE,
                datasets={"pums": query_terms["pums"]},
                actions={"query"},
                **common,
            ),
        ]
        self.grants = {}
        for grant in grants:
            self.authority.create_grant(grant)
            self.grants[grant.grant_id] = tuple(grant.datasets)

    @staticmethod
    def _patch_training() -> None:
        """Flower's run becomes a no-op (the nodes train nothing; every check still runs), and
        the accountant's pure functions (noise calibration, epsilon of a step count) are
        memoized, so each distinct job shape costs its calibration once."""
        import federation.accounting as accounting
        import federation.simulation as simulation

        def no_flower(**_: Any) -> None:
            return None

        simulation.flwr_run_simulation = no_flower
        for name in ("get_noise_multiplier", "dpsgd_epsilon", "calibrate_noise_multiplier"):
            pure = getattr(accounting, name, None)
            if pure is not None and not hasattr(pure, "cache_info"):
                setattr(accounting, name, functools.lru_cache(maxsize=4096)(pure))

    def _cli_files(self) -> None:
        from cryptography.hazmat.primitives import serialization

        self.file = self.tmp / "a-file"
        self.file.write_text("not a directory\n")
        self.garbage = self.tmp / "garbage.bin"
        self.garbage.write_bytes(b"\x00\xff{[garbage\n" * 10)
        self.export = self.tmp / "export.jsonl"
        head = self.authority.export(self.export)
        self.head = self.tmp / "head.json"
        self.head.write_text(json.dumps(head.to_json()))
        self.tamper = self.tmp / "tamper.jsonl"
        lines = self.export.read_bytes().splitlines(keepends=True)
        if len(lines) > 2:
            lines[1] = lines[1].replace(b"fuzz", b"fuzZ")
        self.tamper.write_bytes(b"".join(lines))
        self.pubkey = self.tmp / "authority.pub"
        self.pubkey.write_bytes(
            self.authority.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    # -- the budget -----------------------------------------------------------------------

    def spent(self) -> dict[tuple[str, str], tuple[float, ...]]:
        """Spent epsilon and delta of every account of the fuzzing grants and datasets."""
        out = {}
        for grant_id, dataset in self.accounts:
            rem = self.authority.remaining(grant_id, dataset)
            out[(grant_id, dataset)] = (
                rem.grant.epsilon_spent,
                rem.grant.delta_spent,
                rem.dataset.epsilon_spent,
                rem.dataset.delta_spent,
            )
        return out

    def canary(self) -> None:
        """A query of another firm: a bad grant or dataset must not break anyone else."""
        self.services["pums"].query(
            CANARY_FIRM, CANARY_PURPOSE, "SELECT COUNT(*) FROM pums", 0.01, 0.0
        )

    # -- the families ---------------------------------------------------------------------

    def run_sql(self, x: dict[str, Any]) -> tuple[str, Any]:
        service = self.services[x["catalog"]]
        options = {k: x[k] for k in ("grant_id", "min_group_size") if k in x}

        def query() -> None:
            result = service.query(
                x["firm"], x["purpose"], x["sql"], x["epsilon"], x["delta"], **options
            )
            # Deny by default: only the fuzzing firm holds query grants here.
            if x["firm"] != FIRM or result.grant_id not in (QUERY_GRANT, FILTER_GRANT):
                raise PolicyViolation(f"released to {x['firm']!r} under {result.grant_id!r}")

        return "QueryService.query", query

    def run_job(self, x: dict[str, Any]) -> list[tuple[str, Any]]:
        from federation.job import JobSpec
        from sandbox.training import TrainingService

        holder: dict[str, Any] = {}

        def parse() -> None:
            holder["spec"] = JobSpec.parse(x["spec"])

        def train() -> None:
            TrainingService(self.catalogs["generated"], self.authority).train(
                x["firm"], x["purpose"], holder["spec"]
            )

        return [("JobSpec.parse", parse), ("TrainingService.train", train)]

    def run_grant(self, x: dict[str, Any]) -> list[tuple[str, Any]]:
        from policies.datasets import DatasetPolicy
        from policies.grants import Grant

        holder: dict[str, Any] = {}
        if x["variant"] == "revoke":  # never one of the fuzzing grants: hostile or unknown ids

            def revoke_unknown() -> None:
                self.authority.revoke_grant(x["grant_id"], x["revoked_by"], x["reason"])

            return [("Authority.revoke_grant", revoke_unknown), ("canary query", self.canary)]
        if x["variant"] == "dataset":

            def parse_policy() -> None:
                parse = getattr(DatasetPolicy, "parse", DatasetPolicy.model_validate)
                holder["policy"] = parse(x["policy"])

            def register() -> None:
                self.authority.register_dataset(holder["policy"])

            return [
                ("DatasetPolicy.parse", parse_policy),
                ("Authority.register_dataset", register),
                ("canary query", self.canary),
            ]
        if x["variant"] == "file":
            path = self.tmp / f"grant-{x['index']}.{'json' if x['format'] == 'json' else 'yaml'}"
            if "text" in x:
                text = x["text"]
            elif x["format"] == "json":
                text = json.dumps(x["grant"], default=str)
            else:
                import yaml

                text = yaml.safe_dump(json.loads(json.dumps(x["grant"], default=str)))
            path.write_bytes(text.encode("utf-8", "surrogatepass"))

            def parse() -> None:
                from policies import grants

                load = getattr(grants, "load_grant_file", None)
                if load is None:
                    raise _NotApplicable("no grant file loader")
                holder["grant"] = load(path)

        else:

            def parse() -> None:
                holder["grant"] = getattr(Grant, "parse", Grant.model_validate)(x["grant"])

        def create() -> None:
            holder["created"] = self.authority.create_grant(holder["grant"])

        def revoke() -> None:
            self.authority.revoke_grant(holder["created"].grant_id, "official-1", "fuzzing")

        return [
            ("Grant.parse", parse),
            ("Authority.create_grant", create),
            ("Authority.revoke_grant", revoke),
            ("canary query", self.canary),
        ]

    def argv(self, x: dict[str, Any]) -> list[str]:
        places = {
            "{pums}": str(self.catalog_dirs["pums"]),
            "{generated}": str(self.catalog_dirs["generated"]),
            "{broken}": str(self.catalog_dirs["broken"]),
            "{state}": str(self.state),
            "{missing}": str(self.tmp / "missing"),
            "{file}": str(self.file),
            "{tmp}": str(self.tmp / f"cli-{x['index']}"),
            "{garbage}": str(self.garbage),
            "{export}": str(self.export),
            "{tamper}": str(self.tamper),
            "{pubkey}": str(self.pubkey),
            "{head}": str(self.head),
        }
        (self.tmp / f"cli-{x['index']}").mkdir(exist_ok=True)
        out = []
        for arg in x["argv"]:
            for key, value in places.items():
                arg = arg.replace(key, value)
            out.append(arg)
        return out

    def run_cli(self, x: dict[str, Any]) -> dict[str, Any]:
        from typer.testing import CliRunner

        from sandbox.cli import app

        argv = self.argv(x)
        result = CliRunner().invoke(app, argv, catch_exceptions=True)
        return cli_verdict(result.exit_code, result.stdout, result.stderr, result.exception)

    def run_cli_subprocess(self, x: dict[str, Any]) -> dict[str, Any]:
        # Raw bytes, as a shell would pass them: a lone surrogate becomes invalid UTF-8.
        argv = [a.replace("\x00", "").encode("utf-8", "surrogatepass") for a in self.argv(x)]
        proc = subprocess.run(
            [os.fsencode(sys.executable), b"-m", b"sandbox", *argv],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=120,
            cwd=self.tmp,
            env={**os.environ, "SANDBOX_STATE": str(self.state)},
        )
        if proc.returncode < 0:
            return {"outcome": "crash", "signal": -proc.returncode, "entry": "sandbox (process)"}
        return cli_verdict(proc.returncode, proc.stdout, proc.stderr, None)


class PolicyViolation(Exception):
    """A governed path released what no grant allows."""


class _NotApplicable(Exception):
    """The product has no entry point for this input yet."""


def cli_verdict(code: int, stdout: str, stderr: str, exc: BaseException | None) -> dict[str, Any]:
    """Classify one CLI run: a clean exit, a usage error, one error line, or undocumented."""
    out: dict[str, Any] = {"entry": "sandbox (CLI)", "exit_code": code}
    if exc is not None and not isinstance(exc, SystemExit):
        out.update(
            outcome="undocumented",
            exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=short(str(exc), 200),
            frames=frames(exc),
            where=product_frame(exc),
        )
        return out
    text = (stderr or "") + (stdout or "")
    if "Traceback (most recent call last)" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        out.update(
            outcome="undocumented",
            exc_type=last.split(":")[0][:120],
            message=short(last, 200),
            frames=[],
            where="?",
        )
        return out
    if code == 0:
        out["outcome"] = "ok"
        return out
    usage = "Usage:" in text or "No such command" in text or "Try '" in text
    errors = [line for line in (stderr or "").strip().splitlines() if line.strip()]
    out["outcome"] = "refused"
    out["exc_type"] = "usage error" if usage else "error exit"
    if not usage and len(errors) != 1:
        out.update(
            outcome="undocumented",
            exc_type=f"CLI exit {code} with {len(errors)} error lines",
            message=short("\n".join(errors[-3:]), 200),
            frames=[],
            where="?",
        )
    return out


def run_one(env: Env, x: dict[str, Any]) -> dict[str, Any]:
    """Run one input; classify what escaped; check that a refusal spent nothing."""
    documented = documented_types()
    family = x["family"]
    if family == "cli":
        return env.run_cli(x)
    if family == "cli_subprocess":
        try:
            return env.run_cli_subprocess(x)
        except subprocess.TimeoutExpired:
            return {"outcome": "hang", "entry": "sandbox (process)"}
    if family == "sql":
        steps = [env.run_sql(x)]
    elif family == "job":
        steps = env.run_job(x)
    else:
        steps = env.run_grant(x)
    before = env.spent()
    out: dict[str, Any] = {"outcome": "ok"}
    for entry, call in steps:
        try:
            call()
        except _NotApplicable as exc:
            out = {"outcome": "not_applicable", "entry": entry, "message": str(exc)}
            break
        except PolicyViolation as exc:
            out = {"outcome": "violation", "entry": entry, "message": short(str(exc), 200)}
            break
        except BaseException as exc:  # noqa: BLE001 - classifying is the point
            if isinstance(exc, KeyboardInterrupt):
                raise
            kind = "refused" if isinstance(exc, documented) else "undocumented"
            out = {
                "outcome": kind,
                "entry": entry,
                "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "message": short(str(exc), 200),
                "frames": frames(exc),
                "where": product_frame(exc),
            }
            if os.environ.get("FUZZ_FULL_TRACEBACK"):
                out["traceback"] = traceback.format_exception(exc)
            if kind == "refused" and "\n" in str(exc):
                out["multiline_message"] = True
            if x.get("catalog") == "broken" and any(
                v in str(exc) and v not in x["sql"] for v in PLANTED_VALUES
            ):
                out["raw_value_in_error"] = True  # a value of the rows leaked into the message
            if kind == "refused" and "rule-error" in str(exc):
                out["rule_error"] = True  # the policy engine failed, and denied by default
            break
    if out["outcome"] != "ok":
        try:
            after = env.spent()
        except BaseException as exc:  # noqa: BLE001
            out["spent_check_error"] = f"{type(exc).__name__}: {short(str(exc), 200)}"
            return out
        changed = {k for k in before if before[k] != after.get(k)}
        if changed:
            out["spent_on_refusal"] = sorted(f"{g}/{d}" for g, d in changed)[:5]
    return out


def run_batch(
    batch: Path, results: Path, workdir: Path, pums: Path, generated: Path, broken: Path
) -> int:
    items = pickle.loads(batch.read_bytes())
    with open(results, "a", buffering=1, encoding="utf-8") as sink:
        try:
            env = Env(workdir, pums, generated, broken)
        except BaseException as exc:  # noqa: BLE001
            sink.write(
                json.dumps(
                    {
                        "setup_error": f"{type(exc).__name__}: {short(str(exc), 500)}",
                        "frames": frames(exc, 8),
                    }
                )
                + "\n"
            )
            return 3
        for x in items:
            sink.write(json.dumps({"start": x["index"]}) + "\n")
            sink.flush()
            started = time.perf_counter()
            out = run_one(env, x)
            out["i"] = x["index"]
            out["seconds"] = round(time.perf_counter() - started, 4)
            sink.write(json.dumps(out, ensure_ascii=True, default=str) + "\n")
            sink.flush()
    return 0


# -- ledger against log -------------------------------------------------------------------------


def check_state(state: Path, crashed: bool) -> dict[str, Any]:
    """Every reservation has its log entries and every release/refund entry its reservation.

    Reservations still pending count as gaps, unless a process died in this state directory
    (then they are charged, by design, and counted as ``pending_after_crash``).
    """
    from policies.authority import Authority
    from policies.verify import verify_export

    authority = Authority(state)
    problems: Counter[str] = Counter()
    examples: list[str] = []

    def gap(kind: str, rid: str) -> None:
        problems[kind] += 1
        if len(examples) < 10:
            examples.append(f"{kind}: {rid}")

    everything = 10**9
    reservations = {r.reservation_id: r for r in authority.ledger.reservations()}
    logged = [
        e
        for e in authority.log.search(kind="reservation", limit=everything)
        if e.get("status", "reserved") == "reserved"
    ]
    logged_ids = Counter(e.get("reservation_id") for e in logged)
    releases = Counter(
        e.get("reservation_id") for e in authority.log.search(kind="release", limit=everything)
    )
    refunds = Counter(
        e.get("reservation_id") for e in authority.log.search(kind="refund", limit=everything)
    )
    pending_after_crash = 0
    for rid, r in reservations.items():
        state_name = str(getattr(r.state, "value", r.state))
        if logged_ids[rid] != 1:
            gap("reservation-without-one-log-entry", rid)
        if state_name == "committed" and releases[rid] != 1:
            gap("committed-without-one-release-entry", rid)
        if state_name == "refunded" and refunds[rid] != 1:
            gap("refunded-without-one-refund-entry", rid)
        if state_name == "reserved":
            if crashed:
                pending_after_crash += 1
            else:
                gap("reservation-left-pending", rid)
    for rid in logged_ids:
        if rid not in reservations:
            gap("reservation-entry-without-ledger-row", str(rid))
    for rid in releases:
        r = reservations.get(rid)
        if r is None or str(getattr(r.state, "value", r.state)) != "committed":
            gap("release-entry-without-committed-reservation", str(rid))
    for rid in refunds:
        r = reservations.get(rid)
        if r is None or str(getattr(r.state, "value", r.state)) != "refunded":
            gap("refund-entry-without-refunded-reservation", str(rid))
    audit = []
    try:
        audit = list(authority.ledger.audit())
    except Exception as exc:  # noqa: BLE001
        audit = [f"ledger audit failed: {type(exc).__name__}"]
    verify_error = None
    try:
        export = state.parent / "final-export.jsonl"
        authority.export(export)
        verify_export(export, authority.public_key)
    except Exception as exc:  # noqa: BLE001
        verify_error = f"{type(exc).__name__}: {short(str(exc), 200)}"
    return {
        "state": str(state),
        "reservations": len(reservations),
        "released": sum(1 for r in reservations.values() if str(r.state) == "committed"),
        "log_gaps": sum(problems.values()),
        "gap_kinds": dict(problems),
        "gap_examples": examples,
        "pending_after_crash": pending_after_crash,
        "ledger_audit_problems": audit[:10],
        "log_verify_error": verify_error,
        "log_size": authority.log.size if isinstance(authority.log.size, int) else None,
    }


def main(argv: list[str]) -> int:
    if argv[0] == "run":
        batch, results, workdir, pums, generated, broken = (Path(a) for a in argv[1:7])
        return run_batch(batch, results, workdir, pums, generated, broken)
    if argv[0] == "check":
        try:
            report = check_state(Path(argv[1]), crashed="--crashed" in argv)
        except Exception as exc:  # noqa: BLE001
            report = {
                "state": argv[1],
                "check_error": f"{type(exc).__name__}: {short(str(exc), 300)}",
                "frames": frames(exc, 6),
            }
        print(json.dumps(report, default=str))
        return 0
    raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
