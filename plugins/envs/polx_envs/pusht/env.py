"""``PushTEnv``: the Diffusion Policy PushT task as a gymnasium env (registered as ``polx/PushT-v0``).

Push a T-shaped block onto a fixed goal pose with a circular pusher. An action is the pusher's
target position in the 512x512 workspace; each step runs 10 physics steps (100 Hz) of PD control
toward it (10 Hz control). Reward is ``clip(coverage / 0.95, 0, 1)`` where coverage is the share
of the goal the block covers; the episode terminates when coverage exceeds 0.95.

Observations (``obs_type``), as the benchmark's three variants:

* ``image``: ``{"image": (3, S, S) float32 in [0, 1], "agent_pos": (2,) float32}``
* ``keypoints``: ``{"keypoints": (20,) float32}``: 9 block keypoints (x, y) then the pusher's x, y
* ``state``: ``{"state": (5,) float32}``: pusher x, y, block x, y, block angle in [0, 2 pi)
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from polx_envs.pusht import geometry, render
from polx_envs.pusht.geometry import GOAL_POSE, SUCCESS_THRESHOLD, WINDOW
from polx_envs.pusht.sim import PushTSim

OBS_TYPES = ("image", "keypoints", "state")


def initial_state(seed: int) -> np.ndarray:
    """The original's draw of a start state for ``seed`` (legacy RandomState, in this order)."""
    rs = np.random.RandomState(seed=seed)
    return np.array(
        [rs.randint(50, 450), rs.randint(50, 450), rs.randint(100, 400), rs.randint(100, 400), rs.randn() * 2 * np.pi - np.pi]
    )


class PushTEnv(gymnasium.Env):
    """PushT with the original's physics, start states and (pixel-exact) frames.

    ``legacy=True`` (the default, what published scores use) resets the block as the original's
    evaluation does: position first, then angle, so the drawn pose lands displaced. ``set_state``
    and ``reset(options={"state": s})`` always place the exact pose (the dataset's convention).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, obs_type: str = "image", render_size: int = 96, legacy: bool = True, render_mode: str = "rgb_array"):
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type: must be one of {', '.join(OBS_TYPES)}; got {obs_type!r}")
        if not (isinstance(render_size, int) and render_size > 0):
            raise ValueError(f"render_size: must be a positive int; got {render_size!r}")
        if render_mode != "rgb_array":
            raise ValueError(f"render_mode: only 'rgb_array' is supported; got {render_mode!r}")
        self.obs_type, self.render_size, self.legacy, self.render_mode = obs_type, render_size, legacy, render_mode
        self.action_space = spaces.Box(0.0, float(WINDOW), shape=(2,), dtype=np.float64)
        self.observation_space = _observation_space(obs_type, render_size)
        self.sim = PushTSim()
        self.agent_path: list[tuple[float, float]] = []  # pusher position at reset and after each step
        self.n_contacts = 0  # contact points during the last step (the dataset's n_contacts row)
        self._frame: np.ndarray | None = None

    # -----------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start state from ``seed`` as the original draws it, or ``options={"state": [5 values]}``."""
        super().reset(seed=seed)
        self.sim, self.agent_path, self.n_contacts = PushTSim(), [], 0
        state = (options or {}).get("state")
        if state is not None:
            self.sim.set_state(state)
        else:
            if seed is None:  # the original draws an unseeded reset's seed the same way
                seed = int(self.np_random.integers(0, 25536))
            self.sim.set_state(initial_state(seed), legacy=self.legacy)
        return self._observe(), self._info(0)

    def set_state(self, state: np.ndarray) -> dict:
        """Place the dataset's 5-vector pose exactly (angle, then position); returns the observation."""
        self.sim, self.agent_path = PushTSim(), []
        self.sim.set_state(state)
        return self._observe()

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float64).reshape(2)
        self.n_contacts = n_contacts = self.sim.step(action)
        obs, info = self._observe(), self._info(n_contacts)
        reward = float(np.clip(info["coverage"] / SUCCESS_THRESHOLD, 0.0, 1.0))
        return obs, reward, bool(info["is_success"]), False, info

    def render(self) -> np.ndarray:
        """The current frame, (render_size, render_size, 3) uint8, as the original draws it."""
        return self._current_frame().copy()

    def _current_frame(self) -> np.ndarray:
        if self._frame is None:  # drawn once per state: the image observation reuses it
            self._frame = render.render_frame(
                self.sim.agent_pos, self.sim.block_polygons(), self.sim.contact_markers(), self.render_size
            )
        return self._frame

    # -----------------------------------------------------------------------------------------

    def _observe(self) -> dict[str, np.ndarray]:
        self._frame = None
        self.agent_path.append(tuple(self.sim.agent.position))
        agent = self.sim.agent_pos.astype(np.float32)
        if self.obs_type == "image":
            image = np.moveaxis(self._current_frame(), -1, 0).astype(np.float32) / 255.0
            return {"image": image, "agent_pos": agent}
        if self.obs_type == "keypoints":
            kps = geometry.keypoints(self.sim.block_pose).reshape(-1).astype(np.float32)
            return {"keypoints": np.concatenate([kps, agent])}
        return {"state": self.sim.state().astype(np.float32)}

    def _info(self, n_contacts: int) -> dict[str, Any]:
        block_pose = self.sim.block_pose
        coverage = geometry.coverage(block_pose)
        return {
            "pos_agent": self.sim.agent_pos,
            "vel_agent": np.array(self.sim.agent.velocity),
            "block_pose": block_pose,
            "goal_pose": GOAL_POSE.copy(),
            "n_contacts": n_contacts,
            "coverage": coverage,
            "is_success": coverage > SUCCESS_THRESHOLD,
        }

    # -----------------------------------------------------------------------------------------
    # pickling: rebuild from the constructor arguments and the current poses (contact caches of
    # the physics engine are not carried over, so a copy continues almost, not bit-for-bit, alike)

    def __getstate__(self) -> dict:
        return {
            "kwargs": {"obs_type": self.obs_type, "render_size": self.render_size, "legacy": self.legacy},
            "state": self.sim.state(),
            "agent_path": list(self.agent_path),
            "np_random": self.np_random.bit_generator.state,
        }

    def __setstate__(self, data: dict) -> None:
        self.__init__(**data["kwargs"])
        self.sim.set_state(data["state"])
        self.agent_path = list(data["agent_path"])
        self.np_random.bit_generator.state = data["np_random"]


def _observation_space(obs_type: str, size: int) -> spaces.Dict:
    ws = float(WINDOW)
    if obs_type == "image":
        return spaces.Dict(
            {
                "image": spaces.Box(0.0, 1.0, shape=(3, size, size), dtype=np.float32),
                "agent_pos": spaces.Box(0.0, ws, shape=(2,), dtype=np.float32),
            }
        )
    if obs_type == "keypoints":
        return spaces.Dict({"keypoints": spaces.Box(0.0, ws, shape=(20,), dtype=np.float32)})
    high = np.array([ws, ws, ws, ws, 2 * np.pi], dtype=np.float32)
    return spaces.Dict({"state": spaces.Box(np.zeros(5, np.float32), high, dtype=np.float32)})
