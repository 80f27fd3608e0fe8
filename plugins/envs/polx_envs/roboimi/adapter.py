"""RoboIMIAdapter: what polx needs to train on and roll out in the RoboIMI transfer task."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import gymnasium as gym
import numpy as np

from polx.errors import DatasetError
from polx_envs.roboimi.config import ACTION_DIM, ARMS, QPOS_DIM, RoboIMIConfig


class PolicyObservation(gym.ObservationWrapper):
    """Raw ``{"images": {cam: uint8 HWC}, "qpos"}`` -> ``{cam: float32 CHW in [0, 1], "qpos"}``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        config = env.unwrapped.config
        size = config.image_size
        spaces = {cam: gym.spaces.Box(0.0, 1.0, (3, size, size), np.float32) for cam in config.cameras}
        spaces["qpos"] = env.observation_space["qpos"]
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: dict) -> dict:
        obs = {
            cam: np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0  # HWC -> CHW
            for cam, image in observation["images"].items()
        }
        obs["qpos"] = observation["qpos"]
        return obs


class RoboIMIAdapter:
    """``--env roboimi``: cameras as rgb observations, ``qpos`` as low-dim, 16-D absolute EE actions."""

    name = "roboimi"

    def __init__(self, config: RoboIMIConfig | None = None):
        self.config = config or RoboIMIConfig()
        size = self.config.image_size
        obs: dict = {cam: {"shape": [3, size, size], "type": "rgb"} for cam in self.config.cameras}
        obs["qpos"] = {"shape": [QPOS_DIM], "type": "low_dim"}
        # one group per arm (left 0:8, right 8:16): what policy.action_layout=packed and per-arm heads use
        groups = {arm: [i * ACTION_DIM // len(ARMS), (i + 1) * ACTION_DIM // len(ARMS)] for i, arm in enumerate(ARMS)}
        self.shape_meta = {"obs": obs, "action": {"shape": [ACTION_DIM], "groups": groups}}

    def make_env(self) -> gym.Env:
        from polx_envs.roboimi.env import RoboIMIEnv

        return PolicyObservation(RoboIMIEnv(self.config))

    def make_expert(self):
        """The state-feedback transfer expert, a teacher for any state (``polx dagger``)."""
        from polx_envs.roboimi.expert import TransferExpert

        return TransferExpert()

    def dataset_obs(self, data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Replay-buffer arrays -> ``{cam: uint8 (N, S, S, 3), "qpos": (N, 14), "action": (N, 16)}`` (float32)."""
        cams, size = self.config.cameras, self.config.image_size
        missing = [key for key in (*cams, "qpos", "action") if key not in data]
        if missing:
            raise DatasetError(
                f"RoboIMI dataset lacks {', '.join(missing)} (it has {', '.join(sorted(data))}); expected one "
                f"uint8 image array per camera ({', '.join(cams)}), qpos and action, "
                "as `polx data generate --env roboimi` writes"
            )
        out: dict[str, np.ndarray] = {}
        for cam in cams:
            # in training, frames are read lazily through a bounded cache (a dataset larger than RAM trains)
            images = data.frames(cam, self.config.frame_cache_mb << 20) if hasattr(data, "frames") else np.asarray(data[cam])
            if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
                raise DatasetError(
                    f"RoboIMI dataset: {cam} images are {images.dtype} {images.shape[1:]}, expected uint8 "
                    f"({size}, {size}, 3) for env.image_size={size}; regenerate the dataset or set env.image_size"
                )
            out[cam] = images
        for key, dim in (("qpos", QPOS_DIM), ("action", ACTION_DIM)):
            array = np.asarray(data[key], dtype=np.float32)
            if array.ndim != 2 or array.shape[1] != dim:
                raise DatasetError(f"RoboIMI dataset: {key} has shape {array.shape}, expected (N, {dim})")
            out[key] = array
        return out

    def default_dataset(self, progress: bool = True) -> Path:
        from polx_envs.roboimi.demos import default_dataset

        return default_dataset(self.config, progress=progress)

    def generate_demos(
        self, out: Path, episodes: int, seed: int = 0, workers: int = 1, keep_all: bool = False, progress: bool = True
    ) -> dict:
        from polx_envs.roboimi.demos import generate_demos

        return generate_demos(
            self.config, Path(out), episodes, seed=seed, workers=workers, keep_all=keep_all, progress=progress
        )
