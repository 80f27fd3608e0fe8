"""Training without an env: the ``offline`` env component, whose shapes come from the dataset.

``polx train --head H --dataset PATH`` with no ``--env`` chooses it (``polx.runs``): every camera
key (uint8 (N, H, W, C)) becomes an ``rgb`` observation resized to ``encoder.image_size`` at load
(read lazily, block by block, through a cache of ``env.frame_cache_mb``); float frames of that
shape (Diffusion Policy's PushT zarr stores ``img`` as float32 0..255) are cameras too, cast to
uint8 per block (0..1 frames scaled by 255, told apart by the first frames' maximum),
and every other key but ``action`` is flattened per step and concatenated, in key order, into
one ``low_dim`` observation. ``env.action_groups`` declares how the action splits between arms
(as an env's ``shape_meta`` does), so bimanual heads and ``policy.action_layout=packed`` work on
a lab's dataset without an env plugin. Its preset turns rollouts off (``eval.rollout_every=0``,
``eval.at_end=false``): there is no simulator, so a run reports training and validation losses
only, and ``make_env`` says so if anything asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import attrs
import numpy as np

from polx.config import doc, in_range
from polx.errors import PolxError, UserInputError

LOW_DIM_KEY = "low_dim"


@attrs.define(frozen=True, kw_only=True)
class OfflineEnvConfig:
    """The dataset an env-less run reads its shapes from (set from --dataset by ``polx train``)."""

    dataset: str = doc("dataset the shapes come from; polx train sets it from --dataset", default="")
    format: str | None = doc("its format; null: detected (polx train sets it from --dataset-format)", default=None)
    image_size: int | None = doc("square side frames are resized to at load; polx train sets it from encoder.image_size", default=96, validator=in_range(8, 1024))
    frame_cache_mb: int = doc("camera frames kept in memory; frames are read lazily, so a dataset larger than RAM trains", default=2048, validator=in_range(0, 1 << 20))
    action_groups: dict[str, tuple[int, int]] | None = doc(
        "the action's groups, name: [start, stop) tiling its dims in order, e.g. {left: [0, 7], right: [7, 14]}; null: one group",
        default=None,
    )


OFFLINE_PRESET = {"eval": {"rollout_every": 0, "at_end": False}, "encoder": {"image_size": 96}}


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> (N, size, size, C), bilinear (PIL); unchanged when already that size."""
    from PIL import Image

    if frames.shape[1:3] == (size, size):
        return np.asarray(frames)
    out = np.empty((len(frames), size, size, frames.shape[-1]), np.uint8)
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
        resized = np.asarray(image.resize((size, size), Image.BILINEAR))
        out[i] = resized[..., None] if resized.ndim == 2 else resized
    return out


def _float_scale(reader: Any, key: str) -> float:
    """255 when the first frames of ``key`` lie in 0..1, else 1 (frames already in 0..255)."""
    n = reader.array_info(key)[0][0]
    sample = np.asarray(reader.read(key, 0, min(int(n), 16)), dtype=np.float64)
    finite = sample[np.isfinite(sample)]
    return 255.0 if finite.size and float(finite.max()) <= 1.0 else 1.0


def frames_to_uint8(frames: np.ndarray, scale: float) -> np.ndarray:
    """Float frames times ``scale``, rounded and clipped to uint8 (NaN becomes 0)."""
    out = np.nan_to_num(np.asarray(frames, dtype=np.float64) * scale, nan=0.0)  # float64: float32 would flip some x.5 roundings
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class OfflineAdapter:
    """An ``EnvAdapter`` without a simulator: shapes and observations from the dataset itself."""

    name = "offline"

    def __init__(self, config: OfflineEnvConfig, registry: Any):
        """``registry``: the loaded plugins' (the dataset formats); core's plugin passes its own."""
        from polx.data.formats import is_float_frames, is_image, open_dataset

        if not config.dataset:
            raise UserInputError("training without an env needs --dataset PATH (env.dataset is empty)")
        self.config = config
        reader = open_dataset(config.dataset, config.format, registry=registry)
        if "action" not in reader.keys():
            raise UserInputError(f"dataset {config.dataset!r} has no 'action' array (it has {', '.join(reader.keys())}); training needs one")
        infos = {key: reader.array_info(key) for key in reader.keys()}
        self.cameras = [k for k, (shape, dtype) in infos.items() if is_image(shape, dtype) or is_float_frames(shape, dtype)]
        #: camera key -> factor that brings its float frames to 0..255 (uint8 cameras are absent)
        self.float_scale = {k: _float_scale(reader, k) for k in self.cameras if is_float_frames(*infos[k])}
        self.low_dim = [k for k, (shape, dtype) in infos.items() if k != "action" and k not in self.cameras and np.dtype(dtype).kind in "fiub"]
        obs: dict[str, dict] = {}
        for cam in self.cameras:
            _, h, w, c = infos[cam][0]
            side = (h, w) if config.image_size is None else (config.image_size, config.image_size)
            obs[cam] = {"shape": [c, *side], "type": "rgb"}
        if self.low_dim:
            obs[LOW_DIM_KEY] = {"shape": [sum(int(np.prod(infos[k][0][1:])) for k in self.low_dim)], "type": "low_dim"}
        if not obs:
            raise UserInputError(f"dataset {config.dataset!r} has no observation arrays besides 'action'")
        action = {"shape": [int(np.prod(infos["action"][0][1:]))]}
        if config.action_groups:
            from polx.policy.layout import declared_groups

            action["groups"] = {name: [int(start), int(stop)] for name, (start, stop) in config.action_groups.items()}
            try:
                declared_groups(action, source="env.action_groups:")
            except PolxError as exc:
                raise UserInputError(f"{exc} (dataset {config.dataset!r})") from None
        self.shape_meta = {"obs": obs, "action": action}

    def dataset_obs(self, data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        size = self.config.image_size
        for cam in self.cameras:
            to_uint8 = (lambda block, k=self.float_scale[cam]: frames_to_uint8(block, k)) if cam in self.float_scale else (lambda block: block)
            if hasattr(data, "frames"):  # training: read lazily through a bounded cache, cast and resized per block
                c = self.shape_meta["obs"][cam]["shape"][0]
                if size is None:
                    transform = None if cam not in self.float_scale else to_uint8
                else:
                    transform = lambda block, s=size, cast=to_uint8: _resize(cast(block), s)  # noqa: E731
                step = None if size is None else (size, size, c)
                out[cam] = data.frames(cam, self.config.frame_cache_mb << 20, transform=transform, step_shape=step, dtype=np.uint8)
            else:
                frames = to_uint8(np.asarray(data[cam]))
                out[cam] = frames if size is None else _resize(frames, size)
        if self.low_dim:
            parts = [np.asarray(data[k], dtype=np.float32).reshape(len(data[k]), -1) for k in self.low_dim]
            out[LOW_DIM_KEY] = np.concatenate(parts, axis=1)
        action = np.asarray(data["action"], dtype=np.float32)
        out["action"] = action.reshape(len(action), -1)
        return out

    def make_env(self) -> Any:
        raise PolxError("this run trained without an env (--dataset only): there is no simulator to roll out; train with --env to evaluate")

    def default_dataset(self, progress: bool = True) -> Path:
        return Path(self.config.dataset)

    def generate_demos(self, out: Path, episodes: int, seed: int = 0, workers: int = 1, keep_all: bool = False, progress: bool = True) -> dict:
        raise UserInputError("env 'offline' has no expert: generate demonstrations with a simulated env (--env pusht, roboimi, ...)")
