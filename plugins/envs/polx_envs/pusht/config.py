"""PushT configuration and the core overrides ``--env pusht`` brings. Cheap: attrs only."""

from __future__ import annotations

from attrs import define, field

from polx.config import in_range, one_of, positive

OBS_TYPES = ("image", "keypoints", "state")


@define(frozen=True, kw_only=True)
class PushTConfig:
    """The PushT benchmark of Diffusion Policy (Chi et al., 2023); see ``polx_envs.pusht.env``."""

    obs_type: str = field(default="image", validator=one_of(*OBS_TYPES))  # image | keypoints | state
    render_size: int = field(default=96, validator=[positive, in_range(8, 1024)])  # square frames, px
    legacy: bool = True  # the benchmark's start-state placement (published scores use it)
    # what trains when no --dataset is given: the published human demonstrations, shipped with
    # this plugin (206 episodes), or demonstrations of the scripted expert, generated on first use
    default_data: str = field(default="human", validator=one_of("human", "expert"))
    default_episodes: int = field(default=200, validator=positive)  # size of the cached expert dataset
    default_seed: int = field(default=0, validator=in_range(0, 2**31 - 1))  # first seed of that dataset
    demo_max_steps: int = field(default=300, validator=positive)  # expert episodes stop here if unsolved
    # px per control step the scripted expert moves the pusher between pushes, in its demos and
    # as polx dagger's teacher; at 15 its labels on a policy's states jump about as rarely as the
    # human demonstrations' (benchmarks/README.md, "DAgger"), at 30 it reaches contact sooner
    expert_travel_speed: float = field(default=30.0, validator=[positive, in_range(1.0, 100.0)])
    # image training reads frames lazily through a cache of this many MiB (a dataset larger than
    # RAM trains); not part of the data, so not in the dataset cache's name
    frame_cache_mb: int = field(default=2048, validator=in_range(0, 1 << 20))


#: core config overrides applied with ``--env pusht`` (the benchmark's evaluation protocol)
PUSHT_PRESET = {
    "policy": {"horizon": 16, "n_obs_steps": 2, "n_action_steps": 8},
    "eval": {"max_steps": 300, "n_test": 50, "n_train": 6, "test_start_seed": 100000, "train_start_seed": 0},
}
