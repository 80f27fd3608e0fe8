"""Image encoders on a CPU: frames/s for forward + backward, per ``encoder.backbone`` and image size.

Times what one training step asks of the encoder: uint8 frames (as the data loader hands them
over) cropped, scaled and normalised per batch, through the backbone, and the gradient of the
features back through it, with an AdamW step on the encoder's parameters. Every backbone sees
the same frames; timings are medians of ``--repeats`` calls after one warm-up call.

    .venv/bin/python benchmarks/bench_encoder.py [--threads 2] [--frames 128] [--repeats 5]
    .venv/bin/python benchmarks/bench_encoder.py --sizes 64,84,96 --backbones convnet

``--sizes`` are the crop sides the backbone sees (frames are stored 8/7 larger and cropped, as the
recipes do: 96 -> 84, 64 -> 56). 128 frames is one batch of 64 windows with two observation steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from polx.config import EncoderConfig
from polx.policy.encoder import ObsEncoder

#: name -> EncoderConfig fields; ``convnet`` is the CPU recipes' encoder, ``resnet18`` the GPU recipes'
BACKBONES = {
    "resnet18": {"backbone": "resnet18", "feature_dim": 512},
    "convnet": {"backbone": "convnet", "channels": (32, 32, 64, 64), "feature_dim": 64},
    "convnet-wide": {"backbone": "convnet", "channels": (32, 64, 64, 64), "feature_dim": 128},
}


def time_backbone(name: str, crop: int, frames: int, repeats: int) -> dict:
    stored = crop * 8 // 7
    meta = {"obs": {"image": {"shape": [3, stored, stored], "type": "rgb"}}, "action": {"shape": [2]}}
    encoder = ObsEncoder(meta, EncoderConfig(crop_shape=(crop, crop), **BACKBONES[name])).train()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    obs = {"image": torch.randint(0, 256, (frames // 2, 2, 3, stored, stored), dtype=torch.uint8, generator=generator)}

    def step() -> None:
        loss = encoder(obs).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, first-call kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "backbone": name,
        "crop": crop,
        "stored": stored,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "seconds_per_call": seconds,
        "frames_per_s": frames / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--frames", type=int, default=128, help="frames per call (even: windows x 2 observation steps)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="56,84,96", help="comma-separated crop sides")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help=f"comma-separated, of {', '.join(BACKBONES)}")
    args = parser.parse_args()
    if args.frames < 2 or args.frames % 2:
        parser.error(f"--frames must be an even number >= 2; got {args.frames}")
    unknown = [b for b in args.backbones.split(",") if b not in BACKBONES]
    if unknown:
        parser.error(f"unknown backbone(s) {unknown}; choose from {', '.join(BACKBONES)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"forward + backward + AdamW on {args.frames} uint8 frames, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'backbone':<13} {'crop':>5} {'params':>9} {'s/call':>8} {'frames/s':>9}")
    rows = []
    for name in args.backbones.split(","):
        for crop in (int(s) for s in args.sizes.split(",")):
            row = time_backbone(name, crop, args.frames, args.repeats)
            rows.append(row)
            print(f"{name:<13} {crop:>5} {row['parameters'] / 1e6:>8.2f}M {row['seconds_per_call']:>8.3f} {row['frames_per_s']:>9.0f}", flush=True)
    print(json.dumps({"bench": "encoder", "threads": args.threads, "frames": args.frames, "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
