"""The demo's story over the running services: each party talks to the hub with its own
certificate through the SDK (``sandbox.client``: FirmClient, DepartmentClient,
RegulatorClient)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.client import DepartmentClient, FirmClient, QueryAnswer, RegulatorClient
from sandbox.demo.pki import Pki
from sandbox.demo.prepare import (
    CITIES,
    DATASET_CAP_DELTA,
    DATASET_CAP_EPSILON,
    FIRM,
    REGULATOR,
    City,
    cities,
)
from sandbox.demo.processes import DemoError, run_cli
from sandbox.errors import ClientBudgetExhausted, ClientPermissionDenied

Echo = Callable[[str], None]

PURPOSE = "小微企业信贷风险评估 (SME credit risk assessment)"
LEGAL_BASIS = "数据安全法 第38条; 个人信息保护法 第13条 (contract / statutory duty)"
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
#: The columns the bank asks for, and how it may use each (a GROUP BY key or inside an
#: aggregate only); "*" is COUNT(*).
QUERY_COLUMNS = {
    "*": "aggregate_only",
    "default": "aggregate_only",
    "tax_paid": "aggregate_only",
    "years_operating": "aggregate_only",
    "industry": "group_by",
    "tax_arrears_months": "group_by",
}
#: The budget asked per dataset; 日照's is small, so the demo can show it run out.
QUERY_EPSILON = {"jinan": 6.0, "qingdao": 6.0, "rizhao": 2.5, "dezhou": 6.0}


@dataclass
class Story:
    """The parties and what they have learnt so far."""

    pki: Pki
    hub: str
    public_key: Path
    state: Path
    echo: Echo
    quick: bool
    grant_id: str = ""
    checked: list[str] = field(default_factory=list)
    #: The hub's Flower working directory when training runs over its SuperLink (else None).
    flower_dir: Path | None = None
    #: The training job's epsilon (the most reserved on a dataset), for its round lines.
    job_budget: float | None = None

    def firm(self) -> FirmClient:
        return FirmClient(self.pki.profile(FIRM, self.hub))

    def department(self, city: City) -> DepartmentClient:
        return DepartmentClient(self.pki.profile(city.department, self.hub))

    def key(self) -> Any:
        from policies.keys import load_public_key

        return load_public_key(self.public_key)


def _terms(datasets: dict[str, Any], purpose: str, action: str, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "datasets": datasets,
        "purpose": purpose,
        "legal_basis": LEGAL_BASIS,
        "actions": [action],
        "min_group_size": 10,
        "valid_from": now - timedelta(minutes=5),
        "valid_until": now + timedelta(days=90),
        **extra,
    }


def step_register(story: Story, node_addresses: dict[str, str]) -> None:
    """Each department registers its dataset with the hub: the manifest (public metadata), the
    node that holds it, and the dataset's budget cap over all grants."""
    for city in cities():
        manifest = story.state / "nodes" / city.code / "catalog" / f"{city.dataset}.yaml"
        with story.department(city) as dept:
            done = dept.register(
                manifest,
                node=city.node.name,
                node_address=node_addresses[city.dataset],
                epsilon_cap=DATASET_CAP_EPSILON,
                delta_cap=DATASET_CAP_DELTA,
            )
        story.echo(
            f"  {city.department.name} registers {city.dataset} on {city.node.name} "
            f"(cap epsilon {DATASET_CAP_EPSILON:g}; the hub checked the node; log entry "
            f"{done.log_index})"
        )
    if story.flower_dir is not None:
        story.echo(
            "  each registration also carried the dataset's Flower SuperNode public key (the "
            "node reports it): the hub registered it with its SuperLink, no manual key step"
        )


def step_access(story: Story) -> None:
    echo = story.echo
    echo("\n== Step 2. The bank asks for access; each department decides on its own data ==")
    datasets = {
        city.dataset: {"epsilon": QUERY_EPSILON[city.code], "columns": QUERY_COLUMNS}
        for city in cities()
    }
    with story.firm() as firm:
        request = firm.request_access(_terms(datasets, PURPOSE, "query", epsilon_per_use=1.5))
    echo(
        f"The bank ({FIRM.name}) asks for DP queries on the four enterprise registers, for "
        f"{PURPOSE!r}. Request {request.request_id} waits for {len(datasets)} departments."
    )
    last = None
    for city in cities():
        with story.department(city) as dept:
            if request.request_id not in {r.request_id for r in dept.pending()}:
                raise DemoError(f"{city.department.name} does not see the bank's request")
            if city.code == "dezhou":
                kept = {c: r for c, r in QUERY_COLUMNS.items() if c != "tax_paid"}
                reason = "纳税额 (tax_paid) is shared only under the tax bureau's own agreement"
                last = dept.amend(
                    request.request_id,
                    city.dataset,
                    {"epsilon": QUERY_EPSILON[city.code], "columns": kept},
                    reason,
                )
                echo(
                    f"  {city.department.name} approves {city.dataset} WITHOUT the column "
                    f"tax_paid (amended: {reason})."
                )
            else:
                last = dept.approve(request.request_id, note="purpose accepted")
                echo(f"  {city.department.name} approves {city.dataset}.")
    assert last is not None
    if last.request.state != "granted" or last.request.grant is None:
        raise DemoError(f"the request ended {last.request.state}, not granted")
    story.grant_id = last.request.grant.grant_id
    echo(
        f"Every department has answered, so the authority issues signed grant "
        f"{story.grant_id}; the last review is entry {last.log_index} of the transparency log."
    )


def _show(answer: QueryAnswer, echo: Echo) -> None:
    header = "  " + " | ".join(answer.outputs)
    echo(header)
    for row in answer.rows:
        cells = []
        for name in answer.outputs:
            cell = row[name]
            if cell.value is None:  # released group, but its own noisy count left no mean
                value = "- (no mean: its noisy count came out at or below zero)"
            elif isinstance(cell.value, float):
                value = f"{cell.value:.3f}"
            else:
                value = str(cell.value)
            if cell.ci95 is not None:
                value += f" (95%: {cell.ci95[0]:.3f} to {cell.ci95[1]:.3f})"
            cells.append(value)
        echo("  " + " | ".join(cells))
    if answer.suppressed_groups:
        echo(f"  ({answer.suppressed_groups} groups too small to release were left out)")


def _query(story: Story, sql: str, epsilon: float) -> QueryAnswer:
    with story.firm() as firm:
        return firm.query(sql, epsilon, purpose=PURPOSE, grant_id=story.grant_id)


def step_queries(story: Story) -> None:
    echo = story.echo
    echo("\n== Step 3. The bank runs DP queries and checks each answer is in the public log ==")
    key = story.key()
    for sql, epsilon in (
        (
            "SELECT industry, COUNT(*) AS n, AVG(default) AS default_rate "
            "FROM qingdao_enterprise GROUP BY industry ORDER BY n DESC LIMIT 5",
            1.0,
        ),
        (
            "SELECT tax_arrears_months, AVG(default) AS default_rate FROM dezhou_enterprise "
            "WHERE tax_arrears_months <= 3 GROUP BY tax_arrears_months",
            1.0,
        ),
    ):
        answer = _query(story, sql, epsilon)
        echo(f"\n{sql}")
        _show(answer, echo)
        FirmClient.verify(answer, key)
        echo(
            f"  privacy spent: epsilon {answer.epsilon_spent:.3f}; logged as entry "
            f"{answer.log_index} of {answer.tree_size}; inclusion proof of "
            f"{len(answer.inclusion_proof)} hashes VERIFIED against the authority's signed "
            "tree head"
        )
    echo("\nThe bank tries the column 德州 kept back:")
    try:
        _query(story, "SELECT AVG(tax_paid) AS avg_tax FROM dezhou_enterprise", 0.5)
        raise DemoError("a query on a column the department refused was answered")
    except ClientPermissionDenied as exc:
        echo(f"  refused, as it should be: {exc}")
        story.checked.append("column refused")


def step_training(story: Story) -> str:
    """Ask for a training grant, get it approved and submit the job; returns the job's id.
    The job trains on the nodes in the background while the story goes on."""
    echo = story.echo
    echo("\n== Step 4. A DP training job across the four cities (DP-SGD on each node) ==")
    columns = {f: "aggregate_only" for f in (*FEATURES, "default")}
    datasets = {c.dataset: {"epsilon": 4.0, "delta": 1e-4, "columns": columns} for c in cities()}
    with story.firm() as firm:
        request = firm.request_access(
            _terms(datasets, PURPOSE, "train", epsilon_per_use=3.0, models=["logreg"])
        )
    grant = ""
    for city in cities():
        with story.department(city) as dept:
            reviewed = dept.approve(request.request_id, note="training for credit risk")
        grant = reviewed.request.grant.grant_id if reviewed.request.grant else grant
    if not grant:
        raise DemoError("the training request was not granted")
    echo(f"  the bank asks to train a logistic regression; the four departments approve: {grant}")
    if story.flower_dir is not None:
        from sandbox.demo.services import wait_supernodes

        waited = wait_supernodes(story.flower_dir, len(CITIES))
        echo(
            f"  the hub's Flower SuperLink sees {len(CITIES)} SuperNodes online, one on each "
            f"department's side, each admitted by its registered key (waited {waited:.0f} s)"
        )
    with story.firm() as firm:
        job = firm.submit_job(_job_spec(story), purpose=PURPOSE, grant_id=grant)
    story.job_budget = max((eps for eps, _ in job.reserved.values()), default=None)
    reserved = ", ".join(f"{d} {eps:.2f}" for d, (eps, _) in sorted(job.reserved.items()))
    echo(f"  job {job.job_id} accepted; epsilon reserved before training: {reserved}")
    echo(
        "  each node trains on its own data and sends back only clipped, noised updates; the "
        "job runs in the background while the story goes on (its outcome: step 8)"
    )
    return job.job_id


def step_training_result(story: Story, job_id: str) -> None:
    """Follow the job (its events so far, then the rest) to its model card."""
    from sandbox.firm_cli import round_line

    echo = story.echo
    echo("\n== Step 8. The training job's outcome ==")
    rounds = 0
    with story.firm() as firm:
        for event in firm.follow(job_id):
            if event.kind == "round":  # as `sandbox train --follow` prints it
                rounds += 1
                echo(f"  {round_line(event.data, story.job_budget)}")
                continue
            if event.kind != "finished":
                echo(f"  {event.line()}")
                continue
            if story.flower_dir is not None and rounds:
                echo(
                    f"  the {rounds} round(s) ran over Flower: the hub's SuperLink sent each "
                    "round to a Flower SuperNode on each department's side, over TLS with "
                    "SuperNode authentication (keys registered with the datasets); each "
                    "node checked the signed instruction before training"
                )
            d = event.data
            why = f" ({d['abort_reason']})" if d.get("abort_reason") else ""
            spent = ", ".join(f"{n} {eps:.2f}" for n, (eps, _) in sorted(d["spent"].items()))
            echo(f"  finished: {d['status']}{why}; epsilon charged per dataset: {spent}")
            accuracy = d["model_card"].get("dp_test_accuracy")
            if accuracy is not None:
                echo(f"  DP estimate of the model's test accuracy: {accuracy:.3f}")
            echo(f"  the model and its card are result {d['result_id']} (GetResult)")
            story.checked.append(f"training {d['status']}")


def _job_spec(story: Story) -> dict[str, Any]:
    from sandbox.catalog import load_manifest

    manifest = load_manifest(story.state / "nodes" / "jinan" / "catalog" / "jinan_enterprise.yaml")
    categorical = {
        f: len(manifest.column(f).categories or ())
        for f in FEATURES
        if manifest.column(f).categories is not None
    }
    return {
        "model": "logreg",
        "features": list(FEATURES),
        "categorical": categorical,
        "label": "default",
        "nodes": [c.dataset for c in cities()],
        "rounds": 1 if story.quick else 3,
        "local_epochs": 1.0,
        "sample_rate": 0.05,
        "learning_rate": 0.5,
        "target_epsilon": 2.0,
        "target_delta": 1e-9,
        "max_grad_norm": 1.0,
        "min_nodes": 3,
        "seed": 7,  # the initial weights only; sampling and noise come from the OS CSPRNG
    }


def step_refused(story: Story) -> None:
    echo = story.echo
    echo("\n== Step 5. A request for a purpose the department does not accept ==")
    qingdao = next(c for c in cities() if c.code == "qingdao")
    columns = {"*": "aggregate_only", "industry": "group_by"}
    terms = _terms(
        {qingdao.dataset: {"epsilon": 1.0, "columns": columns}},
        "精准营销 (targeted marketing)",
        "query",
        epsilon_per_use=1.0,
    )
    with story.firm() as firm:
        request = firm.request_access(terms)
    echo(f"  the bank asks for {qingdao.dataset} for targeted marketing ({request.request_id})")
    reason = "marketing is not a purpose 青岛 shares enterprise data for"
    with story.department(qingdao) as dept:
        dept.refuse(request.request_id, reason, dataset=qingdao.dataset)
    with story.firm() as firm:  # what the bank sees of its own request
        seen = next(r for r in firm.requests() if r.request_id == request.request_id)
    reasons = "; ".join(r.reason for r in seen.reviews if r.reason)
    echo(
        f"  {qingdao.department.name} refuses: the bank sees its request {seen.state.upper()}, "
        f"with the reason: {reasons}"
    )
    story.checked.append(f"request {seen.state}")


def step_exhausted(story: Story) -> None:
    echo = story.echo
    echo("\n== Step 6. The bank keeps querying 日照 until its budget is spent ==")
    sql = "SELECT AVG(years_operating) AS avg_years FROM rizhao_enterprise"
    for attempt in range(1, 6):
        try:
            answer = _query(story, sql, 1.0)
        except ClientBudgetExhausted as exc:
            echo(f"  query {attempt}: REFUSED, budget exhausted: {exc}")
            story.checked.append("budget exhausted")
            return
        with story.firm() as firm:
            left = firm.remaining(story.grant_id, "rizhao_enterprise")
        value = answer.rows[0]["avg_years"].value
        echo(
            f"  query {attempt}: average years operating {value:.2f}, epsilon spent "
            f"{answer.epsilon_spent:.2f}, left on the grant: {left.epsilon:.2f}"
        )
    raise DemoError("日照's budget never ran out")


def step_revoke(story: Story) -> None:
    echo = story.echo
    echo("\n== Step 7. 济南 revokes the grant mid-way ==")
    jinan = next(c for c in cities() if c.code == "jinan")
    sql = "SELECT COUNT(*) AS n FROM jinan_enterprise"
    answer = _query(story, sql, 0.5)
    echo(f"  before: the bank counts 济南's enterprises: about {answer.rows[0]['n'].value}")
    reason = "the bank shared results outside the approved purpose (audit finding)"
    with story.department(jinan) as dept:
        revoked = dept.revoke(story.grant_id, reason)
    echo(
        f"  {jinan.department.name} revokes {story.grant_id} (log entry {revoked.log_index}): "
        f"{reason}"
    )
    try:
        _query(story, sql, 0.5)
        raise DemoError("a query under a revoked grant was answered")
    except ClientPermissionDenied as exc:
        echo(f"  after: the same query is refused: {exc}")
        story.checked.append("revoked grant refused")


def _witness_keys(story: Story) -> dict[str, Any]:
    """Each department's witness public key, as `sandbox node witness-key --state DIR` prints
    it from the node's state (what a department hands its regulator)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from sandbox.node.witness import witness_public_pem

    return {
        city.node.name: load_pem_public_key(
            witness_public_pem(story.state / "nodes" / city.code / "state").encode()
        )
        for city in cities()
    }


def step_audit(story: Story) -> None:
    from policies.verify import VerificationError, verify_export

    echo = story.echo
    echo("\n== Step 9. The regulator exports the log and verifies it offline ==")
    key = story.key()
    export = story.state / "audit" / "log.jsonl"
    export.parent.mkdir(parents=True, exist_ok=True)
    with RegulatorClient(story.pki.profile(REGULATOR, story.hub)) as reg:
        head = reg.export(export, key)
    witness_keys = _witness_keys(story)
    out = run_cli(
        ["audit", "verify", str(export), "--public-key", str(story.public_key)]
        + ["--verifier-home", str(story.state / "audit" / "verifier")],
        story.state / "logs" / "audit.log",
    )
    try:
        report = verify_export(
            export, key, witness_keys=witness_keys, min_witnesses=len(witness_keys)
        )
    except VerificationError as exc:
        raise DemoError(f"the exported log did not verify with every witness: {exc}") from None
    kinds: dict[str, int] = {}
    with open(export, "rb") as f:
        lines = f.read().splitlines()[1 : 1 + head.size]
    for entry in lines:
        kind = str(_json(entry).get("kind", "?"))
        kinds[kind] = kinds.get(kind, 0) + 1
    echo(
        f"  {head.size} entries fetched over the API and written to {export}: "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    )
    echo(f"  `sandbox audit verify` says: {' '.join(out.split())}")
    echo(
        f"  every leaf re-hashed; root {report.root.hex()[:16]}... matches the tree head signed "
        f"by the authority's key ({story.public_key})"
    )
    echo(
        f"  cosigned by {len(report.witnesses)} of {len(witness_keys)} department witnesses "
        f"({', '.join(sorted(report.witnesses))}): each node checked that this log extends the "
        "one it cosigned before, so no department was shown a different log"
    )
    story.checked.append("log verified")
    story.checked.append("log witnessed")


def _json(data: bytes) -> dict[str, Any]:
    import json

    out = json.loads(data)
    return out if isinstance(out, dict) else {}


__all__ = ["CITIES", "Story"]
