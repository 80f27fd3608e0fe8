"""SequenceSampler and episode_split: properties over random episode layouts (hypothesis).

The data is each step's own flat index, so a window's values say exactly which steps it used.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.data.sampler import SequenceSampler, episode_split


@st.composite
def layouts(draw):
    """(episode_ends, sequence_length, pad_before, pad_after, episode_mask)."""
    lengths = draw(st.lists(st.integers(1, 12), min_size=1, max_size=6))
    seq = draw(st.integers(1, 8))
    pad_before = draw(st.integers(0, seq - 1))
    pad_after = draw(st.integers(0, seq - 1))
    mask = draw(st.lists(st.booleans(), min_size=len(lengths), max_size=len(lengths)))
    return np.cumsum(lengths), seq, pad_before, pad_after, np.array(mask)


def step_data(episode_ends: np.ndarray) -> dict[str, np.ndarray]:
    n = int(episode_ends[-1])
    return {"step": np.arange(n), "pair": np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32)}


def episode_of(step: int, episode_ends: np.ndarray) -> int:
    return int(np.searchsorted(episode_ends, step, side="right"))


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_window_count(layout):
    ends, seq, pad_before, pad_after, mask = layout
    sampler = SequenceSampler(ends, seq, pad_before, pad_after, episode_mask=mask)
    lengths = np.diff(ends, prepend=0)
    expected = sum(max(length - seq + pad_before + pad_after + 1, 0) for length in lengths[mask])
    assert len(sampler) == expected


@settings(max_examples=200, deadline=None)
@given(layouts())
def test_windows_lie_in_one_episode_pad_with_edges_and_mark_exactly_the_padding(layout):
    ends, seq, pad_before, pad_after, mask = layout
    sampler = SequenceSampler(ends, seq, pad_before, pad_after, episode_mask=mask)
    data = step_data(ends)
    starts = np.concatenate([[0], ends[:-1]])
    seen_windows = set()
    for i in range(len(sampler)):
        windows, is_pad = sampler.sample_sequence(data, i)
        steps = windows["step"]
        assert steps.shape == (seq,) and windows["pair"].shape == (seq, 2) and is_pad.shape == (seq,)
        np.testing.assert_array_equal(windows["pair"][:, 0], steps)
        episode = {episode_of(s, ends) for s in steps}
        assert len(episode) == 1  # never crosses an episode boundary
        (e,) = episode
        assert mask[e]  # only selected episodes
        lo, hi = starts[e], ends[e]
        real = steps[~is_pad]
        assert len(real) >= 1
        # the real steps are consecutive; padding before/after repeats the first/last real frame
        np.testing.assert_array_equal(real, np.arange(real[0], real[0] + len(real)))
        n_before = int(np.argmax(~is_pad))
        assert is_pad[:n_before].all() and not is_pad[n_before : n_before + len(real)].any()
        assert is_pad[n_before + len(real) :].all()
        assert (steps[:n_before] == real[0]).all() and (steps[n_before + len(real) :] == real[-1]).all()
        # is_pad marks exactly the steps of the window that fall outside its episode
        start = int(real[0]) - n_before
        ideal = start + np.arange(seq)
        np.testing.assert_array_equal(is_pad, (ideal < lo) | (ideal >= hi))
        assert lo - pad_before <= start <= hi - seq + pad_after
        seen_windows.add((start, e))
    assert len(seen_windows) == len(sampler)  # every window distinct


@settings(max_examples=100, deadline=None)
@given(layouts(), st.data())
def test_vectorised_indices_match_sample_sequence(layout, data):
    ends, seq, pad_before, pad_after, mask = layout
    sampler = SequenceSampler(ends, seq, pad_before, pad_after, episode_mask=mask)
    if len(sampler) == 0:
        return
    idxs = np.array(data.draw(st.lists(st.integers(0, len(sampler) - 1), min_size=1, max_size=10)))
    n_steps = data.draw(st.integers(1, seq))
    steps, is_pad = sampler.indices(idxs, n_steps=n_steps)
    assert steps.shape == is_pad.shape == (len(idxs), n_steps)
    for row, i in enumerate(idxs):
        windows, pad = sampler.sample_sequence(step_data(ends), int(i), n_steps=n_steps)
        np.testing.assert_array_equal(steps[row], windows["step"])
        np.testing.assert_array_equal(is_pad[row], pad)
        full, full_pad = sampler.sample_sequence(step_data(ends), int(i))
        np.testing.assert_array_equal(windows["step"], full["step"][:n_steps])  # a prefix of the window
        np.testing.assert_array_equal(pad, full_pad[:n_steps])


def test_known_windows_of_one_episode():
    sampler = SequenceSampler(np.array([4]), sequence_length=3, pad_before=1, pad_after=2)
    data = {"x": np.arange(10, 14)}
    got = [sampler.sample_sequence(data, i) for i in range(len(sampler))]
    assert [w["x"].tolist() for w, _ in got] == [
        [10, 10, 11],
        [10, 11, 12],
        [11, 12, 13],
        [12, 13, 13],
        [13, 13, 13],
    ]
    assert [p.tolist() for _, p in got] == [
        [True, False, False],
        [False, False, False],
        [False, False, False],
        [False, False, True],
        [False, True, True],
    ]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="pad_before"):
        SequenceSampler(np.array([5]), 3, pad_before=3)
    with pytest.raises(ValueError, match="pad_after"):
        SequenceSampler(np.array([5]), 3, pad_after=-1)
    with pytest.raises(ValueError, match="sequence_length"):
        SequenceSampler(np.array([5]), 0)
    with pytest.raises(ValueError, match="episode_mask"):
        SequenceSampler(np.array([5, 9]), 2, episode_mask=np.array([True]))
    with pytest.raises(ValueError, match="n_steps"):
        SequenceSampler(np.array([5]), 3).indices(np.array([0]), n_steps=4)


# ---------------------------------------------------------------------------------------------
# episode_split


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 60),
    val_ratio=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**32 - 1),
    max_train=st.none() | st.integers(1, 60),
)
def test_episode_split_properties(n, val_ratio, seed, max_train):
    train, val = episode_split(n, val_ratio, seed, max_train_episodes=max_train)
    assert train.shape == val.shape == (n,) and train.dtype == val.dtype == bool
    assert not (train & val).any()
    assert train.sum() >= 1
    if val_ratio > 0 and n > 1:
        assert val.sum() >= 1
    if val_ratio == 0:
        assert not val.any()
    if max_train is None:
        assert (train | val).all()
    else:
        assert train.sum() == min(max_train, n - val.sum())
    again = episode_split(n, val_ratio, seed, max_train_episodes=max_train)
    np.testing.assert_array_equal(again[0], train)  # same seed, same split
    np.testing.assert_array_equal(again[1], val)
    # subsampling only drops training episodes; the validation set does not depend on it
    np.testing.assert_array_equal(episode_split(n, val_ratio, seed)[1], val)


def test_episode_split_fraction_and_seed_dependence():
    train, val = episode_split(200, 0.1, seed=0)
    assert val.sum() == 20 and train.sum() == 180
    other = episode_split(200, 0.1, seed=1)[1]
    assert not np.array_equal(val, other)
    with pytest.raises(ValueError, match="val_ratio"):
        episode_split(10, 1.0, seed=0)
    with pytest.raises(ValueError, match="max_train_episodes"):
        episode_split(10, 0.1, seed=0, max_train_episodes=0)
