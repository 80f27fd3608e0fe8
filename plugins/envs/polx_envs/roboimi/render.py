"""Trajectory images: the executed EE paths drawn as red capsules in the front camera's view.

``episode.actions`` are the absolute EE targets actually sent to the env, step by step; both
arms' target positions (clipped to the workspace, as the env applies them) are drawn, each as a chain of capsules added to the scene as user geoms
after ``mjv_updateScene``, so the path is part of the 3D scene (occluded by what stands in front).
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
from PIL import Image

from polx_envs.roboimi.config import ACTION_DIM, ARMS
from polx_envs.roboimi.env import WORKSPACE_HIGH, WORKSPACE_LOW

TRAJECTORY_CAMERA = "front"  # pinned by name: the camera list's order must not matter
MARKER_RGBA = np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32)
MARKER_PIXELS = 1.25  # capsule radius in pixels at the path's distance from the camera
MIN_MARKER_RADIUS = 0.004  # metres: thin in big images, still a tube


def arm_paths(actions: np.ndarray) -> dict[str, np.ndarray]:
    """``{arm: (T, 3)}`` target EE positions from (T, 16) actions, clipped to the workspace as the env does."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM:
        raise ValueError(f"episode.actions: expected shape (T, {ACTION_DIM}); got {actions.shape}")
    return {arm: np.clip(actions[:, 8 * k : 8 * k + 3], WORKSPACE_LOW, WORKSPACE_HIGH) for k, arm in enumerate(ARMS)}


def add_path(scene: mujoco.MjvScene, points: np.ndarray, radius: float, rgba=MARKER_RGBA) -> int:
    """Append capsules joining consecutive ``points`` (N, 3) to ``scene``; returns how many.

    When the scene has no room for every segment, the path is subsampled evenly (ends kept).
    """
    room = scene.maxgeom - scene.ngeom
    if len(points) < 2 or room < 1:
        return 0
    if len(points) - 1 > room:
        points = points[np.linspace(0, len(points) - 1, room + 1).round().astype(int)]
    added = 0
    for a, b in zip(points[:-1], points[1:]):
        if np.allclose(a, b):  # a held pose: nothing to join
            continue
        geom = scene.geoms[scene.ngeom]
        mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_CAPSULE, np.zeros(3), np.zeros(3), np.zeros(9), rgba)
        mujoco.mjv_connector(geom, mujoco.mjtGeom.mjGEOM_CAPSULE, radius, a, b)
        geom.emission, geom.specular = 0.5, 0.0  # reads as red whatever the lighting
        scene.ngeom += 1
        added += 1
    return added


def project_points(model: mujoco.MjModel, data: mujoco.MjData, camera: str, points, size: int) -> np.ndarray:
    """(N, 2) pixel coordinates (column, row) of world ``points`` (N, 3) in a square ``size`` image."""
    cam = model.camera(camera).id
    rot = data.cam_xmat[cam].reshape(3, 3)  # columns: the camera's axes in world coordinates
    local = (np.asarray(points, dtype=np.float64) - data.cam_xpos[cam]) @ rot
    depth = -local[:, 2]  # MuJoCo cameras look along their -z axis
    focal = (size / 2) / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
    col = size / 2 + focal * local[:, 0] / depth
    row = size / 2 - focal * local[:, 1] / depth
    return np.stack([col, row], axis=1)


def marker_radius(model: mujoco.MjModel, data: mujoco.MjData, camera: str, points: np.ndarray, size: int) -> float:
    """Capsule radius (m) that spans ``MARKER_PIXELS`` pixels where ``points`` are, so paths stay visible."""
    cam = model.camera(camera).id
    distance = np.linalg.norm(points.mean(axis=0) - data.cam_xpos[cam])
    metres_per_pixel = 2 * distance * np.tan(np.deg2rad(model.cam_fovy[cam]) / 2) / size
    return max(MIN_MARKER_RADIUS, MARKER_PIXELS * metres_per_pixel)


def render_trajectory(env, episode, path) -> str:
    """Write the front view with ``episode``'s executed EE paths to the PNG ``path``; return it.

    ``env`` is the env the episode ran in (wrappers allowed), left at its final state. The
    image is ``config.trajectory_image_size`` px square. An existing file is never overwritten.
    """
    env = getattr(env, "unwrapped", env)
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists; trajectory images are never overwritten")
    size = env.config.trajectory_image_size
    paths = arm_paths(episode.actions)
    radius = marker_radius(env.model, env.data, TRAJECTORY_CAMERA, np.concatenate(list(paths.values())), size)
    renderer = env.renderer(size)
    renderer.update(env.data, TRAJECTORY_CAMERA)
    for points in paths.values():
        add_path(renderer.scene, points, radius)
    Image.fromarray(renderer.render()).save(path, format="PNG")
    return str(path)
