"""Trajectory PNGs say which seed they show and what it scored: a caption strip stamped by core."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from polx.components import Episode
from polx.eval.metrics import episode_caption
from polx.eval.rollout import stamp_caption

NAMES = ("reach", "grasp", "lift", "hand_over", "hold")


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**9),
    rewards=st.lists(st.floats(0, 1), min_size=1, max_size=20),
    success=st.sampled_from([None, False, True]),
    staged=st.booleans(),
    stage=st.integers(0, len(NAMES)),
)
def test_the_caption_names_the_seed_the_score_and_the_outcome(seed, rewards, success, staged, stage):
    infos = [{} if success is None else {"is_success": success} for _ in rewards]
    if staged:
        infos = [{**info, "stage": stage, "stage_names": NAMES} for info in infos]
    caption = episode_caption(Episode(seed=seed, actions=np.zeros((len(rewards), 2)), rewards=np.array(rewards), infos=infos))
    assert caption.startswith(f"seed {seed}  score {max(rewards):.3f}")
    assert ("  solved" in caption) == bool(success) and ("not solved" in caption) == (success is False)
    reached = "reached " + (NAMES[stage - 1] if stage else "no stage")
    assert (reached in caption) == (staged and not success)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(40, 400), height=st.integers(20, 300), seed=st.integers(0, 2**31 - 1))
def test_the_strip_goes_above_the_picture_and_leaves_its_pixels_alone(tmp_path: Path, width, height, seed):
    picture = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path = tmp_path / f"episode_{seed}.png"
    Image.fromarray(picture).save(path)
    stamp_caption(path, "seed 100000  score 0.873  solved")
    with Image.open(path) as stamped:
        out = np.asarray(stamped.convert("RGB"))
    strip = out.shape[0] - height
    assert out.shape[1] == width and strip > 0
    assert np.array_equal(out[strip:], picture)
    assert (out[:strip] < 128).any() and (out[:strip] == 255).any()  # dark text on white
