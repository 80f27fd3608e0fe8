"""The scripted expert: it succeeds, and the reward stages fire in order along the way."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polx_envs.roboimi.env import RoboIMIEnv
from polx_envs.roboimi.expert import TransferExpert, quat_from_axes, slerp


@pytest.fixture(scope="module")
def episodes():
    """Expert rollouts (physics only) on a few seeds: seed -> (rewards, infos)."""
    env = RoboIMIEnv(render_images=False)
    out = {}
    for seed in (0, 1, 2):
        env.reset(seed=seed)
        expert = TransferExpert.for_env(env)
        rewards, infos = [], []
        for t in range(env.config.max_steps):
            _, reward, terminated, truncated, info = env.step(expert(t))
            rewards.append(reward)
            infos.append(info)
            if terminated or truncated:
                break
        out[seed] = (np.array(rewards), infos)
    return out


def test_expert_succeeds_on_several_seeds(episodes):
    for seed, (rewards, infos) in episodes.items():
        assert infos[-1]["is_success"], f"seed {seed}: expert failed, stages {sorted(set(rewards))}"
        assert rewards[-1] == 4 and infos[-1]["stage"] == 4
        assert not any(info["is_success"] for info in infos[:-1])  # the episode ends on success
        assert len(rewards) < RoboIMIEnv(render_images=False).config.max_steps


def test_reward_stages_fire_in_order(episodes):
    for seed, (rewards, _) in episodes.items():
        first = [int(np.argmax(rewards >= stage)) for stage in (1, 2, 3, 4)]
        assert all(rewards[first[i]] == i + 1 for i in range(4)), f"seed {seed}: a stage was skipped"
        assert first == sorted(first) and len(set(first)) == 4, f"seed {seed}: first steps {first}"
        assert rewards[0] == 0  # nothing touches the block at the start


rotations = st.lists(st.floats(-np.pi, np.pi), min_size=3, max_size=3)


@settings(max_examples=50, deadline=None)
@given(angles=rotations)
def test_quat_from_axes_matches_mujoco(angles):
    quat = np.zeros(4)
    mujoco.mju_euler2Quat(quat, np.asarray(angles), "xyz")
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    m = mat.reshape(3, 3)
    ours = quat_from_axes(m[:, 0], m[:, 1], m[:, 2])
    assert abs(abs(float(np.dot(ours, quat))) - 1.0) < 1e-9  # same rotation (q and -q are equal)


@settings(max_examples=50, deadline=None)
@given(a=rotations, b=rotations, f=st.floats(0.0, 1.0))
def test_slerp_is_unit_and_hits_its_ends(a, b, f):
    qa, qb = np.zeros(4), np.zeros(4)
    mujoco.mju_euler2Quat(qa, np.asarray(a), "xyz")
    mujoco.mju_euler2Quat(qb, np.asarray(b), "xyz")
    assert abs(np.linalg.norm(slerp(qa, qb, f)) - 1.0) < 1e-9
    assert np.allclose(slerp(qa, qb, 0.0), qa, atol=1e-9)
    assert abs(abs(float(np.dot(slerp(qa, qb, 1.0), qb))) - 1.0) < 1e-9
