"""LeRobot output with camera frames as PNG cells (lossless) against H.264 mp4 (``--video``).

Real frames: RoboIMI expert demonstrations rendered by MuJoCo (three cameras), written once as a
zarr store by ``polx data generate``'s path, then converted both ways with ``polx data convert``'s
code. For each: bytes on disk, seconds to write, seconds to read every frame back from a fresh
reader, and the per-pixel error of the frames read back (0..255 scale; PNG must be 0).

    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_lerobot_video.py [--episodes 4] [--image-size 96]

Prints readable lines, then one JSON object on its own line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from polx.data.convert import convert_dataset  # noqa: E402
from polx.data.formats import get_episode, open_dataset  # noqa: E402
from polx.plugins import load_plugins  # noqa: E402
from polx.runs import build_env_adapter  # noqa: E402


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()
    plugins = load_plugins(entry_points=list(metadata.entry_points(group="polx")))
    adapter = build_env_adapter(plugins, "roboimi", [f"env.image_size={args.image_size}"])
    out: dict = {"episodes": args.episodes, "image_size": args.image_size}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.zarr"
        adapter.generate_demos(src, args.episodes, seed=0, workers=1, keep_all=True, progress=False)
        source = open_dataset(src, registry=plugins.registry)
        cameras = [k for k in source.keys() if source.array_info(k)[1] == np.uint8 and len(source.array_info(k)[0]) == 4]
        truth = [get_episode(source, i) for i in range(len(source.episode_ends))]
        out["frames"] = int(source.episode_ends[-1]) * len(cameras)
        out["cameras"] = cameras
        for name, video in (("png", False), ("video", True)):
            path = Path(tmp) / name
            t0 = time.perf_counter()
            convert_dataset(src, path, "lerobot", registry=plugins.registry, progress=False, video=video)
            write_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            reader = open_dataset(path, registry=plugins.registry)
            back = [get_episode(reader, i) for i in range(len(truth))]
            read_s = time.perf_counter() - t0
            err = np.concatenate([np.abs(b[c].astype(np.int16) - t[c]).ravel() for b, t in zip(back, truth) for c in cameras])
            for b, t in zip(back, truth):  # everything but the frames is exact either way
                assert all(np.array_equal(b[k], t[k]) for k in t if k not in cameras)
            out[name] = {
                "bytes": size_of(path),
                "write_s": round(write_s, 2),
                "read_s": round(read_s, 2),
                "mean_abs_error": float(err.mean()),
                "p99_abs_error": float(np.percentile(err, 99)),
                "max_abs_error": int(err.max()),
            }
            r = out[name]
            print(f"{name:>5}: {r['bytes'] / 1e6:7.2f} MB, write {r['write_s']:.2f} s, read back {r['read_s']:.2f} s, "
                  f"frame error mean {r['mean_abs_error']:.2f} / p99 {r['p99_abs_error']:.0f} / max {r['max_abs_error']} (0..255)")  # fmt: skip
    out["size_ratio"] = out["png"]["bytes"] / out["video"]["bytes"]
    print(f"{out['frames']} frames from {len(cameras)} cameras: video is {out['size_ratio']:.1f}x smaller")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
