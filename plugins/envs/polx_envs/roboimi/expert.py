"""The scripted waypoint expert: approach, grasp, lift, meet, hand over, release.

Open loop, like ACT's scripted policies: from the block's start pose and the arms' home EE
poses it plans timed waypoints per arm, then interpolates them (positions and gripper linearly,
orientations by slerp) at every control step. The right arm grips the block's near (+x) half
from above, aligned with the block's yaw, lifts it to the meeting point while turning it to lie
along x; the left arm comes in horizontally from -x, grips the far half, and the right releases.
"""

from __future__ import annotations

import attrs
import numpy as np

from polx_envs.roboimi.scene import BLOCK_HALF

GRIP_OFFSET = 0.025  # each arm grips this far from the block centre along its long axis
GRASP_HEIGHT = BLOCK_HALF[2] + 0.005  # grasp point above the table when gripping from above
MEET = np.array([0.03, 0.5, 0.2])  # where the block's centre is handed over
OPEN, CLOSED = 1.0, 0.0


def quat_from_axes(x, y, z) -> np.ndarray:
    """Quaternion (w, x, y, z) of the rotation whose columns are the given orthonormal axes."""
    m = np.stack([x, y, z], axis=1)
    w = np.sqrt(max(0.0, 1.0 + np.trace(m))) / 2
    if w > 1e-3:
        q = np.array([w, (m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w), (m[1, 0] - m[0, 1]) / (4 * w)])
    else:  # a half turn: take the axis from the largest diagonal entry
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        v = np.zeros(3)
        v[i] = np.sqrt(max(0.0, 1.0 + m[i, i] - m[j, j] - m[k, k])) / 2
        v[j] = (m[j, i] + m[i, j]) / (4 * v[i])
        v[k] = (m[k, i] + m[i, k]) / (4 * v[i])
        q = np.array([(m[k, j] - m[j, k]) / (4 * v[i]), *v])
    return q / np.linalg.norm(q)


def slerp(q0: np.ndarray, q1: np.ndarray, f: float) -> np.ndarray:
    if np.dot(q0, q1) < 0:  # the short way round
        q1 = -q1
    dot = min(1.0, float(np.dot(q0, q1)))
    if dot > 0.9995:
        q = q0 + f * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - f) * theta) * q0 + np.sin(f * theta) * q1) / np.sin(theta)


def top_down_quat(yaw: float) -> np.ndarray:
    """Gripper pointing down, fingers closing across a block lying at ``yaw``."""
    y = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return quat_from_axes(np.cross(y, z), y, z)


SIDE_QUAT = quat_from_axes(np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))  # points +x


@attrs.define(frozen=True)
class Waypoint:
    t: int  # control step
    pos: np.ndarray  # (3,)
    quat: np.ndarray  # (4,) w, x, y, z
    grip: float  # opening in [0, 1]


def _interpolate(waypoints: list[Waypoint], t: int) -> np.ndarray:
    """(8,) pos, quat, grip at step ``t``; held at the last waypoint afterwards."""
    if t >= waypoints[-1].t:
        w = waypoints[-1]
        return np.concatenate([w.pos, w.quat, [w.grip]])
    for a, b in zip(waypoints, waypoints[1:]):
        if a.t <= t < b.t:
            f = (t - a.t) / (b.t - a.t)
            pos = a.pos + f * (b.pos - a.pos)
            return np.concatenate([pos, slerp(a.quat, b.quat, f), [a.grip + f * (b.grip - a.grip)]])
    w = waypoints[0]
    return np.concatenate([w.pos, w.quat, [w.grip]])


class TransferExpert:
    """``expert(t)`` is the (16,) action at control step ``t`` (left arm, then right arm)."""

    def __init__(self, block_start: np.ndarray, home_ee: np.ndarray):
        """``block_start``: (x, y, yaw) of the block; ``home_ee``: (14,) EE poses at reset."""
        x, y, yaw = block_start
        axis = np.array([np.cos(yaw), np.sin(yaw), 0.0])  # block's long axis, pointing to +x
        grasp = np.array([x, y, GRASP_HEIGHT]) + GRIP_OFFSET * axis
        up = np.array([0.0, 0.0, 1.0])
        back = np.array([1.0, 0.0, 0.0])  # the left gripper's approach direction
        # held from above, the block hangs a little lower than the grasp point
        right_meet = MEET + GRIP_OFFSET * back + (GRASP_HEIGHT - BLOCK_HALF[2]) * up
        left_meet = MEET - GRIP_OFFSET * back
        grip_q, meet_q = top_down_quat(yaw), top_down_quat(0.0)
        lh, rh = (home_ee[:3], home_ee[3:7]), (home_ee[7:10], home_ee[10:14])
        W = Waypoint
        self.right = [
            W(0, rh[0], rh[1], OPEN),
            W(45, grasp + 0.08 * up, grip_q, OPEN),  # approach above the block
            W(70, grasp, grip_q, OPEN),  # descend
            W(85, grasp, grip_q, CLOSED),  # grasp
            W(95, grasp, grip_q, CLOSED),
            W(140, right_meet, meet_q, CLOSED),  # lift and carry to the meeting point
            W(195, right_meet, meet_q, CLOSED),  # hold while the left arm grips
            W(205, right_meet, meet_q, OPEN),  # release
            W(230, right_meet + 0.08 * up, meet_q, OPEN),  # retreat upwards
        ]
        self.left = [
            W(0, lh[0], lh[1], OPEN),
            W(120, left_meet - 0.1 * back, SIDE_QUAT, OPEN),  # come in beside the meeting point
            W(165, left_meet, SIDE_QUAT, OPEN),
            W(180, left_meet, SIDE_QUAT, CLOSED),  # grip the far half
            W(230, left_meet, SIDE_QUAT, CLOSED),
        ]
        self.duration = max(self.right[-1].t, self.left[-1].t)

    @classmethod
    def for_env(cls, env) -> "TransferExpert":
        """The expert for the episode ``env`` was just reset to."""
        env = getattr(env, "unwrapped", env)
        return cls(env.block_start, env.ee_pose())

    def __call__(self, t: int) -> np.ndarray:
        return np.concatenate([_interpolate(self.left, t), _interpolate(self.right, t)]).astype(np.float32)
