"""Windows/s from each dataset format on the same episodes: zarr, hdf5 (ACT episodes), lerobot.

The same synthetic episodes (two uint8 cameras, a low-dim state, an action) are written once per
format with polx's own writers (``polx data convert``'s), then for each format:

- ``open_s``: ``open_dataset`` (detection and validation);
- ``epoch_windows_per_s``: what a training epoch sees from a cold start: open, load every array
  (the trainer's path), then assemble every window once with ``PolicyDataset.get_batch``;
- ``lazy_windows_per_s``: random windows read straight from the reader, one ``read`` per key
  and window, nothing loaded beforehand (the path for data larger than memory).

    .venv/bin/python benchmarks/bench_data_formats.py [--episodes 20] [--steps 100] [--size 96]

Prints readable lines, then one JSON object on its own line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from polx.data.dataset import PolicyDataset
from polx.data.formats import dataset_formats, load_arrays, open_dataset
from polx.plugins import load_plugins

BATCH, HORIZON, N_OBS, N_ACTION = 64, 16, 2, 8
CAMERAS = ("top", "wrist")


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


def lazy_rate(path: Path, registry, n_windows: int, rng: np.random.Generator) -> float:
    """Random windows of HORIZON steps within episodes, read key by key from a fresh reader."""
    reader = open_dataset(path, registry=registry)
    ends = reader.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    t0 = time.perf_counter()
    for _ in range(n_windows):
        e = int(rng.integers(len(ends)))
        lo = int(rng.integers(starts[e], max(starts[e] + 1, ends[e] - HORIZON)))
        for key in reader.keys():
            reader.read(key, lo, min(lo + HORIZON, int(ends[e])))
    return n_windows / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100, help="steps per episode")
    parser.add_argument("--size", type=int, default=96, help="camera side in pixels")
    parser.add_argument("--lazy-windows", type=int, default=200)
    args = parser.parse_args()

    registry = load_plugins().registry
    formats = {name: f for name, f in dataset_formats(registry).items() if callable(getattr(f, "write", None))}
    episodes = make_episodes(args.episodes, args.steps, args.size)
    print(
        f"{args.episodes} episodes x {args.steps} steps, cameras {', '.join(CAMERAS)} {args.size}x{args.size}; "
        f"batch {BATCH}, horizon {HORIZON}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
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
            lazy_wps = lazy_rate(path, registry, args.lazy_windows, np.random.default_rng(0))
            results[name] = {
                "write_s": round(write_s, 2), "size_mb": round(size_mb, 1), "open_s": round(open_s, 3),
                "epoch_windows_per_s": round(epoch_wps), "lazy_windows_per_s": round(lazy_wps), "windows": windows,
            }
            print(
                f"{name:8s} write {write_s:6.2f} s  {size_mb:7.1f} MiB  open {open_s * 1e3:7.1f} ms  "
                f"epoch {epoch_wps:9.0f} windows/s  lazy {lazy_wps:8.0f} windows/s"
            )
    print(json.dumps({"benchmark": "bench_data_formats", "episodes": args.episodes, "steps": args.steps, "size": args.size,
                      "load_average": round(os.getloadavg()[0], 1), "formats": results}))


if __name__ == "__main__":
    main()
