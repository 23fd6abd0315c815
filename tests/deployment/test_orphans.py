"""A node service killed with SIGKILL cannot stop its children: its SuperNode and ClientApp
executor stop on their own once it is gone (they watch their parent process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_CHILD = """
import sys, time
from pathlib import Path
from sandbox.deployment.processes import Federation, write_node_key
work = Path(sys.argv[1])
fed = Federation(work, superlink_address="127.0.0.1:9")  # nothing listens: it keeps retrying
fed.issue_tls()
key, _ = write_node_key(work / "keys", "north")
node = fed.start_supernode("north", {"node-name": "north"}, key=key)
print(node.process.pid, node.executor.pid, flush=True)
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


def test_supernode_and_executor_stop_when_their_node_process_is_killed(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "flower")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    supernode, executor = (int(p) for p in child.stdout.readline().split())
    try:
        time.sleep(1.0)
        assert _alive(supernode) and _alive(executor)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 30
        while (_alive(supernode) or _alive(executor)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(supernode), "the SuperNode outlived its node process"
        assert not _alive(executor), "the executor outlived its node process"
    finally:
        for pid in (supernode, executor):
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
