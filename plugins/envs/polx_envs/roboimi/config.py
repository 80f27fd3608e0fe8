"""RoboIMI configuration and the core overrides ``--env roboimi`` brings. Cheap: attrs only."""

from __future__ import annotations

import math

from attrs import define, field

from polx.config import in_range, positive

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

    image_size: int = field(default=128, validator=[positive, in_range(8, 1024)])  # square camera images
    cameras: tuple[str, ...] = field(default=CAMERA_NAMES, validator=_check_cameras)
    max_steps: int = field(default=400, validator=positive)  # control steps per episode
    #: success: the handed-over block held by the left gripper alone, off the table, this many control steps in a row
    success_hold_steps: int = field(default=10, validator=positive)
    control_hz: int = field(default=50, validator=positive)
    physics_dt: float = field(default=0.002, validator=in_range(1e-4, 0.01))
    #: block start pose, uniform per seed: centre x, y and yaw about z
    block_x: tuple[float, float] = field(default=(0.0, 0.12), validator=_check_range)
    block_y: tuple[float, float] = field(default=(0.42, 0.58), validator=_check_range)
    block_yaw: tuple[float, float] = field(default=(-math.pi / 6, math.pi / 6), validator=_check_range)
    cheap_render: bool = True  # shadows, reflections and multisampling off (~10x faster on CPU)
    trajectory_image_size: int = field(default=256, validator=[positive, in_range(8, 2048)])  # PNG side
    default_episodes: int = field(default=50, validator=positive)  # size of the cached expert dataset
    default_seed: int = 0  # first seed of the cached expert dataset
    #: camera frames kept in memory while training: they are read lazily, so a dataset larger than RAM trains
    frame_cache_mb: int = field(default=4096, validator=[in_range(0, 1 << 20)])

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
