"""Inference latency per action chunk on CPU: IMF one-step against DP-T with DDIM-10 and DDPM-100.

Both policies are built through the plugin registry, exactly as ``polx train`` builds them:
head ``imf_attnres`` + objective ``imf``, and head ``ddpm_transformer`` + objective ``ddpm``.
The chunk is PushT's (horizon 16, 2 observation steps, 2-D actions) and the condition is what the
image encoder hands a head there (ResNet-18 features 512 + agent position 2 = 514 per step).

IMF keeps its defaults; DP-T gets the decoder depth whose parameter count is closest to IMF's
(both counts are printed). Every case is timed in turn inside each repeat (so a busy machine
slows them alike); figures are medians, reported per chunk and as ratios.

    python benchmarks/bench_inference.py [--threads 1] [--repeats 15] [--batch-sizes 1 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from polx.components import ObsActionSpec
from polx.plugins import load_plugins

PUSHT_SPEC = ObsActionSpec(action_dim=2, horizon=16, n_obs_steps=2, cond_dim=514)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_policies(
    spec: ObsActionSpec = PUSHT_SPEC, ddpm_n_layer: int | None = None, seed: int = 0, n_emb: int | None = None, imf_n_layer: int | None = None
) -> dict:
    """IMF (defaults, or ``n_emb`` x ``imf_n_layer``) and DP-T heads and objectives from the registry.

    DP-T gets the same ``n_emb`` and the depth whose parameter count is closest to IMF's.
    """
    registry = load_plugins().registry
    needed = [("head", "imf_attnres"), ("objective", "imf"), ("head", "ddpm_transformer"), ("objective", "ddpm")]
    missing = [f"{kind} {name!r}" for kind, name in needed if name not in registry.names(kind)]
    if missing:
        raise SystemExit(f"not registered: {', '.join(missing)}; install the imf_attnres and ddpm_transformer plugins")
    torch.manual_seed(seed)
    imf_c, ddpm_c = registry.get("head", "imf_attnres"), registry.get("head", "ddpm_transformer")
    imf_kw = {k: v for k, v in {"n_emb": n_emb, "n_layer": imf_n_layer}.items() if v is not None}
    ddpm_kw = {"n_emb": n_emb} if n_emb is not None else {}
    imf_head = imf_c.build(imf_c.config_cls(**imf_kw), spec)
    default_ddpm_params = n_params(ddpm_c.build(ddpm_c.config_cls(**ddpm_kw), spec))
    if ddpm_n_layer is None:  # the depth whose parameter count is closest to IMF's
        counts = {n: n_params(ddpm_c.build(ddpm_c.config_cls(n_layer=n, **ddpm_kw), spec)) for n in range(1, 17)}
        ddpm_n_layer = min(counts, key=lambda n: abs(counts[n] - n_params(imf_head)))
    ddpm_head = ddpm_c.build(ddpm_c.config_cls(n_layer=ddpm_n_layer, **ddpm_kw), spec)

    def objective(name: str):
        component = registry.get("objective", name)
        return component.build(component.config_cls())

    return {
        "imf_head": imf_head,
        "imf": objective("imf"),
        "ddpm_head": ddpm_head,
        "ddpm": objective("ddpm"),
        "ddpm_n_layer": ddpm_n_layer,
        "params": {
            "imf_attnres": n_params(imf_head),
            "ddpm_transformer": n_params(ddpm_head),
            "ddpm_transformer_default_8_layers": default_ddpm_params,
        },
    }


def time_cases(cases: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each case; each repeat runs every case once, in turn."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady on a shared machine)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--ddpm-repeats", type=int, default=3, help="repeats of DDPM-100 (100 forwards each)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--ddpm-n-layer", type=int, default=None, help="DP-T depth (default: matched on parameters)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    p = build_policies(ddpm_n_layer=args.ddpm_n_layer)
    imf_head, imf, ddpm_head, ddpm = p["imf_head"].eval(), p["imf"], p["ddpm_head"].eval(), p["ddpm"]
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), chunk {PUSHT_SPEC}")
    print(
        f"parameters: imf_attnres {p['params']['imf_attnres'] / 1e6:.2f} M (defaults), ddpm_transformer "
        f"{p['params']['ddpm_transformer'] / 1e6:.2f} M at n_layer={p['ddpm_n_layer']} (its 8-layer default: "
        f"{p['params']['ddpm_transformer_default_8_layers'] / 1e6:.2f} M)"
    )
    results: dict = {"threads": args.threads, "params": p["params"], "ddpm_n_layer": p["ddpm_n_layer"], "batch": {}}
    for B in args.batch_sizes:
        g = torch.Generator().manual_seed(0)
        cond = torch.randn(B, PUSHT_SPEC.n_obs_steps, PUSHT_SPEC.cond_dim, generator=g)
        z = torch.randn(B, PUSHT_SPEC.horizon, PUSHT_SPEC.action_dim, generator=g)
        zeros, ones, steps = torch.zeros(B), torch.ones(B), torch.full((B,), 50, dtype=torch.long)

        def forward_imf():
            with torch.no_grad():
                imf_head(z, zeros, ones, cond)

        def forward_ddpm():
            with torch.no_grad():
                ddpm_head(z, steps, cond)

        fast = time_cases(
            {
                "imf_forward": forward_imf,
                "imf_one_step": lambda: imf.sample(imf_head, cond, None, g),
                "ddpm_forward": forward_ddpm,
                "ddim_10": lambda: ddpm.sample(ddpm_head, cond, 10, g),
            },
            args.repeats,
        )
        slow = time_cases({"ddpm_100": lambda: ddpm.sample(ddpm_head, cond, 100, g)}, args.ddpm_repeats)
        t = {**fast, **slow}
        row = {
            "ms_per_chunk": {k: 1e3 * v / B for k, v in t.items()},
            "imf_one_step_over_forward": t["imf_one_step"] / t["imf_forward"],
            "ddim_10_over_forward": t["ddim_10"] / t["ddpm_forward"],
            "ddpm_100_over_forward": t["ddpm_100"] / t["ddpm_forward"],
            "imf_forward_over_ddpm_forward": t["imf_forward"] / t["ddpm_forward"],
            "speedup_vs_ddim_10": t["ddim_10"] / t["imf_one_step"],
            "speedup_vs_ddpm_100": t["ddpm_100"] / t["imf_one_step"],
        }
        results["batch"][str(B)] = row
        ms = row["ms_per_chunk"]
        print(f"\nbatch {B}: milliseconds per chunk (median)")
        print(f"  imf_attnres forward        {ms['imf_forward']:9.3f}")
        print(f"  imf one-step sample        {ms['imf_one_step']:9.3f}   "
              f"{row['imf_one_step_over_forward']:.2f}x its forward (target ~1.0)")  # fmt: skip
        print(f"  ddpm_transformer forward   {ms['ddpm_forward']:9.3f}   "
              f"(imf forward / this = {row['imf_forward_over_ddpm_forward']:.2f})")  # fmt: skip
        print(f"  DDIM-10 sample             {ms['ddim_10']:9.3f}   {row['ddim_10_over_forward']:.2f}x its forward")
        print(f"  DDPM-100 sample            {ms['ddpm_100']:9.3f}   {row['ddpm_100_over_forward']:.2f}x its forward")
        print(f"  imf one-step is {row['speedup_vs_ddim_10']:.2f}x faster than DDIM-10 (target >= 8) "
              f"and {row['speedup_vs_ddpm_100']:.1f}x faster than DDPM-100")  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main()
