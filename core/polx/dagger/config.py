"""The ``dagger.*`` options: their own attrs section, parsed with the same strict rules as the rest."""

from __future__ import annotations

from typing import Iterable

from attrs import define

from polx.config import defaults_of, doc, in_range, non_negative, positive, resolve_sections


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

    def beta_at(self, round_: int) -> float:
        return self.beta * self.beta_decay ** (round_ - 1)

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
