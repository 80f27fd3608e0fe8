"""Per-stage rollout metrics of staged tasks (RoboIMI's reach, grasp, lift, hand-over, hold)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.components import Episode
from polx.eval.metrics import furthest_stage, is_rollout_metric, stage_counts, stage_line, summarize

NAMES = ("reach", "grasp", "lift", "hand_over", "hold")


def _episode(seed: int, stages: list[int]) -> Episode:
    infos = [{"is_success": False, "stage": s, "stage_names": NAMES} for s in stages]
    return Episode(seed=seed, actions=np.zeros((len(stages), 2)), rewards=np.array([min(s, 4) / 5 for s in stages]), infos=infos)


episodes_st = st.lists(st.lists(st.integers(0, len(NAMES)), min_size=1, max_size=30), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(stage_lists=episodes_st)
def test_furthest_stage_counts_sum_to_the_episodes_and_agree_with_the_rates(stage_lists: list[list[int]]) -> None:
    episodes = [_episode(seed, stages) for seed, stages in enumerate(stage_lists)]
    counts = stage_counts(episodes)
    assert list(counts) == ["none", *NAMES]
    assert sum(counts.values()) == len(episodes)
    metrics = summarize("test", episodes)
    labels = list(counts)
    for k, name in enumerate(NAMES, start=1):
        at_least = sum(counts[label] for label in labels[k:])  # episodes whose furthest stage is k or beyond
        assert metrics[f"test_reached_{name}"] == at_least / len(episodes)
        assert is_rollout_metric(f"test_reached_{name}") and is_rollout_metric(f"train_reached_{name}")
    rates = [metrics[f"test_reached_{name}"] for name in NAMES]
    assert rates == sorted(rates, reverse=True)  # reaching a stage counts for every stage below it
    assert [furthest_stage(e) for e in episodes] == [max(s) for s in stage_lists]
    assert stage_line(metrics).startswith("reached: reach ")


def test_envs_without_stages_report_none() -> None:
    plain = Episode(seed=0, actions=np.zeros((3, 2)), rewards=np.zeros(3), infos=[{"is_success": False}] * 3)
    metrics = summarize("test", [plain])
    assert not any("reached" in key for key in metrics) and stage_line(metrics) is None
    assert stage_counts([plain]) == {"none": 1}
