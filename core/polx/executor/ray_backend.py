"""``exec.backend=ray``: jobs on Ray actors, on a Ray cluster or on a Ray started for the command.

``exec.ray_address``: ``null`` starts a local Ray for this command (stopped when the command
ends; every core of this machine; its workers at the command's priority, not Ray's niceness 15), ``auto`` joins the cluster ``ray start`` made on this machine
(or ``RAY_ADDRESS``), ``HOST:PORT`` joins the cluster whose head listens there. A HOST:PORT that
does not answer within a few seconds is a ``PolxError`` naming it (exit 1), before Ray is asked.

A map puts the worker factory (with it the policy's weights) in the object store once, starts
``n_workers`` actors (one CPU each) that each build their worker from it once, and hands out one
job at a time to whichever actor finishes first. An actor that dies (a node lost, ``ray.kill``,
the process killed) has its job put back at the front of the queue and a replacement started;
each job's result is kept once, from the actor that finished it.
"""

from __future__ import annotations

import collections
import os
import socket
import uuid
from typing import Any, Callable, Sequence

from polx.errors import PolxError
from polx.workers import stopping_pool

REACH_TIMEOUT_S = 5.0
MAX_REPLACEMENTS = 8  # dead actors replaced per map before it gives up
ACTOR_PREFIX = "polx-worker"


class _JobActor:
    """A Ray actor: builds its worker once, then runs jobs one at a time."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]]):
        self._run = make_worker()

    def run(self, job: Any) -> tuple[str, Any]:
        import ray

        return ray.get_runtime_context().get_node_id(), self._run(job)


def check_reachable(address: str | None) -> None:
    """``PolxError`` naming ``address`` (HOST:PORT) when nothing accepts a connection there within a few seconds."""
    if address in (None, "auto"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S):
            pass
    except (OSError, ValueError) as exc:
        raise PolxError(
            f"exec.ray_address={address}: no Ray cluster answers there ({exc}); start one with `ray start --head` "
            "and pass the address it prints, or exec.ray_address=null for a Ray started for this command"
        ) from None


def connect(address: str | None) -> Any:
    """The ``ray`` module, initialised for ``address`` (once per process)."""
    import ray

    check_reachable(address)
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level="warning", log_to_driver=True, configure_logging=True)
    try:
        if address is None:
            # Ray runs its workers at niceness 15 by default, so any other load on the machine (a
            # training beside it, a test run) starves the episodes the user waits for; a Ray started
            # for this command runs them at the command's own priority
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        raise PolxError(f"exec.ray_address={address}: cannot join the Ray cluster: {exc}") from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address
        self.last_map: dict[str, Any] = {}  # the last map's actors started, dead ones replaced, jobs per Ray node

    def map(
        self, make_worker: Callable[[], Callable[[Any], Any]], jobs: Sequence[Any], *, n_workers: int,
        on_result: Callable[[Any, Any], None] | None = None, stop_note: str = "this map's results are not kept",
    ) -> list[Any]:  # fmt: skip
        jobs = list(jobs)
        if not jobs:
            return []
        ray = connect(self.address)
        from ray.exceptions import RayActorError, RayTaskError

        actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_JobActor)
        factory = ray.put(make_worker)  # once: every actor reads the same object
        tag = uuid.uuid4().hex[:8]
        actors: list[Any] = []
        queue = collections.deque(range(len(jobs)))
        running: dict[Any, tuple[Any, int]] = {}
        results: list[Any] = [None] * len(jobs)
        done = [False] * len(jobs)
        replaced = 0
        per_node: dict[str, int] = {}

        def start() -> Any:
            actors.append(actor_cls.options(name=f"{ACTOR_PREFIX}-{tag}-{len(actors) + 1}").remote(factory))
            return actors[-1]

        def give(actor: Any) -> None:
            if queue:
                i = queue.popleft()
                running[actor.run.remote(jobs[i])] = (actor, i)

        try:
            with stopping_pool(None, stop_note):  # SIGTERM raises in here, so the actors are killed below
                for _ in range(max(1, min(n_workers, len(jobs)))):
                    give(start())
                while running:
                    ready, _ = ray.wait(list(running), num_returns=1)
                    actor, i = running.pop(ready[0])
                    try:
                        node, result = ray.get(ready[0])
                    except RayTaskError as exc:  # the job itself failed, as it would in a local worker
                        cause = exc.cause if exc.cause is not None else exc
                        raise PolxError(f"a Ray worker failed on job {jobs[i]!r}: {type(cause).__name__}: {cause}") from None
                    except RayActorError as exc:  # the actor is gone: its job runs again on another
                        replaced += 1
                        if replaced > MAX_REPLACEMENTS:
                            raise PolxError(f"{replaced} Ray workers died during this map; the last: {exc}") from None
                        queue.appendleft(i)
                        give(start())
                        continue
                    if not done[i]:  # each job's result is kept once
                        done[i], results[i] = True, result
                        per_node[node] = per_node.get(node, 0) + 1
                        if on_result is not None:
                            on_result(jobs[i], result)
                    give(actor)
        finally:  # done, failed or interrupted: no actor outlives its map (outstanding calls die with it)
            for actor in actors:
                ray.kill(actor, no_restart=True)
            self.last_map = {"actors": len(actors), "replaced": replaced, "jobs_per_node": per_node}
        return results
