"""Flower's ``flower-superlink`` / ``flower-supernode`` that stop when the process that started
them is gone.

``python -m sandbox.deployment.child --parent-pid PID superlink|supernode [Flower's options]``
runs Flower's own entry point after starting a parent watch
(:mod:`sandbox.deployment.lifeline`): if the hub or the node service that started the process
is killed (even with SIGKILL, which leaves it no chance to stop its children), the SuperLink or
SuperNode gets SIGINT and stops as it does on Ctrl-C, or is ended outright if that graceful
stop hangs, instead of running on alone. A SuperNode's ClientApp executor watches the same
parent (:mod:`sandbox.deployment.executor`).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--parent-pid"]:
        if len(args) < 2 or not args[1].isdigit():
            sys.exit("--parent-pid takes a process id")
        from sandbox.deployment.lifeline import watch_parent

        watch_parent(int(args[1]))
        args = args[2:]
    if not args or args[0] not in ("superlink", "supernode"):
        sys.exit("usage: python -m sandbox.deployment.child [--parent-pid PID] KIND ...")
    kind, args = args[0], args[1:]
    sys.argv = [f"flower-{kind}", *args]
    if kind == "superlink":
        from flwr.superlink.cli.flower_superlink import flower_superlink

        flower_superlink()
    else:
        from flwr.supernode.cli.flower_supernode import flower_supernode

        flower_supernode()


if __name__ == "__main__":
    main()
