"""The demo as a user runs it: ``python -m sandbox demo --quick`` in a subprocess, which starts
the hub (with a Flower SuperLink) and four nodes (each with a Flower SuperNode) as processes
over TLS. Checked from its output and its state folder (the exported log verifies offline with
the authority's key, the training round went through the SuperLink to the four SuperNodes),
and that neither the end, Ctrl-C nor SIGKILL leaves a process: not the hub or a node, nor a Flower
process they started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from policies.keys import load_public_key
from policies.verify import verify_export


def _demo(state: Path) -> list[str]:
    return [sys.executable, "-m", "sandbox", "demo", "--state", str(state), "--quick"]


def _pids(state: Path) -> dict[str, int]:
    lines = (state / "logs" / "pids").read_text(encoding="utf-8").splitlines()
    return {name: int(pid) for name, pid in (line.split() for line in lines)}


def _running_in(state: Path) -> list[str]:
    """The command lines of running processes that name the demo's state folder: the hub, the
    nodes and the Flower SuperLink, SuperNodes and ClientApp executors they start."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if str(state) in cmdline and "State:\tZ" not in status:
            found.append(cmdline)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_tells_the_whole_story_and_leaves_a_verifiable_log(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    demo = subprocess.Popen(
        _demo(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    try:
        stdout, stderr = demo.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        demo.terminate()  # SIGTERM: the demo still stops every process it started
        demo.communicate(timeout=60)
        raise
    out = stdout.decode()
    assert demo.returncode == 0, out + stderr.decode()
    assert stderr == b""  # no library warnings (or anything else) on the screen

    assert "4 department nodes are up" in out and "the hub is up" in out
    # Access: three approvals and one amendment, then the signed grant.
    assert out.count("approves") == 4 and "WITHOUT the column tax_paid" in out
    assert "issues signed grant" in out
    # DP queries with intervals, each verified against the signed tree head.
    assert "(95%:" in out
    assert out.count("VERIFIED against the authority's signed tree head") == 2
    assert "column-use-not-granted" in out  # the column 德州 kept back
    # Registration through the hub, which checks each node's own description of its dataset.
    assert len(re.findall(r"registers \w+_enterprise on \w+-node", out)) == 4
    # DP training across the four nodes: reserved first, then charged, with the card's figures.
    assert "epsilon reserved before training" in out
    # ... over Flower: the SuperNodes came online with the keys registration carried, and the
    # round went through the hub's SuperLink to all four (their replies are in its log).
    assert "the hub's Flower SuperLink sees 4 SuperNodes online" in out
    assert re.search(r"round 1/1  loss [0-9.–]+  ε [0-9.]+ of [0-9.]+  nodes 4/4", out)
    assert "the 1 round(s) ran over Flower" in out
    superlink_log = (state / "logs" / "flower-hub" / "superlink.log").read_text(errors="replace")
    assert len(set(re.findall(r"Push replies from node_id=(\d+)", superlink_log))) == 4
    for city in ("jinan", "qingdao", "rizhao", "dezhou"):
        assert (state / "logs" / f"flower-{city}" / f"supernode-{city}_enterprise.log").is_file()
    assert "finished: completed" in out and "DP estimate of the model's test accuracy" in out
    assert "the bank sees its request REFUSED" in out and "marketing is not a purpose" in out
    assert "budget exhausted" in out and "budget-exhausted" in out
    assert "grant-revoked" in out  # the query after the revocation
    assert "`sandbox audit verify` says: OK" in out
    assert "cosigned by 4 of 4 department witnesses" in out

    # The state folder: the exported log verifies offline with the authority's public key.
    report = verify_export(state / "audit" / "log.jsonl", load_public_key(state / "authority.pub"))
    assert report.size >= 30
    kinds = (state / "audit" / "log.jsonl").read_text(encoding="utf-8")
    for kind in ("dataset", "access_review", "grant", "release", "revocation"):
        assert f'"kind":"{kind}"' in kinds
    pids = _pids(state)
    assert set(pids) == {"hub", "jinan-node", "qingdao-node", "rizhao-node", "dezhou-node"}
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert _running_in(state) == []  # no SuperLink, SuperNode or executor either


def _demo_with_nodes_up(tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """The demo in its own session (a signal the test sends reaches it only), once its four
    nodes are up (the hub too, the SuperNodes' executors running); returns it and its pids."""
    state = tmp_path / "demo"
    demo = subprocess.Popen(
        _demo(state),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if b"4 department nodes are up" in line:
                break
        else:
            raise AssertionError("the demo ended before its nodes were up")
        pids = _pids(state)
        assert len(pids) == 5 and all(_alive(pid) for pid in pids.values())
        assert any("sandbox.deployment.executor" in c for c in _running_in(state))
    except BaseException:
        demo.kill()
        demo.wait()
        raise
    return demo, pids


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    demo, pids = _demo_with_nodes_up(tmp_path)
    try:
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130
    assert "Interrupted: every process the demo started is stopped" in out.decode()
    assert b"Traceback" not in err
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert _running_in(state) == []  # the SuperLink, SuperNodes and executors stopped too


def test_a_killed_demo_leaves_no_process(tmp_path: Path) -> None:
    """SIGKILL leaves the demo no chance to stop anything: its watchdog stops the hub and the
    nodes, and they (or their parent watch) stop the SuperLink, SuperNodes and executors."""
    state = tmp_path / "demo"
    demo, pids = _demo_with_nodes_up(tmp_path)
    try:
        demo.kill()
        demo.wait(10)
        deadline = time.monotonic() + 90  # SIGTERM, up to 10 s, SIGKILL: slow on a busy machine
        while (_running_in(state) or any(_alive(p) for p in pids.values())) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.3)
        left = _running_in(state)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in _pids(state).values():  # never leave them behind, even when failing
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert left == []
