"""A deployment started from a notebook or script is cleaned up even when its starter is
killed part-way through :meth:`Deployment.stop` (a notebook kernel's manager kills a kernel
whose exit takes more than a few seconds): the watchdog stops what is left and removes the
temporary state folder."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

_STARTER = """
import os, shutil, signal, sys
from sandbox.demo.deployment import start
deployment = start(register=False)
print(deployment.state, *[c.process.pid for c in deployment.processes.children], flush=True)
if sys.argv[1] == "during-removal":
    # killed just as the state folder's removal begins, after every service has stopped
    shutil.rmtree = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    deployment.stop()
else:
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _run(moment: str) -> tuple[Path, list[int]]:
    starter = subprocess.run(
        [sys.executable, "-c", _STARTER, moment],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert starter.returncode == -9, starter.stderr
    state, *pids = starter.stdout.split()
    return Path(state), [int(p) for p in pids]


def _cleaned(state: Path, pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not state.exists() and not any(_alive(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_killed_while_removing_its_state_folder() -> None:
    state, pids = _run("during-removal")
    assert len(pids) == 5
    assert _cleaned(state, pids, within=90), f"{state} left behind"


def test_killed_with_its_services_running() -> None:
    state, pids = _run("running")
    assert len(pids) == 5
    assert _cleaned(state, pids, within=90), f"{state} or a service left behind"
