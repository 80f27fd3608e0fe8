"""Training-step time on CPU: ``imf`` (improved MeanFlow, with its JVP) against ``ddpm``, equal size.

One step = the objective's ``compute_loss`` + backward + AdamW step, batch 64 of PushT-shaped chunks,
heads and objectives built through the plugin registry with the parameter matching of
``bench_inference.py`` (IMF defaults; DP-T depth closest in parameter count). Steps alternate
between the two policies so a busy machine slows both alike; figures are medians.

    python benchmarks/bench_train_step.py [--threads 1] [--steps 7] [--batch-size 64]
    python benchmarks/bench_train_step.py --recipe   # the CPU recipes' size: n_emb 96, 3 layers, keypoints

``--recipe`` times the heads at the size of ``configs/quickstart_cpu.yaml`` and
``configs/pusht_keypoints_cpu.yaml`` (keypoint condition, 20 wide) and reports samples/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from polx.components import ObsActionSpec

from bench_inference import PUSHT_SPEC, build_policies

KEYPOINT_SPEC = ObsActionSpec(action_dim=2, horizon=16, n_obs_steps=2, cond_dim=20)


def make_step(head: torch.nn.Module, objective, batch: dict):
    optimizer = torch.optim.AdamW(head.get_optim_groups(weight_decay=1e-3), lr=1e-4, betas=(0.9, 0.95))

    def step() -> dict:
        loss, metrics = objective.compute_loss(head, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return metrics

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady on a shared machine)")
    parser.add_argument("--steps", type=int, default=7, help="timed steps per policy (after 2 warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ddpm-n-layer", type=int, default=None, help="DP-T depth (default: matched on parameters)")
    parser.add_argument("--recipe", action="store_true", help="the CPU recipes' size (n_emb 96, 3 layers, keypoint condition)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    spec = KEYPOINT_SPEC if args.recipe else PUSHT_SPEC
    size = {"n_emb": 96, "imf_n_layer": 3} if args.recipe else {}
    p = build_policies(spec, ddpm_n_layer=args.ddpm_n_layer, **size)
    B = args.batch_size
    g = torch.Generator().manual_seed(0)
    batch = {
        "action": torch.rand(B, spec.horizon, spec.action_dim, generator=g) * 2 - 1,
        "cond": torch.randn(B, spec.n_obs_steps, spec.cond_dim, generator=g),
        "action_is_pad": torch.zeros(B, spec.horizon, dtype=torch.bool),
    }
    steps = {
        "imf": make_step(p["imf_head"].train(), p["imf"], batch),
        "ddpm": make_step(p["ddpm_head"].train(), p["ddpm"], batch),
    }
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), batch {B}, chunk {spec}")
    print(
        f"parameters: imf_attnres {p['params']['imf_attnres'] / 1e6:.2f} M ({'n_emb 96, 3 layers' if args.recipe else 'defaults'}), "
        f"ddpm_transformer {p['params']['ddpm_transformer'] / 1e6:.2f} M at n_layer={p['ddpm_n_layer']}"
    )
    for step in steps.values():
        for _ in range(2):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    ratio = median["imf"] / median["ddpm"]
    print(f"  imf  step (forward + JVP + backward + AdamW)  {1e3 * median['imf']:9.1f} ms")
    print(f"  ddpm step (forward + backward + AdamW)        {1e3 * median['ddpm']:9.1f} ms")
    print(f"  samples/s: imf {B / median['imf']:.0f}, ddpm {B / median['ddpm']:.0f}")
    print(f"  imf / ddpm = {ratio:.2f} (target <= 2.5)")
    print(json.dumps({
        "threads": args.threads, "batch_size": B, "recipe_size": args.recipe, "params": p["params"],
        "ddpm_n_layer": p["ddpm_n_layer"], "ms_per_step": {k: 1e3 * v for k, v in median.items()},
        "samples_per_s": {k: B / v for k, v in median.items()}, "imf_over_ddpm": ratio,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
