"""Trajectory PNGs: red capsules exactly along the executed EE paths, in the front camera's view."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from polx.components import Episode
from polx_envs.plugin import render_trajectory as render_hook
from polx_envs.roboimi.adapter import RoboIMIAdapter
from polx_envs.roboimi.config import RoboIMIConfig
from polx_envs.roboimi.env import RoboIMIEnv
from polx_envs.roboimi.expert import TransferExpert
from polx_envs.roboimi.render import arm_paths, project_points, render_trajectory

SIZE = 128  # trajectory image side


def expert_episode(env, seed: int) -> Episode:
    env.reset(seed=seed)
    expert = TransferExpert()
    actions, rewards = [], []
    for _ in range(env.unwrapped.config.max_steps):
        actions.append(expert.act(env))
        _, reward, terminated, truncated, _ = env.step(actions[-1])
        rewards.append(reward)
        if terminated or truncated:
            break
    return Episode(seed=seed, actions=np.array(actions), rewards=np.array(rewards))


def red_mask(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > 150) & (g < 90) & (b < 90)


def distance_to_polyline(pixels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P,) distance of each pixel (P, 2) to the polyline through ``points`` (N, 2)."""
    a, b = points[:-1][None], points[1:][None]  # (1, N-1, 2)
    ab = b - a
    t = np.clip(((pixels[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    return np.linalg.norm(pixels[:, None] - (a + t[..., None] * ab), axis=-1).min(axis=1)


@pytest.fixture(scope="module")
def rollout():
    env = RoboIMIEnv(RoboIMIConfig(image_size=16, trajectory_image_size=SIZE), render_images=False)
    return env, expert_episode(env, seed=4)


def test_trajectory_png_is_red_along_the_projected_paths(rollout, tmp_path):
    env, episode = rollout
    path = render_trajectory(env, episode, tmp_path / "episode_0.png")
    assert path == str(tmp_path / "episode_0.png")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (SIZE, SIZE, 3)
    blank = render_trajectory(env, Episode(seed=4, actions=episode.actions[:1], rewards=episode.rewards[:1]), tmp_path / "b.png")
    assert not red_mask(np.asarray(Image.open(blank).convert("RGB"))).any()  # nothing red without markers

    red = red_mask(image)
    red_pixels = np.argwhere(red)[:, ::-1].astype(float) + 0.5  # (column, row) pixel centres
    assert len(red_pixels) > 100
    projected = {arm: project_points(env.model, env.data, "front", points, SIZE) for arm, points in arm_paths(episode.actions).items()}
    # every red pixel lies on one of the projected paths ...
    near = np.min([distance_to_polyline(red_pixels, p) for p in projected.values()], axis=0)
    assert np.quantile(near, 0.99) < 2.5, np.quantile(near, 0.99)
    # ... and most of each path is drawn (some hides inside the grippers and behind the arms,
    # and the left arm ends holding the block, hidden behind it)
    for arm, pixels in projected.items():
        pixels = np.unique(pixels.round(1), axis=0)  # held poses repeat one point many times
        dilated = np.zeros_like(red)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                dilated |= np.roll(red, (dr, dc), axis=(0, 1))
        col, row = pixels.astype(int).T
        inside = (col >= 0) & (col < SIZE) & (row >= 0) & (row < SIZE)
        assert inside.all(), arm
        assert dilated[row, col].mean() > 0.6, f"{arm}: only {dilated[row, col].mean():.0%} of the path is red"


def test_front_camera_is_pinned_by_name_and_files_are_never_overwritten(rollout, tmp_path):
    env, episode = rollout
    reference = np.asarray(Image.open(render_trajectory(env, episode, tmp_path / "a.png")))
    reordered = RoboIMIEnv(
        RoboIMIConfig(image_size=16, trajectory_image_size=SIZE, cameras=("top", "r_vis")), render_images=False
    )
    reordered.reset(seed=4)
    for action in episode.actions:
        reordered.step(action)
    assert np.array_equal(np.asarray(Image.open(render_trajectory(reordered, episode, tmp_path / "b.png"))), reference)
    before = (tmp_path / "a.png").read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        render_trajectory(env, episode, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == before


def test_plugin_hook_draws_for_the_adapters_wrapped_env(tmp_path):
    adapter = RoboIMIAdapter(RoboIMIConfig(image_size=16, trajectory_image_size=64, max_steps=400))
    env = adapter.make_env()
    episode = expert_episode(env, seed=0)
    out = tmp_path / "media" / "rollout_100"
    out.mkdir(parents=True)
    path = render_hook(env=env, episode=episode, path=str(out / "episode_0.png"))
    assert path == str(out / "episode_0.png")
    assert red_mask(np.asarray(Image.open(path).convert("RGB"))).sum() > 20


def test_projection_puts_the_block_on_blue_pixels():
    env = RoboIMIEnv(RoboIMIConfig(image_size=96, cameras=("front",)))
    for seed in (0, 1, 2):
        obs, _ = env.reset(seed=seed)
        col, row = project_points(env.model, env.data, "front", env.block_pose()[None, :3], 96)[0].astype(int)
        r, g, b = obs["images"]["front"][row, col].astype(int)
        assert b > r + 60 and b > g + 30, (seed, (r, g, b))


def test_drawn_paths_are_the_targets_the_env_applied():
    env = RoboIMIEnv(RoboIMIConfig(image_size=16), render_images=False)
    env.reset(seed=0)
    ee = env.ee_pose()
    action = np.concatenate([ee[:7], [1.0], ee[7:], [1.0]])
    action[0:3] = [-3.0, 0.5, 0.2]  # far outside the workspace
    action[8:11] = [0.1, 2.0, -1.0]
    env.step(action)
    paths = arm_paths(action[None])
    for arm in ("left", "right"):
        mocap = env.model.body(f"{arm}_mocap").mocapid[0]
        assert np.allclose(paths[arm][0], env.data.mocap_pos[mocap])
