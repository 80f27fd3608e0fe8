"""Batch-assembly speed on the real PushT image demos, against one training step's cost.

Windows/s of ``PolicyDataset.get_batch`` (the vectorised path) and of a torch ``DataLoader`` over
``__getitem__`` (the per-item path), at batch 64, horizon 16, n_obs_steps 2, n_action_steps 8;
then the time of one CPU forward+backward of a ResNet-18 over the batch's images (just the
observation encoder of a policy, so a lower bound on a training step) for comparison.

    .venv/bin/python benchmarks/bench_data.py [--dataset PATH] [--batches 200]

Prints readable lines, then one JSON object on its own line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from polx.data.dataset import PolicyDataset
from polx.data.replay_buffer import ReplayBuffer

DEFAULT_DATASET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"
BATCH, HORIZON, N_OBS, N_ACTION = 64, 16, 2, 8


def load_pusht(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The arrays the PushT env adapter's ``dataset_obs`` makes: uint8 HWC images, agent xy, action."""
    rb = ReplayBuffer.open(path)
    raw = rb.load(["img", "state", "action"])
    arrays = {
        "image": raw["img"].astype(np.uint8),  # stored as float32 0..255; uint8 is 4x smaller
        "agent_pos": raw["state"][:, :2].astype(np.float32),
        "action": raw["action"].astype(np.float32),
    }
    return arrays, rb.episode_ends


def time_get_batch(ds: PolicyDataset, n_batches: int, rng: np.random.Generator) -> list[float]:
    ds.get_batch(rng.integers(0, len(ds), BATCH))  # warm-up
    times = []
    for _ in range(n_batches):
        idxs = rng.integers(0, len(ds), BATCH)
        t0 = time.perf_counter()
        ds.get_batch(idxs)
        times.append(time.perf_counter() - t0)
    return times


def time_dataloader(ds: PolicyDataset, n_batches: int, workers: int) -> float:
    """Seconds per batch, steady state (the first batch, which starts the workers, not counted)."""
    loader = torch.utils.data.DataLoader(
        ds, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return (time.perf_counter() - t0) / n_batches


def time_encoder_step(n_steps: int) -> float:
    """Seconds of one forward+backward of a torchvision ResNet-18 over B * To images (CPU)."""
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=64)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    images = torch.rand(BATCH * N_OBS, 3, 96, 96)
    times = []
    for _ in range(n_steps + 1):
        t0 = time.perf_counter()
        net(images).square().mean().backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--batches", type=int, default=200, help="batches timed for get_batch")
    parser.add_argument("--loader-batches", type=int, default=30, help="batches timed per DataLoader setting")
    args = parser.parse_args()
    if not args.dataset.exists():
        raise SystemExit(f"dataset {str(args.dataset)!r} not found; pass --dataset PATH")

    t0 = time.perf_counter()
    arrays, episode_ends = load_pusht(args.dataset)
    load_s = time.perf_counter() - t0
    ds = PolicyDataset(
        arrays, episode_ends, horizon=HORIZON, n_obs_steps=N_OBS, n_action_steps=N_ACTION, rgb_keys=("image",)
    )
    print(f"loaded {len(episode_ends)} episodes, {len(arrays['action'])} steps, {len(ds)} windows in {load_s:.1f} s")
    print(
        f"torch threads: 1 for batch assembly, {torch.get_num_threads()} for the ResNet step; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"batch {BATCH}, horizon {HORIZON}, n_obs_steps {N_OBS}, n_action_steps {N_ACTION}"
    )

    # Batch assembly runs in loader workers (one torch thread each) or, for get_batch, in NumPy;
    # measure it the same way. Several torch threads in the main-process collate were 10-50x
    # slower on an oversubscribed machine (OpenMP threads spinning against other processes).
    train_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    times = time_get_batch(ds, args.batches, rng)
    batch_s, best_s = statistics.median(times), float(np.percentile(times, 10))
    get_batch_wps = BATCH / batch_s
    print(
        f"get_batch:              {batch_s * 1e3:7.2f} ms/batch  {get_batch_wps:10.0f} windows/s "
        f"(10th percentile {best_s * 1e3:.2f} ms: {BATCH / best_s:.0f} windows/s)"
    )

    loader_wps = {}
    for workers in (0, 2):
        per_batch = time_dataloader(ds, args.loader_batches, workers)
        loader_wps[workers] = BATCH / per_batch
        print(f"DataLoader workers={workers}:   {per_batch * 1e3:7.2f} ms/batch  {loader_wps[workers]:10.0f} windows/s")

    torch.set_num_threads(train_threads)
    step_s = time_encoder_step(n_steps=3)
    print(
        f"ResNet-18 fwd+bwd over {BATCH}x{N_OBS} images (CPU): {step_s * 1e3:.0f} ms/step "
        f"-> get_batch is {step_s / batch_s:.0f}x faster than this part of one training step"
    )
    print(
        json.dumps(
            {
                "benchmark": "bench_data",
                "dataset_steps": int(len(arrays["action"])),
                "windows": len(ds),
                "load_s": round(load_s, 2),
                "get_batch_ms": round(batch_s * 1e3, 3),
                "get_batch_windows_per_s": round(get_batch_wps),
                "get_batch_p10_windows_per_s": round(BATCH / best_s),
                "load_average": round(os.getloadavg()[0], 1),
                "dataloader_w0_windows_per_s": round(loader_wps[0]),
                "dataloader_w2_windows_per_s": round(loader_wps[2]),
                "encoder_step_cpu_ms": round(step_s * 1e3, 1),
                "get_batch_vs_encoder_step": round(step_s / batch_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
