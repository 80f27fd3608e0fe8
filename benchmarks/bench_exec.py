"""Rollouts through the executor seam: local processes against Ray at the same worker count.

Rolls one policy out on ``--episodes`` PushT test seeds (100000...) through ``run_rollouts`` (the
training-time and ``polx eval`` path) with ``exec.backend=local`` and with ``exec.backend=ray``,
``--workers`` workers each, and reports the wall time of each (worker start-up included: the
policy built in every worker; Ray's own start, ``ray.init``, timed apart), the ratio, and whether
the per-seed rewards agree. The policy is ``imf_attnres`` at the keypoints recipe's size with
untrained weights (episodes then run their full 300 steps, the most work an episode can be).

``--two-node`` also starts a Ray cluster of two nodes on this machine (``ray start --head`` with
``--node-cpus`` CPUs, and a second ``ray start --address`` with as many), runs the episodes on it
through ``RayExecutor("127.0.0.1:PORT")`` and counts how many episodes each node ran.
Readable lines first, then one JSON line.

    python benchmarks/bench_exec.py [--episodes 50] [--workers 2] [--two-node]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import attrs
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_deploy import synthetic_normalizer  # noqa: E402

from polx.config import ExecConfig, resolve_config  # noqa: E402
from polx.eval.rollout import run_rollouts  # noqa: E402
from polx.plugins import load_plugins  # noqa: E402
from polx.policy.policy import build_policy  # noqa: E402


def policy_and_config(plugins):
    """imf_attnres at the keypoints recipe's size, untrained: every episode runs its full 300 steps."""
    config = resolve_config(plugins, head="imf_attnres", env="pusht", config_files=[ROOT / "configs" / "pusht_keypoints_cpu.yaml"])
    adapter = plugins.build_env(config)
    torch.manual_seed(0)
    return build_policy(plugins, config, adapter.shape_meta, synthetic_normalizer(adapter.shape_meta)).eval(), config, adapter


def timed(plugins, config, adapter, policy, backend: str, workers: int, episodes: int, address: str | None = None) -> tuple[float, dict]:
    cfg = attrs.evolve(
        config, eval=attrs.evolve(config.eval, n_test=episodes, n_train=0, n_vis=0, n_envs=workers, test_start_seed=100000),
        exec=ExecConfig(backend=backend, ray_address=address),
    )  # fmt: skip
    start = time.perf_counter()
    result = run_rollouts(plugins, cfg, adapter, policy, say=lambda line: None)
    return time.perf_counter() - start, result.metrics


def per_seed(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith("test/sim_max_reward_")}


def two_node(plugins, config, adapter, policy, episodes: int, node_cpus: int, port: int) -> dict:
    """Episodes on a two-node Ray cluster made of two ``ray start`` processes on this machine."""
    import functools

    import ray

    from polx.eval.rollout import EpisodeWorker, runtime_factory
    from polx.executor.ray_backend import RayExecutor

    ray_bin = str(Path(sys.executable).with_name("ray"))
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_worker_niceness": "0"}  # as a command's own Ray (Ray's default: 15)
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", f"--num-cpus={node_cpus}", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, env=env)  # fmt: skip
    try:
        subprocess.run([ray_bin, "start", f"--address={address}", f"--num-cpus={node_cpus}", "--disable-usage-stats"],
                       check=True, capture_output=True, env=env)  # fmt: skip
        make_worker = functools.partial(EpisodeWorker, runtime_factory(plugins, config, adapter, policy), adapter, config.eval.max_steps)
        backend = RayExecutor(address)
        jobs = [("test", 100000 + i, i) for i in range(episodes)]
        start = time.perf_counter()
        backend.map(make_worker, jobs, n_workers=2 * node_cpus)
        wall = time.perf_counter() - start
        nodes = len([n for n in ray.nodes() if n["Alive"]])
        ray.shutdown()
        return {"nodes": nodes, "wall_s": wall, "episodes_per_node": sorted(backend.last_map["jobs_per_node"].values())}
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="worker processes / Ray actors, the same for both")
    parser.add_argument("--two-node", action="store_true", help="also run on a two-node Ray cluster started on this machine")
    parser.add_argument("--node-cpus", type=int, default=1, help="CPUs of each node of the two-node cluster")
    parser.add_argument("--port", type=int, default=6399, help="the two-node cluster's head port")
    args = parser.parse_args()
    import ray

    plugins = load_plugins()
    policy, config, adapter = policy_and_config(plugins)
    print(f"{args.episodes} PushT episodes (seeds 100000...), {args.workers} workers, ray {ray.__version__}, {os.cpu_count()} cores")
    local_s, local = timed(plugins, config, adapter, policy, "local", args.workers, args.episodes)
    print(f"  local processes   {local_s:7.1f} s  ({args.episodes / local_s:.2f} episodes/s), score {local['test_mean_score']:.3f}")
    from polx.executor.ray_backend import connect

    start = time.perf_counter()
    connect(None)  # the Ray a command starts for itself (every core; workers at the command's priority)
    init_s = time.perf_counter() - start
    ray_s, on_ray = timed(plugins, config, adapter, policy, "ray", args.workers, args.episodes)
    ray.shutdown()
    same = per_seed(on_ray) == per_seed(local)
    print(f"  Ray actors        {ray_s:7.1f} s  ({args.episodes / ray_s:.2f} episodes/s), score {on_ray['test_mean_score']:.3f}; "
          f"ray.init {init_s:.1f} s apart")  # fmt: skip
    print(f"  Ray / local       {ray_s / local_s:7.2f}x (target: within 1.15x); per-seed rewards equal: {same}")
    result = {"episodes": args.episodes, "workers": args.workers, "local_s": local_s, "ray_s": ray_s, "ray_init_s": init_s,
              "ratio": ray_s / local_s, "per_seed_equal": same, "score": local["test_mean_score"]}  # fmt: skip
    if args.two_node:
        r = result["two_node"] = two_node(plugins, config, adapter, policy, args.episodes, args.node_cpus, args.port)
        print(f"  two-node cluster  {r['wall_s']:7.1f} s on {r['nodes']} nodes; episodes per node: {r['episodes_per_node']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
