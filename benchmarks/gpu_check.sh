#!/usr/bin/env bash
# The GPU recipes, bounded: on a CUDA machine, trains configs/pusht_image_gpu.yaml and
# configs/roboimi_imf_gpu.yaml for MINUTES training minutes each (train.max_minutes), rolls each
# out once on 50 test seeds, and prints steps/s, peak GPU memory and the 50-seed score per recipe,
# then one JSON line. The default (1.5 minutes each) is sized for the whole script, data and
# 50-episode rollouts included, to finish within 9 minutes on a machine with 8 or more cores (not
# yet timed on a GPU); the scores after so few steps check the recipes run, not what they reach.
#
#   bash benchmarks/gpu_check.sh [MINUTES] [OUT_DIR]     # defaults: 1.5, runs/gpu_check/<time>
#
# Needs .venv (scripts/bootstrap.sh makes it) and a CUDA device; exits 2 without one.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-1.5}
out=${2:-runs/gpu_check/$(date +%Y%m%d-%H%M%S)}
if ! [[ $minutes =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    echo "gpu_check.sh: MINUTES must be a positive number of training minutes per recipe; got '$minutes'" >&2
    exit 2
fi
[ -x .venv/bin/polx ] || bash scripts/bootstrap.sh
py=.venv/bin/python
polx=.venv/bin/polx
if ! $py -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device visible to torch; this check is for a GPU machine (the CPU recipes are configs/*_cpu.yaml)" >&2
    exit 2
fi
mkdir -p "$out"
workers=$(( $(nproc) > 8 ? 8 : $(nproc) ))
started=$(date +%s)

echo "gpu_check: $minutes training minutes per recipe, $workers rollout workers, output in $out"
echo "gpu_check: RoboIMI expert demonstrations (50 episodes, 96 px, 3 cameras)"
$polx data generate --env roboimi --episodes 50 --out "$out/roboimi_demos.zarr" --workers "$workers" env.image_size=96 \
    > "$out/roboimi_demos.log" 2>&1

common=(train.device=cuda "train.max_minutes=$minutes" train.val_every=0 eval.rollout_every=0 eval.at_end=true
        eval.n_test=50 eval.test_start_seed=100000 eval.n_train=0 "eval.n_envs=$workers" eval.n_vis=2 train.progress=false)
echo "gpu_check: PushT images, configs/pusht_image_gpu.yaml"
$polx train --head imf_attnres --env pusht --config configs/pusht_image_gpu.yaml --run-dir "$out/pusht_image" \
    "${common[@]}" > "$out/pusht_image.log" 2>&1 || { tail -20 "$out/pusht_image.log" >&2; exit 1; }
echo "gpu_check: RoboIMI cameras, configs/roboimi_imf_gpu.yaml"
$polx train --head imf_attnres --env roboimi --config configs/roboimi_imf_gpu.yaml --run-dir "$out/roboimi" \
    --dataset "$out/roboimi_demos.zarr" "${common[@]}" > "$out/roboimi.log" 2>&1 || { tail -20 "$out/roboimi.log" >&2; exit 1; }

$py - "$out" "$minutes" "$started" <<'EOF'
import json, sys, time
from pathlib import Path

out, minutes, started = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
rows = {}
for name in ("pusht_image", "roboimi"):
    run = out / name
    records = [json.loads(line) for line in (run / "logs.json.txt").read_text().splitlines() if line.strip()]
    train = [r for r in records if "train_time_s" in r and "train_loss" in r]
    final = json.loads((run / "summary.json").read_text())["metrics"]
    steps = max(r["global_step"] for r in train)
    seconds = max(r["train_time_s"] for r in train)
    row = {
        "steps": steps,
        "train_s": round(seconds, 1),
        "steps_per_s": round(steps / seconds, 2),
        "peak_memory_mb": max(r.get("peak_memory_mb") or 0 for r in records),
        "test_mean_score": final.get("test_mean_score"),
        "test_success_rate": final.get("test_success_rate"),
        "n_test": 50,
    }
    rows[name] = row
    print(f"{name:<12} {steps:>6} steps in {seconds / 60:.1f} min ({row['steps_per_s']} steps/s), "
          f"peak {row['peak_memory_mb']:.0f} MB, test_mean_score {row['test_mean_score']:.3f} on 50 seeds")
print(f"gpu_check: {(time.time() - started) / 60:.1f} minutes in all")
print(json.dumps({"bench": "gpu_check", "minutes_per_recipe": minutes, "wall_s": round(time.time() - started), **rows}))
EOF
