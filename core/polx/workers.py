"""Worker processes that never outlive their command.

A process pool whose parent is killed by SIGTERM's default action leaves its workers running
(parent 1) with nothing to stop them. ``stopping_pool`` turns SIGTERM into ``SystemExit(143)``
while the pool works, and on that, Ctrl-C or any failure stops the workers (queued work
cancelled, running work given ``grace_s``, then terminated) and joins every one of them. Demo
generation, rollouts and DAgger collection use it.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def sigterm_raises(outcome: str = "nothing is kept") -> Any:
    """SIGTERM raises SystemExit(143) here, so ``finally`` blocks run (the default kills the process
    where it stands, leaving its worker processes and half-written files behind). ``outcome``
    completes the line printed: what is kept of the work."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        print(f"polx: stopped by signal {signal.Signals(signum).name}; stopping workers, {outcome}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_workers(pool: ProcessPoolExecutor, grace_s: float = 10.0) -> None:
    """Stop ``pool``: queued episodes cancelled, running ones given ``grace_s`` to finish (a worker
    killed mid-task makes the executor's thread print a traceback), then terminated; all joined."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # before shutdown, which sets it to None
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    # let the executor's manager thread see its workers gone and close its wakeup pipe now: left
    # winding down, it can close that pipe while the interpreter's exit hook writes to it, which
    # prints an "OSError: Bad file descriptor" traceback on the way out (CPython 3.11)
    if manager is not None:
        from concurrent.futures import process as futures_process

        manager.join(timeout=10)
        # the exit hook must not write to its pipe, whether the thread has ended or is still closing the pipe
        # (both seen, the second on a quiet machine); with its workers gone it ends on its own, and exit joins it
        getattr(futures_process, "_threads_wakeups", {}).pop(manager, None)


@contextmanager
def stopping_pool(pool: ProcessPoolExecutor | None, outcome: str, grace_s: float = 1.0) -> Iterator[ProcessPoolExecutor | None]:
    """Use ``pool`` inside; SIGTERM raises SystemExit(143) (printing ``outcome``: what is kept), and
    any exception stops and joins the workers before it propagates. A clean exit shuts down and waits.
    ``pool`` None (work in this process): only the SIGTERM handling."""
    try:
        with sigterm_raises(outcome):
            yield pool
    except BaseException:
        if pool is not None:
            stop_workers(pool, grace_s=grace_s)
        raise
    if pool is not None:
        pool.shutdown(wait=True)
