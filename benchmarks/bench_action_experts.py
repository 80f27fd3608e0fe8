"""The four ``head.action_expert_mode`` factorisations of ``imf_attnres`` on RoboIMI, at one budget.

Each mode is one ``polx train`` run (same seed, data, steps and sizes) in ``OUT/<mode>``; then
``polx compare`` writes the study's tables to ``OUT/tables`` (``val_loss`` by step, sampled MAE
at 1, 4 and 16 steps per arm with the left/right imbalance, runtime and peak memory). The CPU
default is small (one camera, a 64-wide 2-layer head, one thread); ``--design`` uses the sizes of
the design (n_emb 384, 12 layers), for a GPU::

    python benchmarks/bench_action_experts.py --steps 300 --out runs/action_experts
    python benchmarks/bench_action_experts.py --design --steps 20000 --out runs/action_experts_gpu
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

MODES = ("shared", "head_only_parallel", "split_independent", "split_communicating")
CPU = [
    "head.n_emb=64", "head.n_layer=2", "head.n_head=2", "head.n_kv_head=1", "train.batch_size=16", "train.threads=1",
    "env.cameras=[top]", "env.default_episodes=20", "data.val_ratio=0.1",
]  # fmt: skip
DESIGN = ["head.n_emb=384", "head.n_layer=12", "head.n_head=6", "head.n_kv_head=2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps per mode")
    parser.add_argument("--out", type=Path, required=True, help="study directory (one run directory per mode)")
    parser.add_argument("--design", action="store_true", help="the design's head sizes (GPU), the env's full cameras")
    parser.add_argument("--layout", choices=("natural", "packed"), default="natural", help="policy.action_layout")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("overrides", nargs="*", help="extra KEY=VALUE for every run")
    args = parser.parse_args()

    budget = [
        f"train.max_steps={args.steps}", f"train.val_every={max(1, args.steps // 5)}", f"train.log_every={max(1, args.steps // 20)}",
        f"train.warmup_steps={max(1, args.steps // 10)}", "train.checkpoint_every=0", "train.progress=false",
        "eval.rollout_every=0", "eval.at_end=false", "eval.sample_steps=[1, 4, 16]", f"policy.action_layout={args.layout}",
    ]  # fmt: skip
    sizes = DESIGN if args.design else CPU
    runs = []
    for mode in args.modes:
        run_dir = args.out / mode
        if (run_dir / "summary.json").is_file():
            print(f"{mode}: finished earlier in {run_dir}", flush=True)
        else:
            command = [sys.executable, "-m", "polx", "train", "--head", "imf_attnres", "--env", "roboimi", "--run-dir", str(run_dir),
                       *budget, *sizes, f"head.action_expert_mode={mode}", *args.overrides]  # fmt: skip
            started = time.perf_counter()
            subprocess.run(command, check=True)
            print(f"{mode}: {time.perf_counter() - started:.0f} s wall", flush=True)
        runs.append(str(run_dir))
    subprocess.run([sys.executable, "-m", "polx", "compare", *runs, "--out", str(args.out / "tables")], check=True)


if __name__ == "__main__":
    sys.exit(main())
