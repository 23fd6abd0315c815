"""Stop a Flower child process when the hub or node process that started it is gone.

A hub or node service killed with SIGKILL cannot stop its SuperLink, SuperNode or ClientApp
executor. Each of them therefore runs :func:`watch_parent`: a daemon thread that notices the
parent's death, asks the process to stop as Ctrl-C would (SIGINT, which Flower answers with its
graceful exit), and ends it outright if that has not worked within ``grace`` seconds.

Two things make Flower's own ``start_parent_process_monitor`` unreliable on its own, and both
are handled here:

- A process started from a non-interactive shell's background job inherits SIGINT *ignored*,
  and Python then installs no KeyboardInterrupt handler. A SIGINT that arrives before Flower
  registers its handlers (while it is still importing, on a loaded machine) is dropped, and the
  monitor, which signals once, leaves the process running for ever. The watcher restores the
  default handler first and always has the hard exit behind the signal.
- ``os.kill(pid, 0)`` succeeds on a parent that has exited but not yet been reaped. The
  watcher also checks ``os.getppid()``: a process whose parent exits is re-parented at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["parent_alive", "watch_parent"]

_POLL_S = 0.2


def parent_alive(parent_pid: int) -> bool:
    """Whether ``parent_pid`` is still this process's running parent.

    >>> parent_alive(os.getppid())
    True
    >>> parent_alive(os.getpid())  # this process is not its own parent
    False
    """
    if os.getppid() != parent_pid:
        return False
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def watch_parent(parent_pid: int, grace: float = 10.0) -> threading.Thread:
    """Stop this process once ``parent_pid`` is gone: SIGINT first, ``os._exit(1)`` after
    ``grace`` seconds if the graceful stop has not ended it. Returns the watching thread."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch() -> None:
        while parent_alive(parent_pid):
            time.sleep(_POLL_S)
        # to the main thread itself, so that a blocking call there is interrupted at once
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        time.sleep(grace)
        os._exit(1)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
