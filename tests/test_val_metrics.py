"""Validation figures (``polx.train.val_metrics``): sampled MAE counts only valid entries, per group.

A real policy (the ``imf_attnres`` head on the toy env's low-dim observations, packed layout)
samples chunks; whatever the batch holds at padded steps or masked dims never changes the MAE,
the per-group figures average to the whole, and the imbalance is ``|L - R| / (L + R)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.config import resolve_config
from polx.data.normalizer import Normalizer
from polx.policy.policy import build_policy
from polx.train.val_metrics import group_loss_metrics, imbalance, sample_mae

from test_objective_contract import PLUGINS  # noqa: E402

pytest.importorskip("polx_imf_attnres")
META = {"obs": {"pos": {"shape": [2], "type": "low_dim"}}, "action": {"shape": [3], "groups": {"arm": [0, 2], "grip": [2, 3]}}}


@pytest.fixture(scope="module")
def policy():
    config = resolve_config(
        PLUGINS, head="imf_attnres", env="toy_reach",
        overrides=["head.n_emb=16", "head.n_layer=1", "policy.horizon=4", "policy.n_action_steps=2", "policy.action_layout=packed"],
    )  # fmt: skip
    rng = np.random.default_rng(0)
    normalizer = Normalizer.fit({"action": rng.normal(size=(50, 3)), "pos": rng.normal(size=(50, 2))})
    torch.manual_seed(0)
    return build_policy(PLUGINS, config, META, normalizer)


def _batch(seed: int, pad_from: int):
    g = torch.Generator().manual_seed(seed)
    is_pad = torch.zeros(3, 4, dtype=torch.bool)
    is_pad[1:, pad_from:] = True
    return {"obs": {"pos": torch.randn(3, 2, 2, generator=g)}, "action": torch.randn(3, 4, 3, generator=g), "action_is_pad": is_pad}


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), pad_from=st.integers(1, 4), garbage=st.sampled_from([5.0, -1e3]))
def test_padded_steps_and_masked_dims_never_change_the_sampled_mae(policy, seed, pad_from, garbage):
    batch = _batch(seed, pad_from)
    reference = sample_mae(policy, batch, [1, 2], seed=0, groups=policy.layout.groups)
    assert policy.head.spec.action_dim == 4  # packed: [arm arm, grip 0]
    junk = dict(batch, action=torch.where(batch["action_is_pad"][..., None], garbage, batch["action"]))
    assert sample_mae(policy, junk, [1, 2], seed=0, groups=policy.layout.groups) == pytest.approx(reference)
    masked = dict(batch, action=batch["action"].clone(), action_mask=torch.tensor([True, True, False]))
    masked["action"][..., 2] = garbage
    assert sample_mae(policy, masked, [1], seed=0, groups=policy.layout.groups)["val_action_mae_arm_1step"] == pytest.approx(
        reference["val_action_mae_arm_1step"]
    )
    # the groups' MAEs, weighted by their valid entries, make up the whole
    n_valid = int((~batch["action_is_pad"]).sum())
    whole = (2 * reference["val_action_mae_arm_2step"] + reference["val_action_mae_grip_2step"]) / 3
    assert reference["val_action_mae_2step"] == pytest.approx(whole, rel=1e-5) and n_valid > 0


@settings(deadline=None)
@given(st.floats(0, 10), st.floats(0, 10))
def test_imbalance_is_the_relative_gap_of_the_two_groups(left, right):
    value = imbalance([left, right])
    assert 0.0 <= value <= 1.0 and value == pytest.approx(imbalance([right, left]))
    if left + right > 0:
        assert value == pytest.approx(abs(left - right) / (left + right))


def test_group_losses_are_averaged_over_batches_with_their_imbalance():
    out = group_loss_metrics([{"loss": 1.0, "group_loss_left": 1.0, "group_loss_right": 3.0}, {"group_loss_left": 3.0, "group_loss_right": 3.0}])
    assert out == {"val_group_loss_left": 2.0, "val_group_loss_right": 3.0, "val_group_loss_imbalance": pytest.approx(0.2)}
    assert group_loss_metrics([{"loss": 1.0}]) == {}
