"""The demo's story over the running services: each party talks to the hub with its own
certificate through the SDK (``sandbox.client``) or, where the SDK has no method yet, the
generated ``sandbox.v1`` stubs on the SDK's connection."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.client import FirmClient, QueryAnswer, RegulatorClient
from sandbox.client.profile import Connection
from sandbox.demo.pki import Pki
from sandbox.demo.prepare import CITIES, FIRM, REGULATOR, City, cities
from sandbox.demo.processes import DemoError, run_cli
from sandbox.errors import ClientBudgetExhausted, ClientError, ClientPermissionDenied
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

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
_RULE: dict[str, pb.ColumnRule] = {
    "group_by": pb.COLUMN_RULE_GROUP_BY,
    "aggregate_only": pb.COLUMN_RULE_AGGREGATE_ONLY,
}
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

    def firm(self) -> FirmClient:
        return FirmClient(self.pki.profile(FIRM, self.hub))

    def department(self, city: City) -> tuple[Connection, pb_grpc.DepartmentServiceStub]:
        connection = Connection(self.pki.profile(city.department, self.hub))
        return connection, pb_grpc.DepartmentServiceStub(connection.channel)

    def key(self) -> Any:
        from policies.keys import load_public_key

        return load_public_key(self.public_key)


def _now_ms(offset: timedelta = timedelta(0)) -> int:
    return int((datetime.now(UTC) + offset).timestamp() * 1000)


def _terms(
    datasets: dict[str, pb.DatasetTerms],
    purpose: str,
    action: pb.Action,
    **extra: Any,
) -> pb.AccessTerms:
    return pb.AccessTerms(
        datasets=datasets,
        purpose=purpose,
        legal_basis=LEGAL_BASIS,
        actions=[action],
        min_group_size=10,
        valid_from_ms=_now_ms(-timedelta(minutes=5)),
        valid_until_ms=_now_ms(timedelta(days=90)),
        **extra,
    )


def _columns(names: dict[str, str]) -> dict[str, pb.ColumnRule]:
    return {column: _RULE[rule] for column, rule in names.items()}


def request_access(story: Story, terms: pb.AccessTerms) -> pb.AccessRequest:
    with story.firm() as firm:
        stub = pb_grpc.FirmServiceStub(firm.connection.channel)
        reply = firm.connection.call(stub.RequestAccess, pb.RequestAccessRequest(terms=terms))
    return reply.request


def step_access(story: Story) -> None:
    echo = story.echo
    echo("\n== Step 2. The bank asks for access; each department decides on its own data ==")
    datasets = {
        city.dataset: pb.DatasetTerms(
            epsilon=QUERY_EPSILON[city.code], delta=0.0, columns=_columns(QUERY_COLUMNS)
        )
        for city in cities()
    }
    request = request_access(story, _terms(datasets, PURPOSE, pb.ACTION_QUERY, epsilon_per_use=1.5))
    echo(
        f"The bank ({FIRM.name}) asks for DP queries on the four enterprise registers, for "
        f"{PURPOSE!r}. Request {request.request_id} waits for {len(datasets)} departments."
    )
    last: pb.ReviewResponse | None = None
    for city in cities():
        connection, stub = story.department(city)
        with_connection = connection
        try:
            pending = with_connection.call(
                stub.ListPendingRequests, pb.ListPendingRequestsRequest()
            )
            assert any(r.request_id == request.request_id for r in pending.requests)
            if city.code == "dezhou":
                kept = {c: r for c, r in QUERY_COLUMNS.items() if c != "tax_paid"}
                reason = "纳税额 (tax_paid) is shared only under the tax bureau's own agreement"
                last = with_connection.call(
                    stub.Amend,
                    pb.AmendRequest(
                        request_id=request.request_id,
                        dataset=city.dataset,
                        terms=pb.DatasetTerms(
                            epsilon=QUERY_EPSILON[city.code], columns=_columns(kept)
                        ),
                        reason=reason,
                    ),
                )
                echo(
                    f"  {city.department.name} approves {city.dataset} WITHOUT the column "
                    f"tax_paid (amended: {reason})."
                )
            else:
                last = with_connection.call(
                    stub.Approve,
                    pb.ApproveRequest(request_id=request.request_id, note="purpose accepted"),
                )
                echo(f"  {city.department.name} approves {city.dataset}.")
        finally:
            connection.close()
    assert last is not None
    if last.request.state != pb.REQUEST_STATE_GRANTED:
        raise DemoError(f"the request ended {pb.RequestState.Name(last.request.state)}")
    grant = last.request.grant
    story.grant_id = grant.grant_id
    echo(
        f"Every department has answered, so the authority issues signed grant {grant.grant_id}; "
        f"the last review is entry {last.log_index} of the transparency log."
    )


def _show(answer: QueryAnswer, echo: Echo) -> None:
    header = "  " + " | ".join(answer.outputs)
    echo(header)
    for row in answer.rows:
        cells = []
        for name in answer.outputs:
            cell = row[name]
            value = f"{cell.value:.3f}" if isinstance(cell.value, float) else str(cell.value)
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


def step_training(story: Story) -> None:
    echo = story.echo
    echo("\n== Step 4. DP training across the four cities (federated, DP-SGD on each node) ==")
    datasets = {
        city.dataset: pb.DatasetTerms(
            epsilon=4.0,
            delta=1e-4,
            columns=_columns({f: "aggregate_only" for f in (*FEATURES, "default")}),
        )
        for city in cities()
    }
    spec = _job_spec(story)
    with story.firm() as firm:
        stub = pb_grpc.FirmServiceStub(firm.connection.channel)
        try:
            # Probe first: a hub that does not run training jobs says so before anyone is asked.
            firm.connection.call(
                stub.SubmitTrainingJob,
                pb.SubmitTrainingJobRequest(spec=spec, purpose=PURPOSE, grant_id="G-none"),
            )
        except ClientError as exc:
            if exc.code == "UNIMPLEMENTED":
                echo(
                    "  SKIPPED: this hub does not run training jobs yet (SubmitTrainingJob "
                    f"answers UNIMPLEMENTED: {exc}). The step runs once it does."
                )
                story.checked.append("training skipped")
                return
    request = request_access(
        story,
        _terms(datasets, PURPOSE, pb.ACTION_TRAIN, epsilon_per_use=3.0, models=["logreg"]),
    )
    grant = ""
    for city in cities():
        connection, dept = story.department(city)
        try:
            reply = connection.call(
                dept.Approve, pb.ApproveRequest(request_id=request.request_id, note="training")
            )
            grant = reply.request.grant.grant_id or grant
        finally:
            connection.close()
    echo(f"  the four departments approve training; grant {grant}")
    with story.firm() as firm:
        stub = pb_grpc.FirmServiceStub(firm.connection.channel)
        job = firm.connection.call(
            stub.SubmitTrainingJob,
            pb.SubmitTrainingJobRequest(spec=spec, purpose=PURPOSE, grant_id=grant),
        )
        reserved = ", ".join(f"{d} {s.epsilon:.2f}" for d, s in sorted(job.reserved.items()))
        echo(f"  job {job.job_id} accepted; epsilon reserved before training: {reserved}")
        try:
            for event in stub.FollowJob(
                pb.FollowJobRequest(job_id=job.job_id),
                metadata=firm.connection.profile.metadata() or None,
                timeout=120,
            ):
                _show_event(event, echo)
                if event.HasField("finished"):
                    story.checked.append(f"training {event.finished.status}")
        except Exception as exc:  # grpc.RpcError: the stream ended with an error
            raise DemoError(f"following the training job failed: {exc}") from None


def _show_event(event: pb.JobEvent, echo: Echo) -> None:
    kind = event.WhichOneof("event")
    if kind == "accepted":
        echo(f"  {event.accepted}")
    elif kind == "round":
        r = event.round
        echo(f"  round {r.round}: {len(r.nodes)} nodes trained ({r.wall_s:.1f} s)")
    elif kind == "failure":
        echo(f"  node {event.failure.node} failed at {event.failure.stage}: {event.failure.reason}")
    elif kind == "finished":
        f = event.finished
        spent = ", ".join(f"{d} {s.epsilon:.2f}" for d, s in sorted(f.spent.items()))
        echo(f"  finished: {f.status}; epsilon spent per dataset: {spent}")
        if f.model_card.HasField("dp_test_accuracy"):
            echo(f"  DP test accuracy (a noisy estimate): {f.model_card.dp_test_accuracy:.3f}")


def _job_spec(story: Story) -> pb.JobSpec:
    from sandbox.catalog import load_manifest

    manifest = load_manifest(story.state / "hub" / "catalog" / "jinan_enterprise.yaml")
    categorical = {
        f: len(manifest.column(f).categories or ())
        for f in FEATURES
        if manifest.column(f).categories is not None
    }
    return pb.JobSpec(
        model="logreg",
        features=FEATURES,
        categorical=categorical,
        label="default",
        nodes=[c.dataset for c in cities()],
        rounds=1 if story.quick else 3,
        local_epochs=1.0,
        sample_rate=0.05,
        learning_rate=0.5,
        strategy="fedavg",
        dp=True,
        target_epsilon=2.0,
        target_delta=1e-9,
        max_grad_norm=1.0,
        accountant="rdp",
        min_nodes=3,
        seed=7,
    )


def step_refused(story: Story) -> None:
    echo = story.echo
    echo("\n== Step 5. A request for a purpose the department does not accept ==")
    qingdao = next(c for c in cities() if c.code == "qingdao")
    terms = _terms(
        {
            qingdao.dataset: pb.DatasetTerms(
                epsilon=1.0, columns=_columns({"*": "aggregate_only", "industry": "group_by"})
            )
        },
        "精准营销 (targeted marketing)",
        pb.ACTION_QUERY,
        epsilon_per_use=1.0,
    )
    request = request_access(story, terms)
    echo(f"  the bank asks for {qingdao.dataset} for targeted marketing ({request.request_id})")
    connection, dept = story.department(qingdao)
    try:
        reason = "marketing is not a purpose 青岛 shares enterprise data for"
        reply = connection.call(
            dept.Refuse,
            pb.RefuseRequest(request_id=request.request_id, dataset=qingdao.dataset, reason=reason),
        )
    finally:
        connection.close()
    state = pb.RequestState.Name(reply.request.state).removeprefix("REQUEST_STATE_")
    reasons = "; ".join(r.reason for r in reply.request.reviews if r.reason)
    echo(
        f"  {qingdao.department.name} refuses: the request is {state}; the bank is told why: "
        f"{reasons}"
    )
    story.checked.append(f"request {state}")


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
    connection, dept = story.department(jinan)
    try:
        reason = "the bank shared results outside the approved purpose (audit finding)"
        reply = connection.call(
            dept.Revoke, pb.RevokeRequest(grant_id=story.grant_id, reason=reason)
        )
    finally:
        connection.close()
    echo(
        f"  {jinan.department.name} revokes {story.grant_id} (log entry {reply.log_index}): "
        f"{reason}"
    )
    try:
        _query(story, sql, 0.5)
        raise DemoError("a query under a revoked grant was answered")
    except ClientPermissionDenied as exc:
        echo(f"  after: the same query is refused: {exc}")
        story.checked.append("revoked grant refused")


def step_audit(story: Story) -> None:
    from policies.verify import EXPORT_FORMAT, verify_export

    echo = story.echo
    echo("\n== Step 8. The regulator exports the log and verifies it offline ==")
    key = story.key()
    export = story.state / "audit" / "log.jsonl"
    export.parent.mkdir(parents=True, exist_ok=True)
    with RegulatorClient(story.pki.profile(REGULATOR, story.hub)) as reg:
        head = reg.tree_head()
        entries: list[bytes] = []
        while len(entries) < head.size:
            page = reg.entries(len(entries), head.size)
            entries.extend(e.entry for e in page.entries)
    with open(export, "wb") as f:
        f.write(_line({"format": EXPORT_FORMAT, "size": head.size}))
        for entry in entries:
            f.write(entry + b"\n")
        f.write(_line({"tree_head": head.to_json()}))
    report = verify_export(export, key)
    out = run_cli(
        ["audit", "verify", str(export), "--public-key", str(story.public_key)],
        story.state / "logs" / "audit.log",
    )
    kinds: dict[str, int] = {}
    for entry in entries:
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
    story.checked.append("log verified")


def _line(obj: dict[str, Any]) -> bytes:
    import json

    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _json(data: bytes) -> dict[str, Any]:
    import json

    out = json.loads(data)
    return out if isinstance(out, dict) else {}


def elapsed(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


__all__ = ["CITIES", "Story"]
