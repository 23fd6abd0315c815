"""``flower-supernode`` that stops when the process that started it is gone.

``python -m sandbox.deployment.supernode --parent-pid PID [flower-supernode options]`` runs
Flower's own ``flower-supernode`` entry point after starting Flower's parent-process monitor:
if the node service that started the SuperNode is killed (even with SIGKILL, which leaves it no
chance to stop its children), the SuperNode gets SIGINT and stops as it does on Ctrl-C,
instead of staying connected to the hub on its own. Its ClientApp executor watches the same
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
        from flwr.supercore.app_utils import start_parent_process_monitor

        start_parent_process_monitor(int(args[1]))
        args = args[2:]
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv = ["flower-supernode", *args]
    flower_supernode()


if __name__ == "__main__":
    main()
