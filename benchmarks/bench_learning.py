"""Learning curves: test_mean_score against training steps and seconds, heads side by side.

Trains each ``--head`` with the same config file, dataset and overrides (one ``polx train``
process per run, exactly what a user types), rolling out on the 50 standard PushT test seeds
(100000..100049) every ``--eval-every`` steps and at the end. Then prints one table per run
(step, training seconds, test_mean_score, success rate; with ``--select-seeds`` also the score
on 50 training seeds, which is what to choose settings by, never the reported test seeds), draws
both curves (against steps and against training seconds, which exclude validation and
rollouts) to a PNG, and prints one JSON line.

    .venv/bin/python benchmarks/bench_learning.py --config configs/quickstart_cpu.yaml \\
        --heads imf_attnres,ddpm_transformer [--dataset PATH] [--eval-every 1000] \\
        [--parallel 2] [--out DIR] [KEY=VALUE ...]
    .venv/bin/python benchmarks/bench_learning.py --report RUN_DIR [RUN_DIR ...]   # finished runs

``--parallel N`` runs N trainings at once with ``train.threads=1`` each (two on a 2-core
machine); a run alone uses every core. ``--label`` names the runs in the tables and the plot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def polx_command() -> list[str]:
    exe = Path(sys.executable).with_name("polx")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "polx"]


def train(head: str, run_dir: Path, args: argparse.Namespace, threads: int | None) -> tuple[Path, float, int]:
    """One ``polx train`` in its own process; returns (run dir, wall seconds, exit code)."""
    cmd = [*polx_command(), "train", "--head", head, "--env", args.env, "--config", str(args.config), "--run-dir", str(run_dir)]
    if args.dataset:
        cmd += ["--dataset", str(args.dataset)]
    cmd += [f"eval.rollout_every={args.eval_every}", "eval.n_test=50", "eval.test_start_seed=100000", "train.progress=true"]
    cmd += [f"eval.n_train={50 if args.select_seeds else 0}"]
    if threads is not None:
        cmd.append(f"train.threads={threads}")
    cmd += args.overrides
    log = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{head}] {' '.join(cmd)}\n[{head}] output: {log}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - start
    print(f"[{head}] exit {rc} after {wall / 60:.1f} min", flush=True)
    return run_dir, wall, rc


def read_curve(run_dir: Path) -> dict:
    """Rollout points of a run: steps, training seconds, test and train scores, success rates."""
    records = [json.loads(line) for line in (run_dir / "logs.json.txt").read_text().splitlines() if line.strip()]
    config = (run_dir / "config.yaml").read_text()
    import yaml

    cfg = yaml.safe_load(config)
    points = [r for r in records if "test_mean_score" in r]
    by_step = {}
    for r in points:  # a resumed run's later record of a step wins
        by_step[r["global_step"]] = r
    points = [by_step[s] for s in sorted(by_step)]
    n_params = None
    manifest = run_dir / "manifest.json"
    if manifest.is_file():
        n_params = json.loads(manifest.read_text()).get("parameters")
    val = [r for r in records if "val_loss" in r]
    return {
        "run_dir": str(run_dir),
        "head": cfg["components"]["head"],
        "objective": cfg["components"]["objective"],
        "max_steps": cfg["train"]["max_steps"],
        "n_test": cfg["eval"]["n_test"],
        "test_start_seed": cfg["eval"]["test_start_seed"],
        "parameters": n_params,
        "steps": [int(r["global_step"]) for r in points],
        "train_time_s": [float(r.get("train_time_s", float("nan"))) for r in points],
        "test_mean_score": [float(r["test_mean_score"]) for r in points],
        "test_success_rate": [float(r.get("test_success_rate", float("nan"))) for r in points],
        "train_mean_score": [float(r["train_mean_score"]) if "train_mean_score" in r else None for r in points],
        "final_val_loss": float(val[-1]["val_loss"]) if val else None,
    }


def print_table(label: str, curve: dict) -> None:
    print(f"\n{label}: {curve['head']} ({curve['objective']}), {curve['n_test']} test seeds from {curve['test_start_seed']}")
    has_train = any(v is not None for v in curve["train_mean_score"])
    print(f"  {'step':>7} {'train min':>9} {'test score':>10} {'success':>8}" + (f" {'train-seed score':>16}" if has_train else ""))
    for i, step in enumerate(curve["steps"]):
        line = f"  {step:>7} {curve['train_time_s'][i] / 60:>9.1f} {curve['test_mean_score'][i]:>10.3f} {curve['test_success_rate'][i]:>8.0%}"
        if has_train:
            value = curve["train_mean_score"][i]
            line += f" {value:>16.3f}" if value is not None else f" {'':>16}"
        print(line)


def plot(curves: dict[str, dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for label, c in curves.items():
        by_step.plot(c["steps"], c["test_mean_score"], marker="o", label=label)
        by_time.plot([t / 60 for t in c["train_time_s"]], c["test_mean_score"], marker="o", label=label)
    by_step.set_xlabel("training step")
    by_time.set_xlabel("training minutes (steps only; CPU)")
    by_step.set_ylabel("test_mean_score (50 test seeds)")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1)
    by_step.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", type=Path, help="config file every run uses (e.g. configs/quickstart_cpu.yaml)")
    parser.add_argument("--heads", default="imf_attnres,ddpm_transformer", help="comma-separated heads to train")
    parser.add_argument("--env", default="pusht")
    parser.add_argument("--dataset", type=Path, help="default: the env's embedded default dataset")
    parser.add_argument("--eval-every", type=int, default=1000, help="steps between rollouts on the 50 test seeds")
    parser.add_argument("--select-seeds", action="store_true", help="also score 50 training seeds (seeds 0..49) at each rollout")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (each with one torch thread when > 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_learning" / time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--label", default="", help="prefix for the run labels")
    parser.add_argument("--report", nargs="+", type=Path, metavar="RUN_DIR", help="summarise finished runs instead of training")
    parser.add_argument("--plot", type=Path, help="where the PNG goes (default: learning_curves.png in the output directory)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for every run")
    args = parser.parse_args()

    if args.report:
        runs = {f"{args.label}{p.name}": p for p in args.report}
        walls: dict[str, float | None] = {label: None for label in runs}
        codes = {label: 0 for label in runs}
    else:
        if args.config is None:
            parser.error("--config is required unless --report is given")
        heads = [h for h in args.heads.split(",") if h]
        threads = 1 if args.parallel > 1 else None
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            futures = {h: pool.submit(train, h, args.out / h, args, threads) for h in heads}
            results = {h: f.result() for h, f in futures.items()}
        runs = {f"{args.label}{h}": r[0] for h, r in results.items()}
        walls = {f"{args.label}{h}": r[1] for h, r in results.items()}
        codes = {f"{args.label}{h}": r[2] for h, r in results.items()}

    curves = {}
    for label, run_dir in runs.items():
        if codes[label] != 0 or not (run_dir / "logs.json.txt").is_file():
            print(f"\n{label}: run failed (see {run_dir.with_suffix('.log')})")
            continue
        curves[label] = read_curve(run_dir)
        print_table(label, curves[label])
    if curves:
        plot(curves, args.plot or (args.out if not args.report else args.report[0].parent) / "learning_curves.png")
    summary = {
        label: {
            "head": c["head"],
            "final_step": c["steps"][-1] if c["steps"] else None,
            "final_test_mean_score": c["test_mean_score"][-1] if c["steps"] else None,
            "final_test_success_rate": c["test_success_rate"][-1] if c["steps"] else None,
            "train_minutes": c["train_time_s"][-1] / 60 if c["steps"] else None,
            "wall_minutes": walls[label] / 60 if walls[label] is not None else None,
            "n_test": c["n_test"],
            "curve": {k: c[k] for k in ("steps", "train_time_s", "test_mean_score", "test_success_rate", "train_mean_score")},
        }
        for label, c in curves.items()
    }
    print(json.dumps({"bench": "learning", "env": args.env, "cpu_count": os.cpu_count(), "runs": summary}))
    if any(codes.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
