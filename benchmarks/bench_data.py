"""Data-layer speed: batch assembly on the real PushT image demos, and windows/s from each dataset format.

``pusht`` (needs ``../shared/data/pusht``; skipped with a note when absent): windows/s of
``PolicyDataset.get_batch`` (the vectorised path) and of a torch ``DataLoader`` over
``__getitem__`` (the per-item path), at batch 64, horizon 16, n_obs_steps 2, n_action_steps 8;
then the time of one CPU forward+backward of a ResNet-18 over the batch's images (just the
observation encoder of a policy, so a lower bound on a training step) for comparison.

``formats``: the same synthetic episodes (two uint8 cameras, a low-dim state, an action) written
once per format with polx's own writers (``polx data convert``'s), then for each format:

- ``open_s``: ``open_dataset`` (detection and validation);
- ``epoch_windows_per_s``: what a training epoch sees from a cold start: open, load every array,
  then assemble every window once with ``PolicyDataset.get_batch``;
- ``lazy_windows_per_s``: random batches with the cameras read through ``CachedFrames`` whose
  budget holds a quarter of the frames (the path of a dataset larger than memory), from a
  fresh reader, first reads included.

    .venv/bin/python benchmarks/bench_data.py [--only pusht|formats] [--dataset PATH] [--episodes 20] [--steps 100] [--size 96]

Prints readable lines, then one JSON object on its own line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from polx.data.dataset import PolicyDataset
from polx.data.formats import CachedFrames, dataset_formats, load_arrays, open_dataset
from polx.data.replay_buffer import ReplayBuffer
from polx.plugins import load_plugins

DEFAULT_DATASET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"
BATCH, HORIZON, N_OBS, N_ACTION = 64, 16, 2, 8
CAMERAS = ("top", "wrist")


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


def bench_pusht(args) -> dict | None:
    if not args.dataset.exists():
        print(f"pusht: skipped, dataset {str(args.dataset)!r} not found (pass --dataset PATH)")
        return None
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
    return {
        "dataset_steps": int(len(arrays["action"])),
        "windows": len(ds),
        "load_s": round(load_s, 2),
        "get_batch_ms": round(batch_s * 1e3, 3),
        "get_batch_windows_per_s": round(get_batch_wps),
        "get_batch_p10_windows_per_s": round(BATCH / best_s),
        "dataloader_w0_windows_per_s": round(loader_wps[0]),
        "dataloader_w2_windows_per_s": round(loader_wps[2]),
        "encoder_step_cpu_ms": round(step_s * 1e3, 1),
        "get_batch_vs_encoder_step": round(step_s / batch_s, 1),
    }


def make_episodes(n: int, steps: int, size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Smooth images (they compress like camera frames, unlike noise) and random low-dim arrays."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(n):
        phase = rng.uniform(0, 6.28, size=(steps, 1, 1))
        ep = {"action": rng.normal(size=(steps, 2)).astype(np.float32), "state": rng.normal(size=(steps, 5)).astype(np.float32)}
        for k, cam in enumerate(CAMERAS):
            base = 127 + 120 * np.sin((xx + 3 * k) / 9.0 + phase) * np.cos(yy / 13.0)
            ep[cam] = np.repeat(base[..., None], 3, axis=-1).astype(np.uint8)
        out.append(ep)
    return out


def epoch_rate(path: Path, registry) -> tuple[float, float, int]:
    """(open seconds, windows/s over open + load + one epoch of get_batch, windows)."""
    t0 = time.perf_counter()
    reader = open_dataset(path, registry=registry)
    open_s = time.perf_counter() - t0
    ds = PolicyDataset(
        load_arrays(reader), reader.episode_ends, horizon=HORIZON, n_obs_steps=N_OBS, n_action_steps=N_ACTION, rgb_keys=CAMERAS
    )
    for start in range(0, len(ds), BATCH):
        ds.get_batch(range(start, min(start + BATCH, len(ds))))
    return open_s, len(ds) / (time.perf_counter() - t0), len(ds)


def lazy_rate(path: Path, registry, n_batches: int, rng: np.random.Generator) -> float:
    """Windows/s of random batches with the cameras behind ``CachedFrames`` holding a quarter of
    the frames (the trainer's path for data larger than memory), from a fresh reader."""
    t0 = time.perf_counter()
    reader = open_dataset(path, registry=registry)
    arrays = load_arrays(reader, [k for k in reader.keys() if k not in CAMERAS])
    for cam in CAMERAS:
        shape, dtype = reader.array_info(cam)
        arrays[cam] = CachedFrames(reader, cam, int(np.prod(shape)) * np.dtype(dtype).itemsize // 4)
    ds = PolicyDataset(arrays, reader.episode_ends, horizon=HORIZON, n_obs_steps=N_OBS, n_action_steps=N_ACTION, rgb_keys=CAMERAS)
    for _ in range(n_batches):
        ds.get_batch(rng.integers(0, len(ds), BATCH))
    return n_batches * BATCH / (time.perf_counter() - t0)


def bench_formats(args) -> dict:
    registry = load_plugins().registry
    formats = {name: f for name, f in dataset_formats(registry).items() if callable(getattr(f, "write", None))}
    episodes = make_episodes(args.episodes, args.steps, args.size)
    print(
        f"formats: {args.episodes} episodes x {args.steps} steps, cameras {', '.join(CAMERAS)} {args.size}x{args.size}; "
        f"batch {BATCH}, horizon {HORIZON}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fmt in formats.items():
            path = Path(tmp) / name
            t0 = time.perf_counter()
            fmt.write(path, iter(episodes))
            write_s = time.perf_counter() - t0
            size_mb = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
            open_s, epoch_wps, windows = epoch_rate(path, registry)
            lazy_wps = lazy_rate(path, registry, args.lazy_batches, np.random.default_rng(0))
            results[name] = {
                "write_s": round(write_s, 2), "size_mb": round(size_mb, 1), "open_s": round(open_s, 3),
                "epoch_windows_per_s": round(epoch_wps), "lazy_windows_per_s": round(lazy_wps), "windows": windows,
            }  # fmt: skip
            print(
                f"{name:8s} write {write_s:6.2f} s  {size_mb:7.1f} MiB  open {open_s * 1e3:7.1f} ms  "
                f"epoch {epoch_wps:9.0f} windows/s  lazy {lazy_wps:8.0f} windows/s"
            )
    return {"episodes": args.episodes, "steps": args.steps, "size": args.size, "formats": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("pusht", "formats"), help="run one part (default: both)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="pusht: the real PushT zarr")
    parser.add_argument("--batches", type=int, default=200, help="pusht: batches timed for get_batch")
    parser.add_argument("--loader-batches", type=int, default=30, help="pusht: batches timed per DataLoader setting")
    parser.add_argument("--episodes", type=int, default=20, help="formats: synthetic episodes")
    parser.add_argument("--steps", type=int, default=100, help="formats: steps per episode")
    parser.add_argument("--size", type=int, default=96, help="formats: camera side in pixels")
    parser.add_argument("--lazy-batches", type=int, default=20, help="formats: random batches timed through CachedFrames")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    out = {"benchmark": "bench_data"}
    if args.only in (None, "pusht"):
        out["pusht"] = bench_pusht(args)
    if args.only in (None, "formats"):
        out["formats"] = bench_formats(args)
    out["load_average"] = round(os.getloadavg()[0], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
