"""How a DAgger round should train: the learning-rate schedule and the normaliser, chosen on validation seeds.

From one finished DAgger run with a checkpoint teacher (``bench_dagger.py --teacher``'s
``seedN/dagger``), round 1 is trained again under each variant from the same Phase I checkpoint
on the same round-1 data (Phase I's unrolls plus round 1's labelled rollouts, rebuilt from
``data/phase1.zarr`` and ``data/rollouts_001.zarr``):

- ``restart``: the round's own warmup (``dagger.round_warmup_steps``) and cosine from ``train.lr``;
- ``restart_low``: the same from a quarter of ``train.lr`` (``dagger.round_lr_scale``'s default);
- ``stretch``: Phase I's cosine stretched over the new ``train.max_steps`` (a small warm restart);
- ``restart_keep``: ``restart`` with Phase I's normaliser kept instead of refitted;
- ``stretch_keep``: what ``polx dagger`` did before both options existed.

Each round-1 checkpoint is then scored on 50 validation seeds (500000 on, away from the test
seeds 100000-100049 and every seed DAgger collects on), and the choice is made there; the test
score each stage computes at its end is printed beside it but not used. Readable lines, then one
JSON line::

    python benchmarks/bench_dagger_rounds.py --run runs/bd0/seed0/dagger --out runs/bd_rounds
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

from bench_dagger import write_prefix
from polx.dagger import prepare_dagger, run_dagger, stage_dir
from polx.data.replay_buffer import ReplayBuffer
from polx.eval.evaluate import evaluate_checkpoint
from polx.plugins import load_plugins

VARIANTS = {
    "restart": {"schedule": "restart", "normalizer": "refit", "round_lr_scale": 1.0},
    "restart_low": {"schedule": "restart", "normalizer": "refit", "round_lr_scale": 0.25},
    "stretch": {"schedule": "stretch", "normalizer": "refit", "round_lr_scale": 1.0},
    "restart_keep": {"schedule": "restart", "normalizer": "keep", "round_lr_scale": 1.0},
    "stretch_keep": {"schedule": "stretch", "normalizer": "keep", "round_lr_scale": 1.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a polx dagger run directory with a checkpoint teacher and phase1=unrolls")
    parser.add_argument("--out", type=Path, required=True, help="working directory (must not exist)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--val-seed", type=int, default=500_000, help="first validation seed")
    parser.add_argument("--val-episodes", type=int, default=50)
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"--out {args.out} exists; choose a new directory")
    request = yaml.safe_load((args.run / "dagger.yaml").read_text())
    if request.get("teacher", "expert") == "expert" or request["dagger"]["phase1"] != "unrolls":
        sys.exit(f"--run {args.run}: needs a run with --teacher CKPT and dagger.phase1=unrolls")
    plugins = load_plugins(entry_points=list(metadata.entry_points(group="polx")))
    started = time.perf_counter()
    rows = []
    for name in args.variants:
        run_dir = args.out / name
        (run_dir / "data").mkdir(parents=True)
        for item in ("phase1.zarr", "phase1.json", "round_001.json"):
            source = args.run / "data" / item
            (shutil.copytree if source.is_dir() else shutil.copy)(source, run_dir / "data" / item)
        rebuilt = run_dir / "data" / "round_001.zarr"  # Phase I's unrolls, then round 1's rollouts, as round 1 wrote them
        write_prefix(rebuilt, [(ReplayBuffer.open(args.run / "data" / "phase1.zarr"), 10**9), (ReplayBuffer.open(args.run / "data" / "rollouts_001.zarr"), 10**9)])
        shutil.copytree(args.run / "stages" / "round_000", run_dir / "stages" / "round_000")
        variant = dict(VARIANTS[name])
        (run_dir / "dagger.yaml").write_text(yaml.safe_dump({**request, "rounds": 1, "dagger": {**request["dagger"], **variant}}, sort_keys=False))
        t0 = time.perf_counter()
        plan = prepare_dagger(plugins, head=None, env=None, resume_dir=run_dir)
        run_dagger(plan)
        table = json.loads((run_dir / "summary.json").read_text())["table"]
        checkpoint = stage_dir(plan, 1) / "checkpoints" / "latest.ckpt"
        val = evaluate_checkpoint(plugins, checkpoint, episodes=args.val_episodes, seed=args.val_seed, out=run_dir / "val_eval",
                                  overrides=["eval.n_vis=0", "eval.n_train=0"])  # fmt: skip
        rows.append({"variant": name, **variant, "val_score": val["metrics"]["test_mean_score"], "test_score": table[-1]["test_mean_score"],
                     "phase1_test_score": table[0]["test_mean_score"], "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
        print(f"{name:>13}: validation {rows[-1]['val_score']:.3f}  (test {rows[-1]['test_score']:.3f}, Phase I {rows[-1]['phase1_test_score']:.3f})", flush=True)
    best = max(rows, key=lambda r: r["val_score"])
    print(f"best on the validation seeds: {best['variant']}")
    print(json.dumps({"bench": "dagger_round_mechanics", "run": str(args.run), "val_seeds": [args.val_seed, args.val_seed + args.val_episodes - 1],
                      "rows": rows, "best": best["variant"], "seconds": round(time.perf_counter() - started, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
