"""``flower-supernode`` with the SuperNode pull interval proposed upstream (docs/deployment.md),
for measuring what the change would give; the product runs Flower unchanged.

Flower 1.42's SuperNode (``flwr/supernode/start_client_internal.py``) sleeps a literal 3 s
after a pull that finds no message, polls every 0.5 s for the ClientApp's reply, and, when it
pulls a message whose objects the ServerApp is still pushing, waits 1 s (then 2, 4 ... s)
before asking again. The proposal reads one interval from ``FLWR_SUPERNODE_PULL_INTERVAL`` for
all three; this launcher applies it by capping those sleeps and the object backoff at that
value, then runs Flower's own ``flower-supernode`` entry point.

    python -m benchmarks.flower_proposal.supernode --superlink ... (flower-supernode's options)
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any

ENV = "FLWR_SUPERNODE_PULL_INTERVAL"


class _Clock:
    """The ``time`` module with ``sleep`` capped at the interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.interval))


def main() -> None:
    import flwr.supernode.start_client_internal as loop
    from flwr.supernode.cli.flower_supernode import flower_supernode

    interval = float(os.environ.get(ENV, "0.05"))
    loop.time = _Clock(interval)  # type: ignore[attr-defined]
    loop.pull_objects = functools.partial(  # type: ignore[attr-defined]
        loop.pull_objects,  # type: ignore[attr-defined]
        initial_backoff=interval,
        backoff_cap=interval,
    )
    if os.environ.get("FLWR_SUPERNODE_LOG_TIMES"):
        import logging

        for handler in logging.getLogger("flwr").handlers:
            handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s"))
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
