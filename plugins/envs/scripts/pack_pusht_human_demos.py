"""Pack the published PushT human demonstrations' low-dimensional arrays into the envs plugin.

Reads Diffusion Policy's ``pusht_cchi_v7_replay.zarr`` and writes
``polx_envs/pusht/data/pusht_human_v7.npz`` with ``state``, ``keypoint``, ``action``,
``n_contacts`` and ``episode_ends``, exactly as stored. ``img`` is not shipped: the adapter
re-renders it from ``state`` on first use (``polx_envs.pusht.human_demos``). ``keypoint`` is
shipped because the source's keypoints are not a function of the stored state to float32
precision (they differ from the env's by up to 2 px on 0.1% of steps: recorded from the
unwrapped physics pose, mid-step), and a policy must train on what was recorded.

    .venv/bin/python plugins/envs/scripts/pack_pusht_human_demos.py ../shared/data/pusht/pusht_cchi_v7_replay.zarr
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from polx.data.replay_buffer import ReplayBuffer
from polx_envs.pusht import human_demos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="pusht_cchi_v7_replay.zarr")
    parser.add_argument("--out", type=Path, default=human_demos.ARRAYS_PATH)
    args = parser.parse_args()

    rb = ReplayBuffer.open(args.source)
    data = rb.load(["state", "keypoint", "action", "n_contacts"])
    arrays = {
        "state": data["state"].astype(np.float32),
        "keypoint": data["keypoint"].astype(np.float32),
        "action": data["action"].astype(np.float32),
        "n_contacts": data["n_contacts"].astype(np.float32),
        "episode_ends": np.asarray(rb.episode_ends, dtype=np.int64),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest})")
    print(f"episodes {len(arrays['episode_ends'])}, steps {len(arrays['state'])}")


if __name__ == "__main__":
    main()
