"""``run_demo``: prepare the state folder, start the nodes and the hub as processes (the hub
with a Flower SuperLink, each node with its Flower SuperNodes: the training job runs over
them), tell the story (``steps``), and stop every process however the demo ends."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.demo.prepare import (
    cities,
    write_data,
)
from sandbox.demo.processes import DemoError, Processes, start_watchdog, stop_watchdog
from sandbox.demo.services import start_services
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
    # Should the demo itself be killed (SIGKILL leaves it no chance), the watchdog stops the
    # hub and the nodes, and they stop their Flower processes.
    watchdog = start_watchdog(folder / "logs" / "pids")
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
        stop_watchdog(watchdog)
    echo(
        f"\nDone in {time.monotonic() - started:.0f} s; the hub and the four nodes are stopped "
        "(with the SuperLink and the SuperNodes they started). "
        f"Left in {folder}: audit/log.jsonl (the exported log), authority.pub (the key that "
        "verifies it), pki/, hub/, nodes/ and logs/."
    )
    echo(
        f"Check it yourself: sandbox audit verify {folder}/audit/log.jsonl --public-key "
        f"{folder}/authority.pub"
    )
    return folder


def _start(folder: Path, quick: bool, echo: Callable[[str], None], procs: Processes) -> Story:
    rows = 30_000 if quick else 200_000
    echo("\n== Step 1. Four departments, their nodes, and the hub start up ==")
    write_data(folder, rows)
    for city in cities():
        echo(
            f"  {city.name} ({city.department.name}): synthetic enterprise register "
            f"{city.dataset}, kept on its own node in nodes/{city.code}/"
        )
    services = start_services(folder, procs, echo, flower=True)
    story = Story(services.pki, services.hub, services.public_key, folder, echo, quick)
    story.flower_dir = services.flower_dir
    step_register(story, services.node_addresses)
    return story
