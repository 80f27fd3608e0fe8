"""PushTEnv: observations, determinism, reward, start states, fidelity to the published dataset."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polx_envs.pusht import geometry, raster, render
from polx_envs.pusht.env import PushTEnv, initial_state

DATASET = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "pusht" / "pusht_cchi_v7_replay.zarr"
needs_dataset = pytest.mark.skipif(not DATASET.exists(), reason=f"real PushT dataset not found at {DATASET}")


@pytest.fixture(scope="module")
def real():
    from polx.data.replay_buffer import ReplayBuffer

    rb = ReplayBuffer.open(DATASET)  # frames of a few episodes only: all of data/img is 2.8 GB as float32
    frames = {ep: rb.get_episode(ep, ["img", "state", "n_contacts"]) for ep in (0, 101, 205)}
    # first frames of episodes whose block starts squeezed into the bottom wall, past the canvas edge
    squeezed = [rb.get_episode(ep, ["img", "state"]) for ep in (65, 89, 149, 192, 200)]
    frames["squeezed"] = {k: np.stack([e[k][0] for e in squeezed]) for k in ("img", "state")}
    return rb.load(["state", "action", "keypoint"]) | {"episode_ends": rb.episode_ends, "frames": frames}


# ---------------------------------------------------------------------------------------------
# observations


@pytest.mark.parametrize(
    "obs_type, shapes",
    [("image", {"image": (3, 96, 96), "agent_pos": (2,)}), ("keypoints", {"keypoints": (20,)}), ("state", {"state": (5,)})],
)
def test_observation_keys_shapes_and_ranges(obs_type, shapes):
    env = PushTEnv(obs_type=obs_type)
    obs, info = env.reset(seed=100000)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(np.array([300.0, 200.0]))
    assert {k: v.shape for k, v in obs.items()} == shapes
    assert all(v.dtype == np.float32 for v in obs.values())
    assert env.observation_space.contains(obs)
    if obs_type == "image":
        assert 0.0 <= obs["image"].min() and obs["image"].max() <= 1.0
        np.testing.assert_allclose(obs["agent_pos"], info["pos_agent"], rtol=1e-6)
    assert set(info) >= {"coverage", "is_success", "pos_agent", "block_pose", "goal_pose", "n_contacts"}
    assert 0.0 <= reward <= 1.0 and not truncated
    frame = env.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8


def test_render_size_changes_frames():
    env = PushTEnv(obs_type="image", render_size=64)
    obs, _ = env.reset(seed=3)
    assert obs["image"].shape == (3, 64, 64) and env.render().shape == (64, 64, 3)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="obs_type"):
        PushTEnv(obs_type="pixels")
    with pytest.raises(ValueError, match="render_size"):
        PushTEnv(render_size=0)


def test_same_seed_same_episode():
    actions = np.random.default_rng(0).uniform(100, 400, size=(15, 2))

    def rollout():
        env = PushTEnv(obs_type="keypoints")
        obs, _ = env.reset(seed=123)
        out = [obs["keypoints"]]
        for a in actions:
            obs, *_ = env.step(a)
            out.append(obs["keypoints"])
        return np.stack(out)

    first, second = rollout(), rollout()
    np.testing.assert_array_equal(first, second)
    assert np.abs(first[-1] - first[0]).max() > 1.0  # the pusher (at least) moved


def test_unseeded_resets_differ_but_follow_the_first_seed():
    env = PushTEnv(obs_type="state")
    env.reset(seed=7)
    a = env.reset()[0]["state"]
    b = env.reset()[0]["state"]
    assert not np.array_equal(a, b)
    env2 = PushTEnv(obs_type="state")
    env2.reset(seed=7)
    np.testing.assert_array_equal(env2.reset()[0]["state"], a)


# ---------------------------------------------------------------------------------------------
# reward and coverage


def test_goal_pose_gives_full_coverage_and_success():
    env = PushTEnv(obs_type="state")
    gx, gy, ga = geometry.GOAL_POSE
    _, info = env.reset(options={"state": [100.0, 100.0, gx, gy, ga]})
    assert info["coverage"] == pytest.approx(1.0, abs=1e-9) and info["is_success"]
    _, reward, terminated, _, info = env.step(np.array([100.0, 100.0]))  # far from the block: it stays
    assert reward == pytest.approx(1.0) and terminated and info["is_success"]


@pytest.mark.parametrize("shift", [0.0, 5.0, 10.0, 29.0, 60.0])
def test_coverage_of_the_goal_slid_along_its_bar(shift):
    # sliding the T by d along its bar leaves (120 - d) * 30 of the bar and (30 - d) * 90 of the stem
    direction = geometry.rotation(geometry.GOAL_POSE[2]) @ np.array([1.0, 0.0])
    pose = geometry.GOAL_POSE + np.array([*(shift * direction), 0.0])
    expected = ((120 - shift) * 30 + max(0.0, 30 - shift) * 90) / 6300
    assert geometry.coverage(pose) == pytest.approx(expected, abs=1e-9)


def test_reward_is_clipped_coverage_over_threshold():
    env = PushTEnv(obs_type="state")
    direction = geometry.rotation(geometry.GOAL_POSE[2]) @ np.array([1.0, 0.0])
    x, y = geometry.GOAL_POSE[:2] + 10 * direction
    env.reset(options={"state": [60.0, 60.0, x, y, geometry.GOAL_POSE[2]]})
    _, reward, terminated, _, info = env.step(np.array([60.0, 60.0]))
    assert info["coverage"] == pytest.approx(5100 / 6300, abs=1e-9)
    assert reward == pytest.approx(info["coverage"] / 0.95) and not terminated


@settings(max_examples=40, deadline=None)
@given(
    st.floats(0, 512), st.floats(0, 512), st.floats(-7, 7), st.floats(0, 512), st.floats(0, 512), st.floats(-7, 7)
)
def test_coverage_is_a_symmetric_fraction(x1, y1, a1, x2, y2, a2):
    p, q = np.array([x1, y1, a1]), np.array([x2, y2, a2])
    c = geometry.coverage(p, q)
    assert -1e-9 <= c <= 1 + 1e-9
    assert c == pytest.approx(geometry.coverage(q, p), abs=1e-9)  # both Ts have the same area
    assert geometry.coverage(p, p) == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.floats(-20, 20), st.floats(-20, 20), st.floats(-0.5, 0.5), st.booleans())
def test_planning_coverage_agrees_with_shapely(dx, dy, da, far):
    pose = geometry.GOAL_POSE + np.array([dx, dy, da]) * (6.0 if far else 1.0)
    assert geometry.coverage_fast(pose) == pytest.approx(geometry.coverage(pose), abs=1e-9)


# ---------------------------------------------------------------------------------------------
# start states: the benchmark's test seeds

# the original env's first reset for these seeds (pymunk, legacy=True): agent x, y, block x, y, angle
ORIGINAL_LEGACY_RESETS = {
    100000: [235.0, 124.0, 299.612885309, 145.2015807311, -0.9049274284],
    100001: [365.0, 182.0, 234.9342544278, 304.5125396463, -1.0981131397],
    100002: [159.0, 417.0, 302.5497121078, 339.6378331561, -6.1146167376],
    100049: [143.0, 388.0, 70.2930371477, 339.1865692133, -13.4129879639],
}
ORIGINAL_DRAWS = {100000: [235, 124, 335, 128], 100001: [365, 182, 275, 280], 100002: [159, 417, 295, 339], 100049: [143, 388, 104, 324]}


@pytest.mark.parametrize("seed", sorted(ORIGINAL_LEGACY_RESETS))
def test_first_reset_matches_the_original(seed):
    env = PushTEnv(obs_type="state")
    _, info = env.reset(seed=seed)
    got = np.concatenate([info["pos_agent"], info["block_pose"]])
    np.testing.assert_allclose(got, ORIGINAL_LEGACY_RESETS[seed], atol=1e-8)

    np.testing.assert_array_equal(initial_state(seed)[:4], ORIGINAL_DRAWS[seed])
    exact = PushTEnv(obs_type="state", legacy=False)
    _, info = exact.reset(seed=seed)
    np.testing.assert_allclose(info["block_pose"][:2], ORIGINAL_DRAWS[seed][2:], atol=1e-8)


def test_legacy_displacement_is_the_rotation_about_the_centre_of_gravity():
    drawn = initial_state(100000)
    np.testing.assert_allclose(geometry.legacy_block_position(drawn[2:4], drawn[4]), [299.61, 145.20], atol=5e-3)


# ---------------------------------------------------------------------------------------------
# fidelity to the published dataset


@needs_dataset
def test_frames_match_the_dataset_pixel_for_pixel(real):
    env = PushTEnv(obs_type="image")
    errors, contact_frames = [], 0
    for name, frames in real["frames"].items():
        for i in range(0, len(frames["state"]), 1 if name == "squeezed" else 3):
            obs = env.set_state(frames["state"][i])
            errors.append(np.abs(np.moveaxis(obs["image"], 0, -1) * 255 - frames["img"][i]).mean())
            contact_frames += env.sim.contact_markers() != []
    assert contact_frames > 5  # frames with the red contact marks are part of the sample
    assert max(errors) == 0.0, f"mean abs error {np.mean(errors):.5f} / 255, worst frame {max(errors):.5f}"


@needs_dataset
def test_recorded_actions_replay_to_the_recorded_states(real):
    ends = real["episode_ends"]
    for ep in (0, 57, 150):
        start, end = (ends[ep - 1] if ep else 0), ends[ep]
        env = PushTEnv(obs_type="state")
        env.set_state(real["state"][start])
        for t in range(start, end - 1):
            env.step(real["action"][t])
        final = env.sim.state()
        assert np.abs(final[2:4] - real["state"][end - 1, 2:4]).max() < 0.01


@needs_dataset
def test_keypoint_observations_match_the_dataset(real):
    idx = np.arange(0, len(real["state"]), 97)
    env = PushTEnv(obs_type="keypoints")
    err = [np.abs(env.set_state(real["state"][i])["keypoints"][:18] - real["keypoint"][i].ravel()).max() for i in idx]
    assert np.median(err) < 1e-3


def test_keypoints_are_the_originals_farthest_point_samples():
    # the original renders the T at (256, 300), angle 0, alone, and samples its non-white pixels
    canvas = raster.Canvas(512)
    for box in geometry.TEE_BOXES:
        pts = np.array([render._pixel(p) for p in geometry.to_world(np.array([256.0, 300.0, 0.0]), box)])
        raster.fill_polygons(canvas, pts[None], render.lighter(render.BLOCK_GRAY))
        raster.fat_segments(canvas, pts, np.roll(pts, -1, axis=0), 2, render.BLOCK_GRAY)
    ys, xs = np.nonzero((canvas.img != 255).any(-1))
    local = np.stack([xs, ys], -1) - np.array([256.0, 300.0])
    rng = np.random.default_rng(0)
    chosen = [local[rng.choice(len(local))]]
    for _ in range(8):
        dist = np.linalg.norm(local[:, None] - np.array(chosen)[None], axis=-1).min(1)
        chosen.append(local[dist.argmax()])
    np.testing.assert_allclose(np.array(chosen) + rng.uniform(0, 1, size=(9, 2)), geometry.BLOCK_KEYPOINTS, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# pickling, processes, registration, trajectory pictures


def _step_copy(env_bytes: bytes, action) -> np.ndarray:
    env = pickle.loads(env_bytes)
    obs, *_ = env.step(np.asarray(action))
    return obs["keypoints"]


def test_env_pickles_and_runs_in_a_spawned_process():
    env = PushTEnv(obs_type="keypoints")
    env.reset(seed=5)
    data = pickle.dumps(env)
    here = _step_copy(data, [250.0, 250.0])
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.apply(_step_copy, (data, [250.0, 250.0]))
    np.testing.assert_allclose(there, here, atol=1e-4)


def test_gymnasium_id_is_registered():
    env = gymnasium.make("polx/PushT-v0", obs_type="state")
    obs, _ = env.reset(seed=100000)
    np.testing.assert_allclose(obs["state"][:2], [235.0, 124.0])
    assert "polx/RoboIMI-Transfer-v0" in gymnasium.registry


def test_render_trajectory_draws_the_path_in_red(tmp_path):
    from polx.components import Episode
    from polx_envs import plugin

    env = PushTEnv(obs_type="state")
    env.reset(seed=100002)
    actions = np.array([[200.0 + 10 * t, 300.0] for t in range(12)])
    for a in actions:
        env.step(a)
    episode = Episode(seed=100002, actions=actions, rewards=np.zeros(len(actions)))
    out = plugin.render_trajectory(env, episode, tmp_path / "traj.png")
    from PIL import Image

    img = np.asarray(Image.open(out).convert("RGB"))
    assert out == tmp_path / "traj.png" and img.shape == (512, 512, 3)
    red = (img[..., 0] == 255) & (img[..., 1] == 0) & (img[..., 2] == 0)
    assert red.sum() > 100
    ys, xs = np.nonzero(red)
    assert xs.min() < 240 and xs.max() > 290  # the red path spans the pusher's motion
