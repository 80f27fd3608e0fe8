"""``polx dagger``: DAgger on top of the trainer, with the env's expert as the teacher.

Phase I trains on the starting data (the env's default dataset or ``--dataset``). Each round
then rolls the current policy out on fresh training seeds, has the expert label every state
the policy visited (``collect``), writes all data so far as a new aggregated replay buffer,
continues training from the previous round's checkpoint on it, and evaluates on the test
seeds. ``loop`` holds the stages and their resume logic; ``config`` the ``dagger.*`` options.
"""

from polx.dagger.config import DaggerConfig
from polx.dagger.loop import DaggerPlan, prepare_dagger, run_dagger, stage_dir, train_stage

__all__ = ["DaggerConfig", "DaggerPlan", "prepare_dagger", "run_dagger", "stage_dir", "train_stage"]
