"""PushT configuration and the core overrides ``--env pusht`` brings. Cheap: attrs only."""

from __future__ import annotations

from attrs import define

from polx.config import doc, in_range, one_of, positive

OBS_TYPES = ("image", "keypoints", "state")


@define(frozen=True, kw_only=True)
class PushTConfig:
    """The PushT benchmark of Diffusion Policy (Chi et al., 2023); see ``polx_envs.pusht.env``."""

    obs_type: str = doc("image | keypoints | state: the benchmark's observation variant", default="image", validator=one_of(*OBS_TYPES))
    render_size: int = doc("side of the square image observations and frames, px", default=96, validator=[positive, in_range(8, 1024)])
    legacy: bool = doc("place start states as the benchmark's evaluation does (published scores use it)", default=True)
    default_data: str = doc(
        "what trains without --dataset: human (the 206 published human demonstrations shipped with this plugin) | "
        "expert (demonstrations of the scripted expert, generated on first use)",
        default="human", validator=one_of("human", "expert"),
    )  # fmt: skip
    default_episodes: int = doc("episodes of the cached expert dataset (default_data=expert)", default=200, validator=positive)
    default_seed: int = doc("first seed tried for the cached expert dataset (then seed + 1, ...)", default=0, validator=in_range(0, 2**31 - 1))
    demo_max_steps: int = doc("control steps after which an expert demonstration stops if unsolved", default=300, validator=positive)
    # at 15 the expert's labels on a policy's states jump about as rarely as the human
    # demonstrations' (benchmarks/README.md, "DAgger"), at 30 it reaches contact sooner
    expert_travel_speed: float = doc(
        "px per control step the scripted expert moves the pusher between pushes, in its demonstrations and as polx dagger's teacher",
        default=30.0, validator=[positive, in_range(1.0, 100.0)],
    )  # fmt: skip
    # not part of the data, so not in the dataset cache's name
    frame_cache_mb: int = doc(
        "MiB of image frames kept in memory while training; frames are read lazily, so a dataset larger than RAM trains",
        default=2048, validator=in_range(0, 1 << 20),
    )  # fmt: skip


#: core config overrides applied with ``--env pusht`` (the benchmark's evaluation protocol)
PUSHT_PRESET = {
    "policy": {"horizon": 16, "n_obs_steps": 2, "n_action_steps": 8},
    "eval": {"max_steps": 300, "n_test": 50, "n_train": 6, "test_start_seed": 100000, "train_start_seed": 0},
}
