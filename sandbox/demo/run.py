"""``run_demo``: prepare the state folder, start the nodes and the hub as processes, tell the
story (``steps``), and stop every process however the demo ends."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.demo.pki import make_pki
from sandbox.demo.prepare import (
    FIRM,
    HUB,
    NODE_CAP_DELTA,
    NODE_CAP_EPSILON,
    REGULATOR,
    cities,
    init_authority,
    write_data,
)
from sandbox.demo.processes import DemoError, Processes, free_port
from sandbox.demo.steps import (
    Story,
    step_access,
    step_audit,
    step_exhausted,
    step_queries,
    step_refused,
    step_register,
    step_revoke,
    step_training,
    step_training_result,
)

#: The health service names the demo waits for.
NODE_SERVICE = "sandbox.v1.NodeService"
HUB_SERVICE = "sandbox.v1.FirmService"


def state_folder(state: Path | None) -> Path:
    """``state`` (created; must be empty), or a fresh folder under ./var."""
    if state is None:
        Path("var").mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="demo-", dir="var")).resolve()
    state = Path(state).resolve()
    if state.exists() and any(state.iterdir()):
        raise DemoError(f"--state {state} is not empty; name a new folder or remove this one")
    state.mkdir(parents=True, exist_ok=True)
    return state


def run_demo(
    state: Path | None = None, quick: bool = False, echo: Callable[[str], None] = print
) -> Path:
    """Run the whole demo; returns the state folder. Every started process is stopped on
    return, on an exception and on KeyboardInterrupt (Ctrl-C) or SIGTERM."""
    started = time.monotonic()
    folder = state_folder(state)
    (folder / "logs").mkdir()
    echo(f"The demo keeps everything it makes in {folder} (service logs in logs/).")
    processes = Processes(folder / "logs")
    try:
        story = _start(folder, quick, echo, processes)
        step_access(story)
        step_queries(story)
        job = step_training(story)
        step_refused(story)
        step_exhausted(story)
        step_revoke(story)
        step_training_result(story, job)
        step_audit(story)
    except KeyboardInterrupt:
        processes.stop_all()
        echo(f"\nInterrupted: every process the demo started is stopped; state so far in {folder}")
        raise
    finally:
        processes.stop_all()
    echo(
        f"\nDone in {time.monotonic() - started:.0f} s; the hub and the four nodes are stopped. "
        f"Left in {folder}: audit/log.jsonl (the exported log), authority.pub (the key that "
        "verifies it), pki/, hub/, nodes/ and logs/."
    )
    echo(
        f"Check it yourself: sandbox audit verify {folder}/audit/log.jsonl --public-key "
        f"{folder}/authority.pub"
    )
    return folder


def _start(folder: Path, quick: bool, echo: Callable[[str], None], procs: Processes) -> Story:
    logs = folder / "logs"
    rows = 30_000 if quick else 200_000
    echo("\n== Step 1. Four departments, their nodes, and the hub start up ==")
    write_data(folder, rows)
    for city in cities():
        echo(
            f"  {city.name} ({city.department.name}): synthetic enterprise register "
            f"{city.dataset}, kept on its own node in nodes/{city.code}/"
        )
    parties = [HUB, FIRM, REGULATOR] + [c.node for c in cities()]
    parties += [c.department for c in cities()]
    pki, issuing = make_pki(folder / "pki", parties, logs / "setup.log", procs)
    public_key = init_authority(folder / "hub" / "state", folder / "authority.pub")
    capping = procs.run(
        [
            [
                "node", "cap", city.dataset,
                "--epsilon", str(NODE_CAP_EPSILON), "--delta", str(NODE_CAP_DELTA),
                "--authority-key", str(public_key),
                "--state", str(folder / "nodes" / city.code / "state"),
            ]
            for city in cities()
        ],
        logs / "setup.log",
    )  # fmt: skip
    issuing.wait()
    echo(
        f"  the data authority made a CA and {len(parties)} certificates (sandbox certs): "
        "every party proves who it is with its own certificate"
    )
    echo("  the authority made its signing key; its public half is authority.pub")
    capping.wait()
    echo(f"  each node set its own spending cap (epsilon {NODE_CAP_EPSILON:g}) on its dataset")
    addresses: dict[str, str] = {}
    nodes = []
    for city in cities():
        address = f"127.0.0.1:{free_port()}"
        nodes.append(
            procs.start(
                city.node.name,
                [
                    "node", "serve",
                    "--catalog", str(folder / "nodes" / city.code / "catalog"),
                    "--authority-key", str(public_key),
                    "--state", str(folder / "nodes" / city.code / "state"),
                    *pki.tls_args(city.node),
                    "--listen", address,
                ],
                address,
            )
        )  # fmt: skip
        addresses[city.dataset] = address
    hub_address = f"127.0.0.1:{free_port()}"
    hub = procs.start(
        "hub",
        [
            "hub", "serve",
            "--state", str(folder / "hub" / "state"),
            *pki.tls_args(HUB),
            "--listen", hub_address,
        ],
        hub_address,
    )  # fmt: skip
    probe = pki.channel_credentials(REGULATOR)
    for child in nodes:
        procs.wait_healthy(child, NODE_SERVICE, probe)
    echo("  4 department nodes are up (separate processes, mTLS; only the hub may call them)")
    procs.wait_healthy(hub, HUB_SERVICE, probe)
    echo(f"  the hub is up on {hub_address} (mTLS); pids of every process in logs/pids")
    story = Story(pki, hub_address, public_key, folder, echo, quick)
    step_register(story, addresses)
    return story
