"""The hub's job runner over Flower deployment processes: the hub of the training-service
tests (mTLS, two department nodes) with a SuperLink beside it (certificate from the CA,
SuperNode keys registered) and one SuperNode per node (its key from the node's state, the CA
pinned), as ``sandbox hub serve --flower`` and ``sandbox node serve --flower-superlink`` start
them. A firm's job goes through SubmitTrainingJob (the nodes accept the signed plan) and runs
over the SuperLink; every node checks every message against the instruction it accepted."""

from __future__ import annotations

from typing import Any

import pytest

from federation.accounting import plan_job
from federation.node_store import NodeStore, node_state_dir
from policies.keys import public_key_pem
from sandbox.deployment.processes import Federation, free_port, node_key
from sandbox.deployment.serve import start_superlink, start_supernodes
from sandbox.hub.cards import spec_pb
from sandbox.hub.jobs import HubJobs
from sandbox.node.tasks import TRAINING_DIR
from sandbox.protocol.v1 import sandbox_pb2 as pb
from tests.training_service.test_training_service import (  # noqa: F401 - the fixture
    NODES,
    PURPOSE,
    _Setup,
    setup,
)

pytestmark = pytest.mark.deployment  # real Flower processes: minutes on 2 cores


def test_hub_job_runs_over_its_superlink_and_nodes_check_the_signed_plan(
    setup: _Setup,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sandbox.deployment.runner as runner

    deployed: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        deployed.append(args[1].config_hash())
        return run_deployed(*args, **kwargs)

    run_deployed = runner.run_deployed
    monkeypatch.setattr(runner, "run_deployed", counted)
    root = setup.pki.parent
    authority_pem = root / "authority.pem"
    authority_pem.write_bytes(public_key_pem(setup.authority.public_key))
    keys = {d: node_key(n.service.guard.state_dir, d)[1] for d, n in setup.nodes.items()}
    superlink = start_superlink(root / "hub-flower", setup.pki, f"127.0.0.1:{free_port()}", keys)
    supernodes: list[Federation] = []
    jobs = setup.hub.firm.jobs
    assert isinstance(jobs, HubJobs)
    try:
        for dataset, node in setup.nodes.items():
            supernodes.append(
                start_supernodes(
                    node.service.guard.state_dir,
                    root / "catalog",
                    authority_pem,
                    setup.pki,
                    superlink.fleet_address,  # the departments' address: the Fleet proxy
                    [dataset],
                )
            )
        superlink.wait_connected(len(NODES), timeout=120)
        jobs.flower = superlink
        spec = setup.spec.model_copy(update={"seed": 21, "rounds": 1})
        firm = setup.firm("bank")
        submitted = firm.SubmitTrainingJob(
            pb.SubmitTrainingJobRequest(spec=spec_pb(spec), purpose=PURPOSE), timeout=120
        )
        events = list(firm.FollowJob(pb.FollowJobRequest(job_id=submitted.job_id), timeout=600))
    finally:
        jobs.flower = None
        for one in supernodes:
            one.stop()
        superlink.stop()
    assert deployed == [spec.config_hash()]  # the job ran over the SuperLink
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["accepted", "round", "finished"], events
    progress = events[1].round  # what `sandbox train --follow` prints
    assert progress.round == 1 and progress.rounds == 1
    assert progress.HasField("dp_loss") and progress.epsilon_spent > 0
    assert events[1].timestamp_ms < events[2].timestamp_ms
    done = events[-1].finished
    assert done.status == "completed", done.abort_reason
    plan = plan_job(spec)
    for dataset, node in setup.nodes.items():
        store = NodeStore(node_state_dir(node.service.guard.state_dir / TRAINING_DIR, dataset))
        assert store.usage("T1", dataset).steps >= plan.total_steps(dataset)
        assert done.spent[dataset].epsilon <= plan.predicted[dataset].epsilon + 1e-9
