"""One seam for parallel work: jobs handed to workers, results back as they finish.

Rollouts (training-time and ``polx eval``), DAgger collection and sweep cells reach parallel
workers only through ``executor(config.exec).map(make_worker, jobs, ...)``:

- ``make_worker`` is a picklable factory called once in each worker; it returns a callable
  ``worker(job) -> result`` (an env and a policy built once, then one episode per job).
- ``map`` returns the results in job order and calls ``on_result(job, result)`` as each one
  arrives (progress lines); a worker that fails stops the map and its error propagates.

Two backends: ``local`` (``exec.backend=local``, the default): spawned processes on this machine,
no Ray imported; ``ray`` (``polx.executor.ray_backend``): Ray actors on a cluster, the factory
(the policy's weights with it) put in the object store once per map, jobs handed out as actors
finish, a dead actor's job re-run on another. Which backend ran a job never changes its result:
every job seeds what it runs from its own seed.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Protocol, Sequence

from polx.errors import PolxError, UserInputError
from polx.workers import stopping_pool

RAY_INSTALL = "pip install 'polx[ray]'"


class Executor(Protocol):
    name: str

    def map(
        self, make_worker: Callable[[], Callable[[Any], Any]], jobs: Sequence[Any], *, n_workers: int,
        on_result: Callable[[Any, Any], None] | None = None, stop_note: str = "",
    ) -> list[Any]: ...  # fmt: skip


def check_backend(exec_config: Any) -> None:
    """Before any work starts: ``exec.backend=ray`` without Ray installed is a ``UserInputError``
    (exit 2, with the install command); an ``exec.ray_address`` HOST:PORT where nothing answers is
    a ``PolxError`` naming it (exit 1), within a few seconds."""
    if exec_config.backend != "ray":
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserInputError(f"exec.backend=ray: Ray is not installed; install it with: {RAY_INSTALL}") from None
    from polx.executor.ray_backend import check_reachable

    check_reachable(exec_config.ray_address)


def executor(exec_config: Any) -> Executor:
    """The backend ``exec.backend`` names (``local`` or ``ray``)."""
    check_backend(exec_config)
    if exec_config.backend == "ray":
        from polx.executor.ray_backend import RayExecutor

        return RayExecutor(exec_config.ray_address)
    return LocalExecutor()


# ---------------------------------------------------------------------------------------------
# local: spawned processes

_WORKER: dict[str, Any] = {}


def _init_process(make_worker: Callable[[], Callable[[Any], Any]]) -> None:
    _WORKER["run"] = make_worker()


def _run_job(index: int, job: Any) -> tuple[int, Any]:
    return index, _WORKER["run"](job)


class LocalExecutor:
    """``n_workers`` spawned processes on this machine (spawn: no fork of a process holding CUDA or threads)."""

    name = "local"

    def map(
        self, make_worker: Callable[[], Callable[[Any], Any]], jobs: Sequence[Any], *, n_workers: int,
        on_result: Callable[[Any, Any], None] | None = None, stop_note: str = "this map's results are not kept",
    ) -> list[Any]:  # fmt: skip
        jobs = list(jobs)
        if not jobs:
            return []
        results: list[Any] = [None] * len(jobs)
        pool = cf.ProcessPoolExecutor(
            max_workers=max(1, min(n_workers, len(jobs))),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_process,
            initargs=(make_worker,),
        )
        try:
            # SIGTERM (a scheduler's kill, `timeout`), Ctrl-C or a failed job stops and joins the
            # workers (no job is worth waiting for); they are never left running
            with stopping_pool(pool, stop_note):
                futures = [pool.submit(_run_job, i, job) for i, job in enumerate(jobs)]
                for future in cf.as_completed(futures):
                    i, result = future.result()
                    results[i] = result
                    if on_result is not None:
                        on_result(jobs[i], result)
        except BrokenProcessPool:
            raise PolxError(
                "a worker process died (its traceback, if any, is printed above); "
                "eval.n_envs=1 runs the work in this process instead"
            ) from None
        return results
