"""``PushTAdapter``: what polx needs to train on and roll out in PushT (the ``pusht`` env component)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import attrs
import numpy as np

from polx.errors import DatasetError
from polx_envs.pusht.config import PushTConfig

#: bump when the recorded layout changes, so stale cached datasets are not reused
DATASET_VERSION = 2
#: bump when the expert's own trajectories change (3: it keeps its plan within 15 px, which
#: changes seed 13 of 0-25), so a cached expert dataset is generated again
EXPERT_VERSION = 3


class PushTAdapter:
    """PushT for polx: observation keys by ``obs_type``, envs, dataset conversion and demos."""

    name = "pusht"

    def __init__(self, config: PushTConfig | None = None):
        self.config = config or PushTConfig()
        size = self.config.render_size
        obs = {
            "image": {"image": {"shape": [3, size, size], "type": "rgb"}, "agent_pos": {"shape": [2], "type": "low_dim"}},
            "keypoints": {"keypoints": {"shape": [20], "type": "low_dim"}},
            "state": {"state": {"shape": [5], "type": "low_dim"}},
        }[self.config.obs_type]
        self.shape_meta = {"obs": obs, "action": {"shape": [2]}}

    def make_env(self):
        from polx_envs.pusht.env import PushTEnv

        c = self.config
        return PushTEnv(obs_type=c.obs_type, render_size=c.render_size, legacy=c.legacy)

    def make_expert(self):
        """The scripted expert as a teacher for any state (``polx dagger``; see docs/plugin_hooks.md)."""
        from polx_envs.pusht.expert import PushTExpert

        return PushTExpert(record_size=self.config.render_size if self._needs_images else None, travel_speed=self.config.expert_travel_speed)

    def observe(self, env, obs_meta: Mapping[str, Mapping]) -> dict[str, np.ndarray]:
        """The state ``env`` is in now, as an env observing ``obs_meta`` (another adapter's ``shape_meta["obs"]``) sees it.

        How a teacher that observes differently from the student gets its own observation of the
        student's state (``polx dagger --teacher CKPT``; see docs/plugin_hooks.md): a keypoints
        teacher of an image student. Any obs type at any ``render_size``; the arrays equal what a
        ``PushTEnv`` of that obs type returns in the same state.
        """
        from polx.errors import UserInputError
        from polx_envs.pusht import geometry, render

        env = getattr(env, "unwrapped", env)
        sim = env.sim
        agent = sim.agent_pos.astype(np.float32)
        out: dict[str, np.ndarray] = {}
        for key, spec in obs_meta.items():
            shape = tuple(spec["shape"])
            if key == "keypoints" and shape == (20,):
                out[key] = np.concatenate([geometry.keypoints(sim.block_pose).reshape(-1).astype(np.float32), agent])
            elif key == "state" and shape == (5,):
                out[key] = sim.state().astype(np.float32)
            elif key == "agent_pos" and shape == (2,):
                out[key] = agent
            elif key == "image" and len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2]:
                frame = render.render_frame(sim.agent_pos, sim.block_polygons(), sim.contact_markers(), shape[1])
                out[key] = np.moveaxis(frame, -1, 0).astype(np.float32) / 255.0
            else:
                raise UserInputError(
                    f"env pusht cannot observe {key!r} of shape {shape}: it observes keypoints (20,), state (5,), "
                    "agent_pos (2,) and image (3, S, S)"
                )
        return out

    def dataset_obs(self, data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Replay-buffer arrays -> this obs type's keys plus ``action`` (see the module docs of ``demos``)."""
        kind = self.config.obs_type
        needed = {"image": ("img", "state", "action"), "keypoints": ("keypoint", "state", "action"), "state": ("state", "action")}
        missing = [k for k in needed[kind] if k not in data]
        if missing:
            raise DatasetError(
                f"PushT with obs_type={kind} needs data/{', data/'.join(needed[kind])}; "
                f"this dataset lacks data/{', data/'.join(missing)} (it has: {', '.join(sorted(data))})"
            )
        state = np.asarray(data["state"], dtype=np.float32)
        out: dict[str, np.ndarray] = {}
        if kind == "image":
            # in training, frames are read lazily through a bounded cache, cast to uint8 per block
            lazy = hasattr(data, "frames")
            img = data.frames("img", self.config.frame_cache_mb << 20, transform=_to_uint8, dtype=np.uint8) if lazy else np.asarray(data["img"])
            size = self.config.render_size
            if img.shape[1:] != (size, size, 3):
                raise DatasetError(
                    f"data/img has frames of shape {img.shape[1:]}; env.render_size={size} needs ({size}, {size}, 3) "
                    f"(set env.render_size={img.shape[1]} to train on this dataset)"
                )
            out["image"] = img if lazy else _to_uint8(img)
            out["agent_pos"] = state[:, :2]
        elif kind == "keypoints":
            kps = np.asarray(data["keypoint"], dtype=np.float32).reshape(len(state), -1)
            out["keypoints"] = np.concatenate([kps, state[:, :2]], axis=1)
        else:
            out["state"] = state
        out["action"] = np.asarray(data["action"], dtype=np.float32)
        return out

    def default_dataset(self, progress: bool = True) -> Path:
        """The dataset used without ``--dataset`` (``env.default_data``), built on first use and cached.

        ``human``: the shipped human demonstrations (frames rendered only for ``obs_type=image``);
        ``expert``: the scripted expert's demonstrations. Announced on stderr, with a progress bar.
        """
        from polx.data.cache import cache_root, cached_dataset

        path = cache_root() / self.default_dataset_name()
        c = self.config
        workers = max(1, min(os.cpu_count() or 1, 8))
        if c.default_data == "human":
            from polx_envs.pusht import human_demos

            what = "the PushT human demonstrations (206 episodes" + (f", rendering {c.render_size} px frames" if self._needs_images else "")
            notice = f"writing {what})"
            build = lambda: human_demos.build(path, images=self._needs_images, render_size=c.render_size, workers=workers, progress=progress)  # noqa: E731
        else:
            workers = min(workers, c.default_episodes)
            notice = f"generating the PushT expert dataset ({c.default_episodes} episodes, {workers} processes)"
            build = lambda: self.generate_demos(path, c.default_episodes, seed=c.default_seed, workers=workers, progress=progress)  # noqa: E731
        return cached_dataset(path, build, notice)

    @property
    def _needs_images(self) -> bool:
        return self.config.obs_type == "image"

    def default_dataset_name(self) -> str:
        """The cache file name: readable parts plus a hash of every setting that changes the data."""
        c = self.config
        if c.default_data == "human":
            fields = {"source": "pusht_cchi_v7", "images": self._needs_images}
            if self._needs_images:
                fields["render_size"] = c.render_size
            readable = f"pusht_human_v{DATASET_VERSION}_" + (f"{c.render_size}px" if self._needs_images else "lowdim")
        else:
            fields = {
                "episodes": c.default_episodes, "seed": c.default_seed, "render_size": c.render_size,
                "legacy": c.legacy, "max_steps": c.demo_max_steps,
            }  # fmt: skip
            if c.expert_travel_speed != attrs.fields(PushTConfig).expert_travel_speed.default:  # so the default's name is unchanged
                fields["expert_travel_speed"] = c.expert_travel_speed
            readable = f"pusht_expert_v{EXPERT_VERSION}_{c.default_episodes}ep_seed{c.default_seed}_{c.render_size}px"
        from polx.data.cache import cache_name

        return cache_name(readable, fields, DATASET_VERSION if c.default_data == "human" else EXPERT_VERSION)

    def generate_demos(
        self, out: Path, episodes: int, seed: int = 0, workers: int = 1, keep_all: bool = False, progress: bool = True
    ) -> dict:
        """Expert demonstrations in the original layout at ``out``; returns a summary."""
        from polx_envs.pusht.demos import generate

        c = self.config
        return generate(
            Path(out),
            episodes,
            seed=seed,
            workers=workers,
            keep_all=keep_all,
            progress=progress,
            render_size=c.render_size,
            legacy=c.legacy,
            max_steps=c.demo_max_steps,
            travel_speed=c.expert_travel_speed,
        )


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Frames stored as float 0..255 (the original layout) -> uint8; whole numbers, so exact."""
    img = np.asarray(img)
    return img if img.dtype == np.uint8 else np.clip(np.rint(img), 0, 255).astype(np.uint8)
