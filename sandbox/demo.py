"""The embedded demo: four city departments, a bank, and a regulator on one machine.

1. Departments: synthetic registers for 济南, 青岛, 日照, 德州 are generated and catalogued;
   each dataset is registered with the policy authority with a dataset-wide budget cap.
2. A department official grants a bank (智慧金融) DP queries and DP training on the four
   enterprise registers, for one purpose, with column rules and budgets.
3. The bank browses the catalog and mock data, runs DP queries (values, 95% intervals, the
   privacy spent, a log index with an inclusion proof); requests outside its grant are denied.
4. The bank trains a credit-default model across the four cities with DP-SGD on each node;
   the whole job's cost is reserved before training and charged to the same ledger.
5. A regulator exports the transparency log and verifies it offline with the public key.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from policies.authority import Authority
from policies.grants import Grant
from sandbox.catalog import Catalog, load_catalog
from sandbox.errors import Denied, SandboxError
from sandbox.mock import mock_frame
from sandbox.service import QueryService, dataset_policy

CITIES = ("jinan", "qingdao", "rizhao", "dezhou")
FIRM = "qilu-credit-bank"
PURPOSE = "小微企业信贷风险评估 (SME credit risk assessment)"
FEATURES = (
    "industry",
    "employees",
    "registered_capital",
    "years_operating",
    "annual_revenue",
    "tax_paid",
    "tax_arrears_months",
    "insured_employees",
    "avg_contribution_base",
)


def _grants(now: datetime) -> list[Grant]:
    """One grant for DP queries, one for DP training: each column rule fits its use."""
    common: dict[str, Any] = {
        "firm": FIRM,
        "purpose": PURPOSE,
        "legal_basis": "数据安全法 第38条; 个人信息保护法 第13条 (contract / statutory duty)",
        "min_group_size": 10,
        "valid_from": now - timedelta(hours=1),
        "valid_until": now + timedelta(days=90),
        "approved_by": "山东省大数据局 数据资源处 (official 0371)",
    }
    query_columns = {
        "*": "aggregate_only",
        "default": "aggregate_only",
        "tax_paid": "aggregate_only",
        "industry": "group_by",
        "tax_arrears_months": "group_by",
    }
    train_columns = {f: "aggregate_only" for f in (*FEATURES, "default")}
    enterprise = [f"{city}_enterprise" for city in CITIES]
    query = {
        "grant_id": "G-2026-0001-Q",
        "datasets": {
            d: {"epsilon": 8.0, "delta": 1e-4, "columns": query_columns} for d in enterprise
        },
        "actions": ["query"],
        "epsilon_per_use": 4.0,
    }
    train = {
        "grant_id": "G-2026-0001-T",
        "datasets": {
            d: {"epsilon": 4.0, "delta": 1e-4, "columns": train_columns} for d in enterprise
        },
        "actions": ["train"],
        "epsilon_per_use": 3.0,
        "models": ["logreg", "mlp"],
    }
    return [Grant.model_validate({**common, **query}), Grant.model_validate({**common, **train})]


def run_demo(workdir: Path, quick: bool = False, echo: Callable[[str], None] = print) -> None:
    from sandbox.generate import generate

    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    catalog_dir, state_dir = workdir / "catalog", workdir / "state"
    rows = 60_000 if quick else 200_000

    echo("== 1. Departments register their data ==")
    report = generate(catalog_dir, rows=rows, seed=2026)
    catalog = load_catalog(catalog_dir)
    echo(f"{len(catalog)} datasets, {report.total_rows:,} rows, in {catalog_dir}")
    authority = Authority(state_dir)
    for manifest in catalog:
        authority.register_dataset(dataset_policy(manifest, epsilon_cap=20.0, delta_cap=1e-3))
    echo(f"registered with the policy authority (state in {state_dir})")

    echo("\n== 2. A department official grants the bank a purpose-bound use ==")
    for grant in _grants(datetime.now(UTC)):
        grant = authority.create_grant(grant)
        echo(
            f"grant {grant.grant_id}: {grant.firm} may {'/'.join(sorted(grant.actions))} "
            f"for {grant.purpose!r}"
        )
        echo(
            f"  datasets: {', '.join(grant.datasets)}; per-use epsilon cap "
            f"{grant.epsilon_per_use}; approved by {grant.approved_by}"
        )

    echo("\n== 3. The bank explores and queries ==")
    qingdao = catalog["qingdao_enterprise"]
    echo(f"mock rows of {qingdao.name} (from public metadata only):")
    sample = mock_frame(qingdao, rows=3, seed=1)
    echo(str(sample.select("industry", "employees", "years_operating", "default")))
    service = QueryService(catalog, authority)
    for sql, eps in [
        (
            "SELECT industry, COUNT(*) AS n, AVG(default) AS default_rate "
            "FROM qingdao_enterprise GROUP BY industry ORDER BY n DESC LIMIT 5",
            1.0,
        ),
        (
            "SELECT tax_arrears_months, AVG(default) AS default_rate FROM dezhou_enterprise "
            "WHERE tax_arrears_months <= 6 GROUP BY tax_arrears_months",
            1.0,
        ),
    ]:
        out = service.query(FIRM, PURPOSE, sql, epsilon=eps)
        echo(f"\n{sql}")
        echo(out.result.table())
        echo(
            f"  logged as entry {out.release_index} of {out.tree_size}, "
            f"inclusion proof of {len(out.inclusion_proof)} hashes"
        )
    for firm, purpose, sql, why in [
        ("qilu-credit-bank", "marketing", "SELECT COUNT(*) FROM jinan_enterprise", "wrong purpose"),
        (FIRM, PURPOSE, "SELECT COUNT(*) FROM jinan_population", "dataset not granted"),
        (FIRM, PURPOSE, "SELECT AVG(tax_paid) FROM jinan_enterprise", "budget"),
    ]:
        try:
            if why == "budget":
                for _ in range(3):
                    service.query(firm, purpose, sql, epsilon=3.0)
            else:
                service.query(firm, purpose, sql, epsilon=0.5)
            echo(f"\n[{why}] unexpectedly permitted")
        except Denied as exc:
            codes = ", ".join(r.code for r in exc.decision.reasons)
            echo(f"\n[{why}] denied: {codes}")
    try:
        service.query(FIRM, PURPOSE, "SELECT COUNT(enterprise_id) FROM jinan_enterprise", 0.5)
    except SandboxError as exc:
        echo(f"[identifier] refused before any decision: {exc}")
    remaining = authority.remaining("G-2026-0001-Q", "jinan_enterprise")
    echo(f"remaining on jinan_enterprise: epsilon {remaining.epsilon:.3f}")

    echo("\n== 4. Federated DP training across the four cities ==")
    _train(catalog, authority, quick, echo)

    echo("\n== 5. The regulator verifies the log offline ==")
    _audit(authority, workdir, echo)


def _train(
    catalog: Catalog, authority: Authority, quick: bool, echo: Callable[[str], None]
) -> None:
    from federation.job import JobSpec
    from sandbox.training import TrainingService, categorical_sizes, save_model

    nodes = tuple(f"{city}_enterprise" for city in CITIES)
    spec = JobSpec(
        model="logreg",
        features=FEATURES,
        categorical=categorical_sizes(catalog, nodes[0], FEATURES),
        label="default",
        nodes=nodes,
        rounds=3 if quick else 5,
        local_epochs=1.0,
        sample_rate=0.05,
        learning_rate=0.5,
        target_epsilon=2.0,
        target_delta=1e-9,  # below 1/row_bound of every dataset (public metadata)
        max_grad_norm=1.0,
        min_nodes=3,
        seed=7,  # fixes the initial weights only; sampling and noise come from the OS CSPRNG
    )
    import logging

    logging.getLogger("flwr").setLevel(logging.WARNING)  # keep the demo's output readable
    echo(
        f"job {spec.config_hash()[:16]}…: {spec.model} on {', '.join(nodes)}, "
        f"{spec.rounds} rounds, target epsilon {spec.target_epsilon} per dataset"
    )
    model = TrainingService(catalog, authority).train(FIRM, PURPOSE, spec)
    result = model.result
    echo(f"status {result.status}; {len(result.rounds)} rounds; failures: {len(result.failures)}")
    for name, cost in result.spent.items():
        echo(
            f"  {name}: spent epsilon {cost.epsilon:.3f}, delta {cost.delta:.1e} "
            f"(reserved {result.predicted[name].epsilon:.3f})"
        )
    if result.model_card is not None:
        echo(result.model_card.to_markdown())
    out = save_model(model, Path(authority.state_dir).parent / "model")
    echo(f"model sha256 {model.model_sha256[:16]}…, written to {out}")


def _audit(authority: Authority, workdir: Path, echo: Callable[[str], None]) -> None:
    from cryptography.hazmat.primitives import serialization

    from policies.verify import verify_export

    export = workdir / "audit" / "log.jsonl"
    export.parent.mkdir(parents=True, exist_ok=True)
    head = authority.export(export)
    key = workdir / "audit" / "authority.pub"
    key.write_bytes(
        authority.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    report = verify_export(export, authority.public_key)
    echo(f"exported {head.size} entries to {export}; public key {key}")
    echo(
        f"verified offline: {report.size} entries, every leaf re-hashed, root "
        f"{report.root.hex()[:16]}… matches the tree head signed by key {head.key_id}"
    )
    echo(f"regulator command: sandbox audit verify {export} --public-key {key}")
