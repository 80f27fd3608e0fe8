"""The scripted transfer expert, closed loop: approach, grasp, lift, meet, hand over, release.

State feedback, so it can label any state the env can be in (what DAgger asks of an expert):
at every call it reads the block's pose, each gripper's opening and which fingers touch the
block, picks each arm's phase from that alone, recomputes the phase's target from the current
block pose, and moves each end effector a bounded step towards it. No clock and no plan: the
same state always gets the same action, and a block knocked aside is simply approached again.

The right arm grips the block's near (+x) half from above, aligned with the block's yaw, and
carries it to the meeting point, turning it to lie along x; the left arm waits beside the
meeting point, comes in horizontally from -x once the block is there, grips the far half, and
the right arm lets go and backs off upwards.
"""

from __future__ import annotations

import numpy as np

from polx_envs.roboimi.scene import BLOCK_HALF, FINGER_TRAVEL

GRIP_OFFSET = 0.025  # each arm grips this far from the block centre along its long axis
GRASP_HEIGHT = BLOCK_HALF[2] + 0.005  # grasp point above the table when gripping from above
MEET = np.array([0.03, 0.5, 0.2])  # where the block's centre is handed over
OPEN, CLOSED = 1.0, 0.0
UP = np.array([0.0, 0.0, 1.0])
BACK = np.array([1.0, 0.0, 0.0])  # the left gripper's approach direction
APPROACH_HEIGHT = 0.08  # the right gripper lines up this far above its grasp point
STAGING = 0.1  # the left gripper waits this far short of its grasp point

# step limits per control step (50 Hz): travel, the last centimetres, carrying the block
FAST, SLOW, CARRY = 0.008, 0.004, 0.006
TURN = 0.06  # radians per step
# the tolerances that decide phases (metres, opening in [0, 1])
AT, LINED_UP = 0.006, 0.01
GRIPPED = 0.8  # an opening below this with the fingers on the block is a grip
EMPTY = 0.2  # below this the fingers hold nothing (the block keeps them ~0.4 apart)
OPENED = 0.9
LIFTED = BLOCK_HALF[2] + 0.01  # block centre height off the table


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


def quat_angle(q0: np.ndarray, q1: np.ndarray) -> float:
    """The angle (radians) of the rotation between two unit quaternions."""
    return 2.0 * float(np.arccos(min(1.0, abs(float(np.dot(q0, q1))))))


def top_down_quat(yaw: float) -> np.ndarray:
    """Gripper pointing down, fingers closing across a block lying at ``yaw``."""
    y = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return quat_from_axes(np.cross(y, z), y, z)


SIDE_QUAT = quat_from_axes(np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))  # points +x
MEET_QUAT = top_down_quat(0.0)
# held from above, the block hangs a little lower than the grasp point
RIGHT_MEET = MEET + GRIP_OFFSET * BACK + (GRASP_HEIGHT - BLOCK_HALF[2]) * UP


def block_axis(block_pose: np.ndarray) -> tuple[np.ndarray, float]:
    """The block's long axis in the table plane, pointing to +x, and its yaw in (-pi/2, pi/2]."""
    w, x, y, z = block_pose[3:7]
    axis = np.array([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 0.0])  # the body x axis, projected
    axis /= max(np.linalg.norm(axis), 1e-9)
    if axis[0] < 0:
        axis = -axis
    return axis, float(np.arctan2(axis[1], axis[0]))


def step_towards(pos: np.ndarray, quat: np.ndarray, goal: np.ndarray, goal_quat: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """A pose at most ``limit`` metres and ``TURN`` radians from (pos, quat) on the way to the goal."""
    delta = goal - pos
    dist = float(np.linalg.norm(delta))
    target = goal if dist <= limit else pos + delta * (limit / dist)
    angle = quat_angle(quat, goal_quat)
    target_quat = goal_quat if angle <= TURN else slerp(quat, goal_quat, TURN / angle)
    return target, target_quat


class TransferExpert:
    """``act(env)`` is the (16,) action (left arm, then right arm) for the state ``env`` is in now.

    Holds no state between calls; ``reset()`` exists for the expert contract and does nothing.
    ``record(env)`` gives the dataset row of the current state (what ``polx dagger`` stores).
    """

    def reset(self) -> None:
        """Nothing to forget: every action is computed from the current state."""

    def record(self, env) -> dict[str, np.ndarray]:
        """The state of ``env`` as one row of the RoboIMI dataset layout (see ``demos``), action excluded."""
        env = getattr(env, "unwrapped", env)
        return {**env.render_cameras(), "qpos": env.qpos(), "ee_pose": env.ee_pose().astype(np.float32)}

    def act(self, env) -> np.ndarray:
        state = ArmsState.read(getattr(env, "unwrapped", env))
        return np.concatenate([_left_arm(state), _right_arm(state)]).astype(np.float32)


class ArmsState:
    """What the expert decides from: block pose, EE poses, gripper openings and their speeds, contacts."""

    def __init__(self, block, ee, opening, opening_speed, touch):
        self.centre = block[:3]
        self.axis, self.yaw = block_axis(block)
        self.left, self.right = (ee[:3], ee[3:7]), (ee[7:10], ee[10:14])
        self.opening, self.opening_speed = opening, opening_speed  # (left, right)
        self.lifted = self.centre[2] > LIFTED and not touch["table"]
        # something as wide as the block between the fingers, which touch it: a grip
        self.grips = [touch[arm] and EMPTY < opening[k] < GRIPPED for k, arm in enumerate(("left", "right"))]
        self.at_meet = self.lifted and np.linalg.norm(self.centre - MEET) < 0.015 and abs(self.yaw) < 0.1

    @classmethod
    def read(cls, env) -> "ArmsState":
        speeds = []
        for arm in ("left", "right"):
            dofs = [env.model.jnt_dofadr[env.model.joint(f"{arm}_finger_{t}").id] for t in "ab"]
            speeds.append(float(env.data.qvel[dofs].mean()) / FINGER_TRAVEL)
        opening = env.qpos()[[6, 13]].astype(np.float64)
        return cls(env.block_pose(), env.ee_pose(), opening, np.array(speeds), env.touching())

    def closing(self, k: int) -> bool:
        """Gripper ``k`` (0 left, 1 right) is on its way shut and has not closed on nothing yet."""
        return self.opening_speed[k] < -0.05 and self.opening[k] > EMPTY


def _pose(pos: np.ndarray, quat: np.ndarray, grip: float) -> np.ndarray:
    return np.concatenate([pos, quat, [grip]])


def _right_arm(s: ArmsState) -> np.ndarray:
    pos, quat = s.right
    retreat = RIGHT_MEET + APPROACH_HEIGHT * UP
    if s.grips[0] and s.lifted:  # handed over: let go, then back off upwards
        if s.opening[1] < OPENED:
            return _pose(pos, quat, OPEN)
        return _pose(*step_towards(pos, quat, retreat, MEET_QUAT, SLOW), OPEN)
    if s.grips[1]:  # holding: carry to the meeting point
        return _pose(*step_towards(pos, quat, RIGHT_MEET, MEET_QUAT, CARRY), CLOSED)
    if s.lifted:  # in the air and nobody grips it: wait above the meeting point, open
        return _pose(*step_towards(pos, quat, retreat, MEET_QUAT, FAST), OPEN)
    grasp = np.array([*(s.centre[:2] + GRIP_OFFSET * s.axis[:2]), GRASP_HEIGHT])
    grasp_quat = top_down_quat(s.yaw)
    near = np.linalg.norm(pos - grasp)
    if (near < AT and quat_angle(quat, grasp_quat) < 0.1 and s.opening[1] > OPENED) or (s.closing(1) and near < 3 * AT):
        return _pose(pos, quat, CLOSED)  # fingers around the near half: shut them
    if s.opening[1] < OPENED:  # closed on nothing, or let go: open where it is
        return _pose(pos, quat, OPEN)
    above = grasp + APPROACH_HEIGHT * UP
    lined_up = np.linalg.norm((pos - grasp)[:2]) < LINED_UP and quat_angle(quat, grasp_quat) < 0.1
    if lined_up:  # straight down onto the grasp point
        return _pose(*step_towards(pos, quat, grasp, grasp_quat, SLOW), OPEN)
    if pos[2] < grasp[2] + 0.5 * APPROACH_HEIGHT:  # low and off the line: rise first
        return _pose(*step_towards(pos, quat, np.array([pos[0], pos[1], above[2]]), grasp_quat, SLOW), OPEN)
    return _pose(*step_towards(pos, quat, above, grasp_quat, FAST), OPEN)


def _left_arm(s: ArmsState) -> np.ndarray:
    pos, quat = s.left
    grasp = s.centre - GRIP_OFFSET * s.axis if s.lifted else MEET - GRIP_OFFSET * BACK
    if s.grips[0] and s.lifted:  # holding the block: stay, closed
        return _pose(pos, quat, CLOSED)
    if s.at_meet and s.grips[1]:
        near = np.linalg.norm(pos - grasp)
        if (near < AT and s.opening[0] > OPENED) or (s.closing(0) and near < 3 * AT):
            return _pose(pos, quat, CLOSED)  # fingers around the far half: shut them
        on_line = np.linalg.norm((pos - grasp)[1:]) < LINED_UP and pos[0] < grasp[0] + AT
        if on_line and s.opening[0] > OPENED:  # slide in along +x
            return _pose(*step_towards(pos, quat, grasp, SIDE_QUAT, SLOW), OPEN)
    return _pose(*step_towards(pos, quat, grasp - STAGING * BACK, SIDE_QUAT, FAST), OPEN)
