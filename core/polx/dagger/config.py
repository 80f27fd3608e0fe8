"""The ``dagger.*`` options: their own attrs section, parsed with the same strict rules as the rest."""

from __future__ import annotations

from typing import Iterable

from attrs import define

from polx.config import defaults_of, doc, in_range, non_negative, one_of, positive, resolve_sections


@define(frozen=True, kw_only=True)
class DaggerConfig:
    """What a DAgger run does besides training; every round uses the same settings."""

    beta: float = doc("expert control probability in round 1; round r uses beta * beta_decay ** (r - 1)", default=0.5, validator=in_range(0.0, 1.0))
    beta_decay: float = doc("per-round decay of beta: round r uses beta * beta_decay ** (r - 1)", default=0.5, validator=in_range(0.0, 1.0))
    steps_per_round: int = doc("training steps added by each round, continuing from the previous round's checkpoint", default=2000, validator=positive)
    # away from the test seeds (eval.test_start_seed, 100000) and the demos' seeds (0, 1, ...)
    start_seed: int = doc(
        "seed of round 1's first rollout; round r, episode i uses start_seed + (r - 1) * episodes + i",
        default=200_000, validator=non_negative,
    )  # fmt: skip
    disagreement: float = doc(
        "a step counts as a disagreement when the policy's and the expert's actions differ by more than this "
        "in normalized action units ([-1, 1] per dimension), in the largest dimension",
        default=0.1, validator=positive,
    )  # fmt: skip
    max_steps: int | None = doc("env steps per collected episode; null: eval.max_steps", default=None, validator=positive)
    # Phase I (round 0)
    phase1: str = doc(
        "dataset: Phase I trains on the starting data (the env's default or --dataset); unrolls: on episodes driven by the "
        "--teacher checkpoint and by phase1_checkpoints, every step labelled by the teacher (LucidSim's Phase I)",
        default="dataset", validator=one_of("dataset", "unrolls"),
    )  # fmt: skip
    phase1_checkpoints: tuple[str, ...] = doc(
        "phase1=unrolls: intermediate checkpoints that also drive unrolls (files or run directories); "
        "'all': every top-k checkpoint of the teacher's run besides the teacher", default=(),
    )  # fmt: skip
    phase1_unrolls: int = doc("phase1=unrolls: episodes driven by each source (the teacher and each phase1_checkpoints entry)", default=10, validator=positive)
    phase1_seed: int = doc(
        "phase1=unrolls: seed of the first unroll; source s, unroll i uses phase1_seed + s * phase1_unrolls + i",
        default=300_000, validator=non_negative,
    )  # fmt: skip
    unroll_trim: str = doc(
        "phase1=unrolls: none keeps each unroll whole; peak cuts it after the step whose reward first reaches the unroll's "
        "maximum, as the demonstrations stop at success (an unroll that never succeeds otherwise ends in steps of the source "
        "hovering where it got to). The student's rollouts in the rounds are kept whole: their late steps are where the "
        "teacher's corrections matter",
        default="none", validator=one_of("none", "peak"),
    )  # fmt: skip
    label: str = doc(
        "a checkpoint teacher's label of a visited step: step, its action for that step (the stored action); chunk, "
        "also its whole predicted chunk there, which the student then imitates as that step's target, so every target "
        "is one plan of the teacher's rather than a row of per-step predictions; a starting dataset's steps (phase1=dataset) "
        "carry their own demonstrated future as chunks (needs a checkpoint teacher with the student's policy.horizon and "
        "policy.n_obs_steps; on PushT it taught better than step, benchmarks/README.md); auto: chunk where a checkpoint "
        "teacher's windows match the student's, else step (the scripted expert labels steps). The run records which it used",
        default="auto", validator=one_of("auto", "step", "chunk"),
    )  # fmt: skip
    # how each round trains
    normalizer: str = doc(
        "keep: every round trains with Phase I's normaliser (a label beyond its limits is a target beyond +-1); refit: each "
        "round refits it on all data so far, so its limits cover what the rounds add, but moving them rescales every input "
        "and output the policy has learnt: on PushT keypoints the teacher's chunks widened the action range by 9-21% and "
        "the refitted rounds fell below the kept ones, on RoboIMI far more (benchmarks/README.md)",
        default="keep", validator=one_of("keep", "refit"),
    )  # fmt: skip
    schedule: str = doc(
        "restart: each round's steps_per_round have their own warmup and cosine decay from round_lr_scale * train.lr to train.min_lr; "
        "stretch: the whole run's cosine is stretched over the new train.max_steps (a small warm restart)",
        default="restart", validator=one_of("restart", "stretch"),
    )  # fmt: skip
    # benchmarks/bench_dagger_rounds.py could not separate the variants on 50 validation seeds (0.29-0.35, within the
    # noise); of the restarted ones a quarter of train.lr scored higher than train.lr (0.325 against 0.294)
    round_lr_scale: float = doc("schedule=restart: peak learning rate of each round, as a fraction of train.lr", default=0.25, validator=positive)
    round_warmup_steps: int = doc("schedule=restart: linear warmup at the start of each round", default=100, validator=non_negative)

    def beta_at(self, round_: int) -> float:
        return self.beta * self.beta_decay ** (round_ - 1)

    def phase1_seeds(self, sources: int) -> list[list[int]]:
        return [list(range(self.phase1_seed + s * self.phase1_unrolls, self.phase1_seed + (s + 1) * self.phase1_unrolls)) for s in range(sources)]

    def seeds(self, round_: int, episodes: int) -> list[int]:
        first = self.start_seed + (round_ - 1) * episodes
        return list(range(first, first + episodes))


def split_overrides(overrides: Iterable[str]) -> tuple[list[str], list[str]]:
    """``KEY=VALUE`` arguments -> (``dagger.*`` ones, the rest, for the training config)."""
    ours, rest = [], []
    for text in overrides:
        (ours if text.split("=", 1)[0].strip().startswith("dagger.") else rest).append(text)
    return ours, rest


def resolve_dagger_config(overrides: Iterable[str], base: dict | None = None) -> DaggerConfig:
    """Defaults (or a saved ``base``) plus ``dagger.KEY=VALUE``; ``ConfigError`` lists every problem."""
    tree = {"dagger": dict(base) if base is not None else defaults_of(DaggerConfig)}
    return resolve_sections({"dagger": DaggerConfig}, tree, overrides, only_schema=True)["dagger"]
