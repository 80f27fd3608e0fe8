"""Per-chunk latency of an exported policy at batch 1 on CPU: torch, onnxruntime and the websocket.

For each size (the keypoints recipe, ``configs/pusht_keypoints_cpu.yaml``; the image recipe,
``configs/pusht_image_gpu.yaml`` run on the CPU) the policies are built through the registry as
``polx train`` builds them (untrained weights: latency does not depend on them), written with
``polx export``'s own writer, loaded back with ``polx.load_policy`` and timed on one chunk
(``predict_chunk``: observation history in, executed actions out, encoder and normalisation
included):

* imf_attnres one step through torch, through onnxruntime (``policy.onnx``), and through
  ``polx serve --runtime onnx`` on localhost (a subprocess; the client's round trip, and the
  round trip minus the server's own ``infer_ms``: what the websocket adds);
* ddpm_transformer with DDIM-10 through torch (ddpm has no one-graph export).

Cases are timed in turn inside each repeat, so a busy machine slows them alike; figures are
medians in milliseconds. ``--score RUN_DIR`` also exports a trained run with ``--onnx`` and rolls
it out through torch and through onnxruntime on ``--episodes`` test seeds (50: the standard
seeds), reporting both scores and the largest per-seed difference. Readable lines first, then
one JSON line.

    python benchmarks/bench_deploy.py [--threads 1] [--repeats 50] [--sizes keypoints image] [--score RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import polx
from polx.config import resolve_config
from polx.data.normalizer import Normalizer
from polx.deploy.export import policy_config, write_policy_dir
from polx.plugins import load_plugins
from polx.policy.encoder import obs_keys
from polx.policy.policy import build_policy

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "keypoints": (ROOT / "configs" / "pusht_keypoints_cpu.yaml", []),
    "image": (ROOT / "configs" / "pusht_image_gpu.yaml", ["train.device=cpu", "train.num_workers=0"]),
}


def synthetic_normalizer(shape_meta: dict, seed: int = 0) -> Normalizer:
    """Limits fitted on random data of the env's shapes (cameras pass through, as in training)."""
    rng = np.random.default_rng(seed)
    rgb, low_dim = obs_keys(shape_meta)
    data = {key: rng.random((64, *shape_meta["obs"][key]["shape"])) * 512 for key in low_dim}
    data["action"] = rng.random((64, *shape_meta["action"]["shape"])) * 512
    return Normalizer.fit(data, identity_keys=rgb)


def write_policy(plugins, head: str, size: str, out: Path, *, onnx: bool, extra: list[str]) -> Path:
    config_file, overrides = SIZES[size]
    config = resolve_config(plugins, head=head, env="pusht", config_files=[config_file], overrides=[*overrides, *extra])
    adapter = plugins.registry.get("env", "pusht").build(config.env)
    torch.manual_seed(0)
    policy = build_policy(plugins, config, adapter.shape_meta, synthetic_normalizer(adapter.shape_meta)).eval()
    info = policy_config(plugins, config, config.to_dict(), adapter.shape_meta, policy, {"ema": None, "global_step": 0}, onnx)
    write_policy_dir(policy, info, out, onnx=onnx, card=lambda info: f"# {head} at the {size} recipe's size (untrained; bench_deploy.py)\n")
    return out


def history(info: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {key: (rng.random((info["n_obs_steps"], *meta["shape"])) * (1.0 if meta["type"] == "rgb" else 512)).astype(np.float32) for key, meta in info["obs"].items()}


def start_server(directory: Path, threads: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    polx_cmd = Path(sys.executable).parent / "polx"
    cmd = [str(polx_cmd)] if polx_cmd.is_file() else [sys.executable, "-m", "polx.cli"]
    proc = subprocess.Popen([*cmd, "serve", str(directory), "--runtime", "onnx", "--port", "0", "--host", "127.0.0.1"], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "on ws://" in line:
            return proc, line.split(" on ")[1].split()[0]
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"polx serve did not start: {proc.stderr.read()}")


def time_cases(cases: dict, repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    """Milliseconds of each call; each repeat runs every case once, in turn."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def bench_size(plugins, size: str, workdir: Path, threads: int, repeats: int) -> dict:
    imf_dir = write_policy(plugins, "imf_attnres", size, workdir / f"imf_{size}", onnx=True, extra=["eval.num_steps=1"])
    ddpm_dir = write_policy(plugins, "ddpm_transformer", size, workdir / f"ddpm_{size}", onnx=False, extra=["eval.num_steps=10"])
    imf_torch = polx.load_policy(imf_dir, plugins=plugins)
    imf_onnx = polx.load_policy(imf_dir, runtime="onnx", threads=threads)
    ddpm_torch = polx.load_policy(ddpm_dir, plugins=plugins)
    obs, ddpm_obs = history(imf_torch.info), history(ddpm_torch.info)
    server, url = start_server(imf_dir, threads)
    overhead: list[float] = []
    try:
        client = polx.PolicyClient(url)

        def websocket() -> None:
            start = time.perf_counter()
            client.predict_chunk(obs)
            overhead.append((time.perf_counter() - start) * 1e3 - client.server_timing["infer_ms"])

        times = time_cases(
            {
                "imf_torch": lambda: imf_torch.predict_chunk(obs),
                "imf_onnx": lambda: imf_onnx.predict_chunk(obs),
                "imf_websocket": websocket,
                "ddpm_ddim10_torch": lambda: ddpm_torch.predict_chunk(ddpm_obs),
            },
            repeats,
        )
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    medians["websocket_overhead"] = statistics.median(overhead[-repeats:])
    params = sum(p.numel() for p in imf_torch.policy.parameters())
    return {"ms": medians, "imf_params": params, "obs": {k: v["shape"] for k, v in imf_torch.info["obs"].items()}}


def score_both(plugins, run_dir: Path, workdir: Path, episodes: int) -> dict:
    """test_mean_score of a trained run's export through torch and through onnxruntime, same seeds."""
    from polx.deploy.evaluate import evaluate_policy
    from polx.deploy.export import export_policy

    exported = workdir / "scored"
    export_policy(plugins, run_dir, exported, onnx=True)
    metrics = {rt: evaluate_policy(plugins, exported, runtime=rt, episodes=episodes, out=workdir / f"eval_{rt}")["metrics"] for rt in ("torch", "onnx")}
    seeds = [k for k in metrics["torch"] if k.startswith("test/sim_max_reward_")]
    return {
        "episodes": episodes,
        "torch": metrics["torch"]["test_mean_score"],
        "onnx": metrics["onnx"]["test_mean_score"],
        "max_per_seed_diff": max(abs(metrics["torch"][k] - metrics["onnx"][k]) for k in seeds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime CPU threads")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--sizes", nargs="*", choices=sorted(SIZES), default=["keypoints", "image"])
    parser.add_argument("--score", type=Path, metavar="RUN_DIR", help="also score a trained run through torch and onnxruntime")
    parser.add_argument("--episodes", type=int, default=50, help="test seeds for --score")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    plugins = load_plugins()
    import onnxruntime

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} CPU thread(s), batch 1, {args.repeats} repeats")
    results: dict = {"threads": args.threads, "repeats": args.repeats, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            r = bench_size(plugins, size, Path(tmp), args.threads, args.repeats)
            results["sizes"][size] = r
            ms = r["ms"]
            print(f"\n{size} recipe's size (imf_attnres {r['imf_params'] / 1e6:.2f} M parameters with its encoder; obs {r['obs']}):")
            print(f"  imf one step, torch         {ms['imf_torch']:8.2f} ms per chunk")
            print(f"  imf one step, onnxruntime   {ms['imf_onnx']:8.2f} ms per chunk ({ms['imf_onnx'] / ms['imf_torch']:.2f}x torch)")
            print(f"  imf one step, websocket     {ms['imf_websocket']:8.2f} ms round trip (onnxruntime server), {ms['websocket_overhead']:.2f} ms of it the websocket")
            print(f"  ddpm DDIM-10, torch         {ms['ddpm_ddim10_torch']:8.2f} ms per chunk ({ms['ddpm_ddim10_torch'] / ms['imf_torch']:.1f}x imf torch)")
        if args.score is not None:
            r = results["score"] = score_both(plugins, args.score, Path(tmp), args.episodes)
            print(f"\nscore of {args.score} on {r['episodes']} test seeds: torch {r['torch']:.3f}, onnxruntime {r['onnx']:.3f} "
                  f"(largest per-seed difference {r['max_per_seed_diff']:.2g})")  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main()
