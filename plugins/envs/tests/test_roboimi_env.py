"""RoboIMIEnv: spaces, determinism, cameras, EE tracking, pickling, validation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polx_envs.roboimi.config import ACTION_DIM, QPOS_DIM, RoboIMIConfig
from polx_envs.roboimi.env import STAGE_NAMES, RoboIMIEnv

SIZE = 32


def hold_action(env: RoboIMIEnv, grip: float = 1.0) -> np.ndarray:
    """The action that keeps both EEs where they are."""
    ee = env.ee_pose()
    return np.concatenate([ee[:7], [grip], ee[7:], [grip]]).astype(np.float32)


@pytest.fixture(scope="module")
def env():
    env = RoboIMIEnv(RoboIMIConfig(image_size=SIZE))
    yield env
    env.close()


def test_reset_and_step_shapes_and_dtypes(env):
    obs, info = env.reset(seed=0)
    assert set(obs) == {"images", "qpos"} and set(obs["images"]) == {"r_vis", "top", "front"}
    for image in obs["images"].values():
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert obs["qpos"].shape == (QPOS_DIM,) and obs["qpos"].dtype == np.float32
    assert info == {"is_success": False, "stage": 0, "stage_names": STAGE_NAMES}
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(hold_action(env))
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float) and reward == 0.0
    assert (terminated, truncated) == (False, False)
    assert info == {"is_success": False, "stage": 0, "stage_names": STAGE_NAMES}
    assert env.action_space.shape == (ACTION_DIM,)


def test_same_seed_same_episode_other_seed_other_block():
    a, b = RoboIMIEnv(image_size=16), RoboIMIEnv(image_size=16)
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    action = hold_action(a, grip=0.3)
    action[8:11] += [-0.05, 0.02, -0.05]  # move the right arm
    for _ in range(5):
        obs_a, *_ = a.step(action)
        obs_b, *_ = b.step(action)
    assert np.array_equal(obs_a["qpos"], obs_b["qpos"])
    for cam in obs_a["images"]:
        assert np.array_equal(obs_a["images"][cam], obs_b["images"][cam])
    assert np.array_equal(a.block_pose(), b.block_pose())
    b.reset(seed=8)
    assert not np.allclose(a.block_start, b.block_start)


def test_block_start_pose_stays_in_configured_ranges():
    config = RoboIMIConfig(image_size=16)
    env = RoboIMIEnv(config, render_images=False)
    starts = []
    for seed in range(20):
        env.reset(seed=seed)
        starts.append(env.block_start)
    starts = np.array(starts)
    for column, (lo, hi) in enumerate((config.block_x, config.block_y, config.block_yaw)):
        assert np.all((starts[:, column] >= lo) & (starts[:, column] <= hi))
        assert np.ptp(starts[:, column]) > 0.3 * (hi - lo)  # really randomised
    for options in ({}, {"block": (-0.1, 0.45, 0.3)}):  # sampled, or given by the caller
        env.reset(seed=0, options=options)
        x, y, yaw = env.block_start
        pose = env.block_pose()
        assert np.allclose(pose[:2], [x, y], atol=1e-3) and abs(2 * np.arctan2(pose[6], pose[3]) - yaw) < 1e-2
    assert np.allclose(env.block_start, (-0.1, 0.45, 0.3))


def test_cameras_render_non_blank_distinct_images():
    env = RoboIMIEnv(image_size=48)
    obs, _ = env.reset(seed=3)
    images = {cam: img.astype(np.float32) for cam, img in obs["images"].items()}
    for cam, img in images.items():
        assert img.std() > 10, f"{cam} looks blank"
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20, f"{cam} has too few colours"
    names = list(images)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert np.abs(images[first] - images[second]).mean() > 10, f"{first} and {second} look alike"
    # the wrist camera moves with the right arm; the fixed cameras do not move by themselves
    action = hold_action(env)
    action[8:11] += [-0.1, 0.0, -0.1]
    for _ in range(30):
        obs, *_ = env.step(action)
    assert np.abs(obs["images"]["r_vis"].astype(np.float32) - images["r_vis"]).mean() > 5


@pytest.fixture(scope="module")
def physics_env():
    return RoboIMIEnv(RoboIMIConfig(image_size=SIZE), render_images=False)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offset=st.lists(st.floats(-0.06, 0.06), min_size=6, max_size=6),
    turn=st.lists(st.floats(-0.3, 0.3), min_size=2, max_size=2),
)
def test_ee_tracks_a_reachable_target_after_settling(physics_env, offset, turn):
    env = physics_env
    env.reset(seed=0)
    home = env.ee_pose()
    target = hold_action(env)
    for k, base in ((0, 0), (1, 8)):
        target[base : base + 3] += np.array([0.0, 0.0, -0.08]) + offset[3 * k : 3 * k + 3]
        half = turn[k] / 2  # rotate the target about world z
        w, x, y, z = target[base + 3 : base + 7]
        c, s = np.cos(half), np.sin(half)
        target[base + 3 : base + 7] = [c * w - s * z, c * x - s * y, c * y + s * x, c * z + s * w]
    for _ in range(75):
        env.step(target)
    ee = env.ee_pose()
    for k, base in ((0, 0), (1, 8)):
        pos_error = np.linalg.norm(ee[7 * k : 7 * k + 3] - target[base : base + 3])
        angle_error = 2 * np.arccos(min(1.0, abs(float(np.dot(ee[7 * k + 3 : 7 * k + 7], target[base + 3 : base + 7])))))
        assert pos_error < 2e-3 and angle_error < 0.02, (pos_error, angle_error)
    assert np.abs(ee[[2, 9]] - home[[2, 9]]).min() > 0.015  # both arms really moved


def test_truncates_after_max_steps_and_rejects_bad_actions():
    env = RoboIMIEnv(image_size=16, max_steps=3, render_images=False)
    env.reset(seed=0)
    flags = [env.step(hold_action(env))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    with pytest.raises(ValueError, match="action: expected 16 finite values"):
        env.step(np.zeros(14))
    bad = hold_action(env)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        env.step(bad)


def test_pickled_env_continues_identically():
    env = RoboIMIEnv(image_size=16)
    env.reset(seed=5)
    action = hold_action(env, grip=0.0)
    action[8:11] += [-0.04, 0.0, -0.04]
    for _ in range(4):
        env.step(action)
    clone = pickle.loads(pickle.dumps(env))
    a, b = env.step(action), clone.step(action)
    assert np.array_equal(a[0]["qpos"], b[0]["qpos"]) and a[1:] == b[1:]
    for cam in a[0]["images"]:
        assert np.array_equal(a[0]["images"][cam], b[0]["images"][cam])
    assert np.array_equal(env.np_random.random(3), clone.np_random.random(3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cameras": ("front", "side")}, "cameras: must be distinct names"),
        ({"cameras": ("top", "top")}, "cameras: must be distinct names"),
        ({"control_hz": 30}, "control_hz: 1 / \\(control_hz \\* physics_dt\\)"),
        ({"image_size": 0}, "image_size: must be > 0"),
        ({"block_x": (0.2, 0.1)}, "block_x: low must be <= high"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RoboIMIConfig(**kwargs)


def test_camera_subset_is_honoured():
    env = RoboIMIEnv(image_size=16, cameras=("front",))
    obs, _ = env.reset(seed=0)
    assert list(obs["images"]) == ["front"]
    assert env.render_mode is None and env.render() is None
    viewer = RoboIMIEnv(image_size=16, render_mode="rgb_array")
    viewer.reset(seed=0)
    assert np.array_equal(viewer.render(), obs["images"]["front"])


def test_registered_with_gymnasium():
    import gymnasium as gym

    import polx_envs  # noqa: F401  (registers the polx/ ids)

    env = gym.make("polx/RoboIMI-Transfer-v0", image_size=16, render_mode="rgb_array")
    assert isinstance(env.unwrapped, RoboIMIEnv) and env.unwrapped.config.image_size == 16
    obs, _ = env.reset(seed=0)
    assert obs["images"]["top"].shape == (16, 16, 3)
    assert env.render().shape == (16, 16, 3)
