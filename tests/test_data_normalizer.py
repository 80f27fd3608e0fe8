"""Normalizer: round trip and output range (hypothesis), constant dimensions, saving with a policy."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from polx.data.normalizer import Normalizer


@st.composite
def fit_arrays(draw):
    """(N, D) float32 data in [-100, 100]; some columns constant (the divide-by-zero trap)."""
    n = draw(st.integers(1, 30))
    d = draw(st.integers(1, 5))
    x = draw(hnp.arrays(np.float32, (n, d), elements=st.floats(-100, 100, width=32)))
    for col in range(d):
        if draw(st.booleans()) and draw(st.booleans()):
            x[:, col] = x[0, col]
    return x


@settings(max_examples=150, deadline=None)
@given(fit_arrays(), st.sampled_from(["limits", "gaussian"]))
def test_round_trip(x, mode):
    norm = Normalizer.fit({"action": x}, mode=mode)
    t = torch.from_numpy(x)
    back = norm.unnormalize("action", norm.normalize("action", t))
    assert back.dtype == torch.float32 and back.shape == t.shape
    np.testing.assert_allclose(back.numpy(), x, rtol=1e-5, atol=1e-4)


@settings(max_examples=150, deadline=None)
@given(fit_arrays())
def test_limits_output_within_unit_range_on_fit_data(x):
    y = Normalizer.fit({"action": x}, mode="limits").normalize("action", torch.from_numpy(x)).numpy()
    assert np.isfinite(y).all()
    assert y.min() >= -1 - 1e-6 and y.max() <= 1 + 1e-6
    spread = x.max(0) - x.min(0) >= 1e-3  # clearly non-constant columns reach both ends
    np.testing.assert_allclose(y.min(0)[spread], -1, atol=1e-5)
    np.testing.assert_allclose(y.max(0)[spread], 1, atol=1e-5)


def test_constant_dimension_maps_to_zero_and_round_trips():
    x = np.array([[3.0, 0.0], [3.0, 1.0], [3.0, 2.0]], dtype=np.float32)  # column 0 constant
    for mode in ("limits", "gaussian"):
        norm = Normalizer.fit({"s": x}, mode=mode)
        y = norm.normalize("s", torch.from_numpy(x))
        assert torch.isfinite(y).all()
        assert torch.equal(y[:, 0], torch.zeros(3))
        assert torch.allclose(norm.unnormalize("s", y), torch.from_numpy(x))


def test_gaussian_standardises_fit_data():
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(1000, 3)).astype(np.float32)
    y = Normalizer.fit({"s": x}, mode="gaussian").normalize("s", torch.from_numpy(x))
    assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(y.std(0, correction=0), torch.ones(3), atol=1e-4)


def test_stats_are_per_last_dimension_over_all_leading_axes():
    x = np.random.default_rng(0).uniform(-2, 7, size=(6, 4, 3)).astype(np.float32)  # (N, T, D)
    y = Normalizer.fit({"a": x}).normalize("a", torch.from_numpy(x))
    assert y.shape == (6, 4, 3)
    assert torch.allclose(y.reshape(-1, 3).amin(0), -torch.ones(3), atol=1e-6)
    assert torch.allclose(y.reshape(-1, 3).amax(0), torch.ones(3), atol=1e-6)


def test_identity_keys_pass_images_through_without_reading_them():
    images = torch.rand(2, 2, 3, 8, 8)  # (B, To, C, H, W)
    norm = Normalizer.fit({"action": np.zeros((4, 2), np.float32), "image": "not read"}, identity_keys=["image"])
    assert sorted(norm.keys()) == ["action", "image"]
    assert torch.equal(norm.normalize("image", images), images)
    assert torch.equal(norm.unnormalize("image", images), images)


def test_saved_in_a_parent_state_dict_and_rebuilt():
    x = np.random.default_rng(1).uniform(-3, 9, size=(50, 2)).astype(np.float32)
    pos = np.random.default_rng(2).uniform(0, 500, size=(50, 2)).astype(np.float32)
    policy = torch.nn.Module()
    policy.normalizer = Normalizer.fit({"action": x, "agent_pos": pos}, mode="limits", identity_keys=["image"])
    state = policy.state_dict()
    assert {"normalizer.stats.action.shift", "normalizer.stats.action.scale", "normalizer.stats.action.bias"} <= set(
        state
    )

    rebuilt = Normalizer.from_state_dict(state, prefix="normalizer.")
    assert sorted(rebuilt.keys()) == ["action", "agent_pos", "image"]
    t = torch.from_numpy(x)
    assert torch.equal(rebuilt.normalize("action", t), policy.normalizer.normalize("action", t))
    standalone = Normalizer.from_state_dict(policy.normalizer.state_dict())
    assert torch.equal(standalone.normalize("action", t), rebuilt.normalize("action", t))

    # the usual checkpoint path: torch.save, torch.load(weights_only=True), load_state_dict
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    other = torch.nn.Module()
    other.normalizer = Normalizer.fit({"action": -x, "agent_pos": pos}, identity_keys=["image"])
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(other.normalizer.normalize("action", t), policy.normalizer.normalize("action", t))


def test_errors_name_the_problem():
    norm = Normalizer.fit({"action": np.zeros((3, 2), np.float32)})
    with pytest.raises(KeyError, match="no key 'agent_pos'; it has: action"):
        norm.normalize("agent_pos", torch.zeros(2))
    with pytest.raises(ValueError, match="mode"):
        Normalizer.fit({"action": np.zeros((3, 2))}, mode="minmax")
    with pytest.raises(ValueError, match=r"expected \(N, ..., D\)"):
        Normalizer.fit({"action": np.zeros(3)})
    with pytest.raises(ValueError, match="no normalizer buffers"):
        Normalizer.from_state_dict({"head.weight": torch.zeros(1)})
