"""A hub or node service killed with SIGKILL cannot stop its children: its SuperLink, or its
SuperNode and ClientApp executor, stop on their own once it is gone (they watch their parent
process).

The service runs with SIGINT ignored, as anything started from a non-interactive shell's
background job does (a CI runner, ``nohup``, a service manager's shell wrapper). Its children
inherit that, and a SIGINT-only stop would be dropped while they are still starting up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_CHILD = """
import sys, time
from pathlib import Path
from sandbox.deployment.processes import Federation
work = Path(sys.argv[1])
fed = Federation(work)
fed.start_superlink()
node = fed.start_supernode("north", {"node-name": "north"})  # its key registered
print(fed.superlink.pid, node.process.pid, node.executor.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its new parent) counts as gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("killed_after_s", [0.0, 1.0], ids=["while-starting", "started"])
def test_flower_processes_stop_when_the_process_that_started_them_is_killed(
    tmp_path: Path, killed_after_s: float
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "flower")],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    assert child.stdout is not None
    superlink, supernode, executor = (int(p) for p in child.stdout.readline().split())
    pids = (superlink, supernode, executor)
    try:
        time.sleep(killed_after_s)
        assert all(_alive(pid) for pid in pids)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(superlink), "the SuperLink outlived the process that started it"
        assert not _alive(supernode), "the SuperNode outlived its node process"
        assert not _alive(executor), "the executor outlived its node process"
    finally:
        for pid in pids:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
