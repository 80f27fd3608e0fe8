"""Training-step time on CPU: ``imf`` (improved MeanFlow, with its JVP) against ``ddpm``, equal size.

One step = the objective's ``compute_loss`` + backward + AdamW step, batch 64 of PushT-shaped chunks,
heads and objectives built through the plugin registry with the parameter matching of
``bench_inference.py`` (IMF defaults; DP-T depth closest in parameter count). Steps alternate
between the two policies so a busy machine slows both alike; figures are medians.

    python benchmarks/bench_train_step.py [--threads 1] [--steps 7] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from bench_inference import PUSHT_SPEC, build_policies


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    p = build_policies(ddpm_n_layer=args.ddpm_n_layer)
    B = args.batch_size
    g = torch.Generator().manual_seed(0)
    batch = {
        "action": torch.rand(B, PUSHT_SPEC.horizon, PUSHT_SPEC.action_dim, generator=g) * 2 - 1,
        "cond": torch.randn(B, PUSHT_SPEC.n_obs_steps, PUSHT_SPEC.cond_dim, generator=g),
        "action_is_pad": torch.zeros(B, PUSHT_SPEC.horizon, dtype=torch.bool),
    }
    steps = {
        "imf": make_step(p["imf_head"].train(), p["imf"], batch),
        "ddpm": make_step(p["ddpm_head"].train(), p["ddpm"], batch),
    }
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), batch {B}, chunk {PUSHT_SPEC}")
    print(
        f"parameters: imf_attnres {p['params']['imf_attnres'] / 1e6:.2f} M (defaults), "
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
    print(f"  imf / ddpm = {ratio:.2f} (target <= 2.5)")
    print(json.dumps({
        "threads": args.threads, "batch_size": B, "params": p["params"], "ddpm_n_layer": p["ddpm_n_layer"],
        "ms_per_step": {k: 1e3 * v for k, v in median.items()}, "imf_over_ddpm": ratio,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
