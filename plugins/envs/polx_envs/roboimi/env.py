"""RoboIMIEnv: hand a block from the right arm to the left, driven by absolute EE poses.

Action (16,) float: for the left arm, then the right arm (ACT's order): EE position x, y, z (3),
orientation quaternion w, x, y, z (4, normalised here), gripper opening in [0, 1] (1, 1 = open).
Positions are clipped to the workspace box. The EE pose is that of the ``<arm>_ee`` body, whose
origin is the grasp point between the finger pads (see ``scene``).

Observation: ``{"images": {camera: uint8 (S, S, 3)}, "qpos": float32 (14,)}`` with, per arm,
six joint angles and the gripper opening in [0, 1].

Stages (``info["stage"]``, named in ``info["stage_names"]``; the highest whose condition holds
now): 0 none; 1 ``reach``: a right finger touches the block; 2 ``grasp``: both right fingers
touch it; 3 ``lift``: both right fingers hold it off the table (lifted, the table not touching);
4 ``hand_over``: a left finger touches it while it is off the table; 5 ``hold``: both left
fingers hold it, lifted, the table and the right fingers not touching. Success
(``info["is_success"]``) is stage 5 for ``success_hold_steps`` consecutive control steps: the
block was handed over and is held, not merely brushed for one step on its way down. The reward
is a score in [0, 1] like PushT's: ``min(stage, 4) / 5`` before success and 1.0 at success, so
an episode's maximum reward is 1 exactly when it succeeded. The episode terminates on success
and is truncated after ``max_steps`` control steps (50 Hz by default; each runs ``n_substeps`` physics steps).
"""

from __future__ import annotations

from polx_envs.roboimi import _gl  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)

import attrs
import gymnasium as gym
import mujoco
import numpy as np

from polx_envs.roboimi.camera import CameraRenderer
from polx_envs.roboimi.config import ACTION_DIM, ARMS, QPOS_DIM, RoboIMIConfig
from polx_envs.roboimi.scene import (
    BLOCK_GEOM,
    BLOCK_HALF,
    FINGER_GEOMS,
    FINGER_TRAVEL,
    HOME_QPOS,
    TABLE_GEOM,
    build_mjcf,
)

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll")
WORKSPACE_LOW = np.array([-0.6, 0.1, 0.0])
WORKSPACE_HIGH = np.array([0.6, 0.9, 0.6])
STAGE_NAMES = ("reach", "grasp", "lift", "hand_over", "hold")  # stage k is STAGE_NAMES[k - 1]
SUCCESS_STAGE = 5
N_STAGES = 5
LIFT_MARGIN = 0.01  # the block's centre this far above its resting height counts as off the table


class RoboIMIEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        config: RoboIMIConfig | None = None,
        *,
        render_mode: str | None = None,
        render_images: bool = True,
        **overrides,
    ):
        """``overrides`` are RoboIMIConfig fields (``gymnasium.make(..., image_size=64)``).

        ``render_images=False`` drops ``images`` from observations: physics-only stepping for
        experts and benchmarks. Adapters always render.
        """
        config = config or RoboIMIConfig()
        self.config = attrs.evolve(config, **overrides) if overrides else config
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: must be None or 'rgb_array'; got {render_mode!r}")
        self.render_mode = render_mode
        self.render_images = render_images
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.config))
        self.data = mujoco.MjData(self.model)
        self._index_model()
        self._renderers: dict[int, CameraRenderer] = {}  # by image size; each holds a GL context
        self._elapsed = 0
        self._held = 0  # consecutive steps at SUCCESS_STAGE
        self.block_start = np.array([0.05, 0.5, 0.0])  # x, y, yaw of this episode's block
        self._set_start_state()

        size = self.config.image_size
        spaces = {"qpos": gym.spaces.Box(-np.inf, np.inf, (QPOS_DIM,), np.float32)}
        if render_images:
            cams = {c: gym.spaces.Box(0, 255, (size, size, 3), np.uint8) for c in self.config.cameras}
            spaces["images"] = gym.spaces.Dict(cams)
        self.observation_space = gym.spaces.Dict(spaces)
        low = np.concatenate([WORKSPACE_LOW, -np.ones(4), [0.0]] * 2).astype(np.float32)
        high = np.concatenate([WORKSPACE_HIGH, np.ones(4), [1.0]] * 2).astype(np.float32)
        self.action_space = gym.spaces.Box(low, high, (ACTION_DIM,), np.float32)

    def _index_model(self) -> None:
        m = self.model
        self._joint_adr = {
            arm: np.array([m.joint(f"{arm}_{j}").qposadr[0] for j in ARM_JOINTS]) for arm in ARMS
        }
        self._finger_adr = {arm: np.array([m.joint(f"{arm}_finger_{t}").qposadr[0] for t in "ab"]) for arm in ARMS}
        self._finger_act = {arm: np.array([m.actuator(f"{arm}_finger_{t}").id for t in "ab"]) for arm in ARMS}
        self._mocap = {arm: m.body(f"{arm}_mocap").mocapid[0] for arm in ARMS}
        self._ee_body = {arm: m.body(f"{arm}_ee").id for arm in ARMS}
        self._block_adr = m.joint("block").qposadr[0]
        self._block_geom = m.geom(BLOCK_GEOM).id
        self._table_geom = m.geom(TABLE_GEOM).id
        self._finger_geoms = {arm: {m.geom(g).id for g in FINGER_GEOMS[arm]} for arm in ARMS}

    # ------------------------------------------------------------------------------- episode

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """``options={"block": (x, y, yaw)}`` fixes the block's start pose instead of sampling it."""
        super().reset(seed=seed)
        if options and "block" in options:
            self.block_start = np.asarray(options["block"], dtype=float)
        else:
            c, rng = self.config, self.np_random
            self.block_start = np.array([rng.uniform(*c.block_x), rng.uniform(*c.block_y), rng.uniform(*c.block_yaw)])
        self._set_start_state()
        self._elapsed = 0
        self._held = 0
        return self._observation(), {"is_success": False, "stage": 0, "stage_names": STAGE_NAMES}

    def _set_start_state(self) -> None:
        """Arms at home with open grippers, mocaps on the EE poses, block at ``block_start``."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        for arm in ARMS:
            d.qpos[self._joint_adr[arm]] = HOME_QPOS
            d.qpos[self._finger_adr[arm]] = FINGER_TRAVEL
            d.ctrl[self._finger_act[arm]] = FINGER_TRAVEL
        x, y, yaw = self.block_start
        d.qpos[self._block_adr : self._block_adr + 7] = [x, y, BLOCK_HALF[2], np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        mujoco.mj_forward(m, d)
        for arm in ARMS:
            d.mocap_pos[self._mocap[arm]] = d.xpos[self._ee_body[arm]]
            d.mocap_quat[self._mocap[arm]] = d.xquat[self._ee_body[arm]]
        mujoco.mj_forward(m, d)

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
            raise ValueError(
                f"action: expected {ACTION_DIM} finite values (per arm: pos 3, quat 4, gripper 1); "
                f"got shape {action.shape}{'' if action.shape != (ACTION_DIM,) else ' with non-finite values'}"
            )
        d = self.data
        for k, arm in enumerate(ARMS):
            part = action[8 * k : 8 * k + 8]
            mocap = self._mocap[arm]
            d.mocap_pos[mocap] = np.clip(part[:3], WORKSPACE_LOW, WORKSPACE_HIGH)
            norm = np.linalg.norm(part[3:7])
            if norm > 1e-6:  # a zero quaternion keeps the previous orientation
                d.mocap_quat[mocap] = part[3:7] / norm
            d.ctrl[self._finger_act[arm]] = np.clip(part[7], 0.0, 1.0) * FINGER_TRAVEL
        mujoco.mj_step(self.model, d, nstep=self.config.n_substeps)
        self._elapsed += 1
        stage = self.stage()
        self._held = self._held + 1 if stage == SUCCESS_STAGE else 0
        terminated = self._held >= self.config.success_hold_steps
        truncated = self._elapsed >= self.config.max_steps and not terminated
        info = {"is_success": terminated, "stage": stage, "stage_names": STAGE_NAMES}
        reward = 1.0 if terminated else min(stage, SUCCESS_STAGE - 1) / N_STAGES
        return self._observation(), reward, terminated, truncated, info

    # ------------------------------------------------------------------------------- state

    def fingers_touching(self) -> dict[str, int]:
        """How many fingers of ``left`` and ``right`` touch the block now, and ``table`` (0 or 1)."""
        d, block = self.data, self._block_geom
        touched: dict[str, set] = {"left": set(), "right": set(), "table": set()}
        for g1, g2 in d.contact.geom[: d.ncon]:
            if block not in (g1, g2):
                continue
            other = g2 if g1 == block else g1
            if other == self._table_geom:
                touched["table"].add(other)
            for arm in ARMS:
                if other in self._finger_geoms[arm]:
                    touched[arm].add(other)
        return {key: len(geoms) for key, geoms in touched.items()}

    def touching(self) -> dict[str, bool]:
        """Which of ``left``, ``right`` (fingers) and ``table`` touch the block now."""
        return {key: count > 0 for key, count in self.fingers_touching().items()}

    def lifted(self) -> bool:
        return bool(self.data.qpos[self._block_adr + 2] > BLOCK_HALF[2] + LIFT_MARGIN)

    def stage(self) -> int:
        """The highest stage whose condition holds now (module docstring; 0: none)."""
        n = self.fingers_touching()
        t = {key: count > 0 for key, count in n.items()}
        airborne = self.lifted() and not t["table"]
        if n["left"] == len(FINGER_GEOMS["left"]) and not t["right"] and airborne:
            return 5  # hold
        if t["left"] and airborne:
            return 4  # hand_over
        both_right = n["right"] == len(FINGER_GEOMS["right"])
        if both_right and airborne:
            return 3  # lift
        if both_right:
            return 2  # grasp
        return 1 if t["right"] else 0  # reach

    def qpos(self) -> np.ndarray:
        """(14,) float32: per arm (left, right) six joint angles and the gripper opening in [0, 1]."""
        q = self.data.qpos
        parts = [np.append(q[self._joint_adr[a]], q[self._finger_adr[a]].mean() / FINGER_TRAVEL) for a in ARMS]
        return np.concatenate(parts).astype(np.float32)

    def ee_pose(self) -> np.ndarray:
        """(14,) float64: per arm (left, right) EE position (3) and quaternion w, x, y, z (4)."""
        d = self.data
        return np.concatenate([np.concatenate([d.xpos[self._ee_body[a]], d.xquat[self._ee_body[a]]]) for a in ARMS])

    def block_pose(self) -> np.ndarray:
        """(7,) block position and quaternion w, x, y, z."""
        return self.data.qpos[self._block_adr : self._block_adr + 7].copy()

    # ------------------------------------------------------------------------------- images

    def renderer(self, size: int | None = None) -> CameraRenderer:
        """The env's renderer of ``size`` px (default: the observation size), made on first use."""
        size = size or self.config.image_size
        if size not in self._renderers:
            self._renderers[size] = CameraRenderer(self.model, size, cheap=self.config.cheap_render)
        return self._renderers[size]

    def render_cameras(self) -> dict[str, np.ndarray]:
        """``{camera: uint8 (S, S, 3)}`` for the configured cameras at the current state."""
        renderer = self.renderer()
        images = {}
        for cam in self.config.cameras:
            renderer.update(self.data, cam)
            images[cam] = renderer.render()
        return images

    def render(self):
        if self.render_mode == "rgb_array":
            renderer = self.renderer()
            renderer.update(self.data, "front")
            return renderer.render()
        return None

    def _observation(self) -> dict:
        obs = {"qpos": self.qpos()}
        if self.render_images:
            obs["images"] = self.render_cameras()
        return obs

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # ------------------------------------------------------------------------------- pickling

    def __getstate__(self) -> dict:
        """Config, RNG and the full physics state; models and GL contexts are rebuilt on load."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, physics, spec)
        rng = self._np_random.bit_generator.state if self._np_random is not None else None
        return {
            "config": self.config,
            "render_mode": self.render_mode,
            "render_images": self.render_images,
            "physics": physics,
            "rng": rng,
            "elapsed": self._elapsed,
            "held": self._held,
            "block_start": self.block_start,
            "spec": self.spec,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"], render_mode=state["render_mode"], render_images=state["render_images"])
        mujoco.mj_setState(self.model, self.data, state["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)
        if state["rng"] is not None:
            self._np_random = np.random.Generator(np.random.PCG64())
            self._np_random.bit_generator.state = state["rng"]
        self._elapsed, self.block_start, self.spec = state["elapsed"], state["block_start"], state["spec"]
        self._held = state.get("held", 0)
