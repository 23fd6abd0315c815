"""The parent watch that stops Flower's processes: it works when SIGINT was inherited as
ignored, and ends a process whose graceful stop hangs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

_ORPHAN = """
import os, signal, subprocess, sys, time
hang = sys.argv[1] == "hang"
code = (
    "import signal, sys, time\\n"
    "from sandbox.deployment.lifeline import watch_parent\\n"
    "watch_parent(int(sys.argv[1]), grace=1.0)\\n"
    + ("signal.signal(signal.SIGINT, lambda *_: None)\\n" if hang else "")
    + "print('ready', flush=True)\\n"
    "time.sleep(120)\\n"
)
grandchild = subprocess.Popen(
    [sys.executable, "-c", code, str(os.getpid())], stdout=subprocess.PIPE, text=True
)
grandchild.stdout.readline()
print(grandchild.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone_within(pid: int, seconds: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if not _alive(pid):
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def _orphan(mode: str) -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN, mode],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


def test_sigint_inherited_as_ignored_still_stops_the_orphan() -> None:
    parent, grandchild = _orphan("plain")
    assert _alive(grandchild)
    parent.kill()
    parent.wait(10)
    took = _gone_within(grandchild, 10)
    assert took is not None, "the process outlived its parent"
    assert took < 0.9, f"stopped by SIGINT, well before the 1 s hard exit ({took:.2f} s)"


def test_a_hanging_graceful_stop_is_ended_after_the_grace_period() -> None:
    parent, grandchild = _orphan("hang")  # its SIGINT handler does nothing
    parent.kill()
    parent.wait(10)
    took = _gone_within(grandchild, 10)
    assert took is not None, "the process outlived its parent"
    assert took >= 0.9, f"ended by the hard exit after the grace period ({took:.2f} s)"
