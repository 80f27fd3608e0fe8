"""RoboIMI configuration and the core overrides ``--env roboimi`` brings. Cheap: attrs only."""

from __future__ import annotations

import math

from attrs import define

from polx.config import doc, in_range, positive

#: every camera the scene defines; observations use ``RoboIMIConfig.cameras`` of them
CAMERA_NAMES = ("r_vis", "top", "front")
ARMS = ("left", "right")  # order of arms in actions, qpos and EE poses (as in ACT)
ACTION_DIM = 16  # per arm: EE position (3), quaternion w,x,y,z (4), gripper opening in [0, 1] (1)
QPOS_DIM = 14  # per arm: 6 joint angles, gripper opening in [0, 1]
EE_POSE_DIM = 14  # per arm: EE position (3), quaternion w,x,y,z (4)


def _check_cameras(instance, attribute, value) -> None:
    unknown = [c for c in value if c not in CAMERA_NAMES]
    if unknown or not value or len(set(value)) != len(value):
        raise ValueError(
            f"{attribute.name}: must be distinct names from {', '.join(CAMERA_NAMES)}; got {list(value)!r}"
        )


def _check_range(instance, attribute, value) -> None:
    lo, hi = value
    if not lo <= hi:
        raise ValueError(f"{attribute.name}: low must be <= high; got {list(value)!r}")


@define(frozen=True, kw_only=True)
class RoboIMIConfig:
    """Dual-arm block transfer. Lengths in metres, angles in radians, world z up, table top at z=0."""

    image_size: int = doc("side of the square camera images, px", default=128, validator=[positive, in_range(8, 1024)])
    cameras: tuple[str, ...] = doc("cameras the observations hold: distinct names from r_vis, top, front", default=CAMERA_NAMES, validator=_check_cameras)
    max_steps: int = doc("control steps per episode at most (then truncated)", default=400, validator=positive)
    success_hold_steps: int = doc(
        "success: the handed-over block held by the left gripper alone, off the table, this many control steps in a row",
        default=10, validator=positive,
    )  # fmt: skip
    control_hz: int = doc(
        "control steps per simulated second; 1 / (control_hz * physics_dt) must be a whole number of physics steps",
        default=50, validator=positive,
    )  # fmt: skip
    physics_dt: float = doc("MuJoCo physics timestep, s", default=0.002, validator=in_range(1e-4, 0.01))
    block_x: tuple[float, float] = doc("[low, high] of the block's start centre x, m, drawn uniformly per seed", default=(0.0, 0.12), validator=_check_range)
    block_y: tuple[float, float] = doc("[low, high] of the block's start centre y, m, drawn uniformly per seed", default=(0.42, 0.58), validator=_check_range)
    block_yaw: tuple[float, float] = doc(
        "[low, high] of the block's start yaw about z, rad, drawn uniformly per seed", default=(-math.pi / 6, math.pi / 6), validator=_check_range
    )  # fmt: skip
    cheap_render: bool = doc("shadows, reflections and multisampling off (~10x faster on CPU)", default=True)
    trajectory_image_size: int = doc("side of the trajectory PNGs (front view), px", default=256, validator=[positive, in_range(8, 2048)])
    default_episodes: int = doc("episodes of the cached expert dataset (what trains without --dataset)", default=50, validator=positive)
    default_seed: int = doc("first seed tried for the cached expert dataset (then seed + 1, ...)", default=0, validator=in_range(0, 2**31 - 1))
    frame_cache_mb: int = doc(
        "MiB of camera frames kept in memory while training; frames are read lazily, so a dataset larger than RAM trains",
        default=4096, validator=[in_range(0, 1 << 20)],
    )  # fmt: skip

    def __attrs_post_init__(self) -> None:
        ratio = 1.0 / (self.control_hz * self.physics_dt)
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(
                f"control_hz: 1 / (control_hz * physics_dt) must be a whole number of physics steps; "
                f"got {self.control_hz} Hz with physics_dt={self.physics_dt}"
            )

    @property
    def n_substeps(self) -> int:
        return round(1.0 / (self.control_hz * self.physics_dt))


# Core overrides for ``--env roboimi``. Images are 96 px here, not 128: three ResNet-18 encoders on
# two CPU cores cost ~1.8x less per step at 96 px, the cached dataset is 1.8x smaller, and 96 px
# with an 84 px random crop is diffusion_policy's own image setting. ``env.image_size=128`` restores it.
ROBOIMI_PRESET: dict = {
    "env": {"image_size": 96},
    "encoder": {"crop_shape": [84, 84]},
    # group_width 16: policy.action_layout=packed lays the arms out as [L8, 0x8, R8, 0x8], 32 wide
    "policy": {"horizon": 16, "n_obs_steps": 2, "n_action_steps": 8, "group_width": 16},
    "eval": {"max_steps": 400, "n_test": 5, "n_train": 0, "n_vis": 5},
}
