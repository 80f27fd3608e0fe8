"""``polx dagger``: DAgger on top of the trainer, with the env's expert or a trained checkpoint as the teacher.

Phase I trains on the starting data (the env's default dataset or ``--dataset``), or on unrolls
of the teacher checkpoint and its intermediate checkpoints labelled by the teacher. Each round
then rolls the current policy out on fresh training seeds, has the teacher label every state the
policy visited (``collect``), writes all data so far as a new aggregated replay buffer, continues
training from the previous round's checkpoint on it, and evaluates on the test seeds. ``loop``
holds the stages and their resume logic; ``teacher`` the teachers and actors; ``config`` the
``dagger.*`` options.
"""

from polx.dagger.collect import LabelledEpisode, collect, collect_unrolls
from polx.dagger.config import DaggerConfig
from polx.dagger.loop import DaggerPlan, prepare_dagger, run_dagger, stage_dir, train_stage, write_episodes
from polx.dagger.teacher import PolicySpec, load_checkpoint_spec, make_source_actor, make_teacher

__all__ = [
    "DaggerConfig", "DaggerPlan", "LabelledEpisode", "PolicySpec", "collect", "collect_unrolls", "load_checkpoint_spec",
    "make_source_actor", "make_teacher", "prepare_dagger", "run_dagger", "stage_dir", "train_stage", "write_episodes",
]  # fmt: skip
