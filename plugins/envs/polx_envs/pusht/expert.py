"""A scripted PushT expert: push primitives chosen by simulating each one on a copy of the physics.

At each decision the expert considers pushing the T at points on its outline (along the outward
normal there) by several depths. It screens every candidate on its own ``PushTSim`` (restored to
the current poses, the pusher placed at the approach point), scoring the pose error removed per
control step, the travel to the approach point included. The best few are then simulated in
full from the true state: backing off, a collision-free path around the block (a visibility
graph over a ring of waypoints), the push. The winner is executed, then the expert decides again.
A candidate that solves the task (coverage > 0.95) on the way wins outright. Deterministic.

Closed loop: the plan also predicts the state after each of its steps, and the expert keeps
following it only while the state it is shown is the one predicted (within 2 px and 0.04 rad;
the model's own prediction drifts by up to ~1 px in contact, having no contact caches);
any other state, a perturbation or a state another controller led to, gets a fresh plan from
that state. So the action is the expert's answer for the state it is shown, whatever came
before, which is what DAgger needs of a teacher; along its own trajectory it plans as rarely
as before.
"""

from __future__ import annotations

import math

import numpy as np

from polx_envs.pusht.geometry import (
    AGENT_RADIUS,
    GOAL_POSE,
    SUCCESS_THRESHOLD,
    TEE_COG,
    TEE_OUTLINE,
    WINDOW,
    coverage_fast,
    rotation,
    to_world,
)
from polx_envs.pusht.sim import PushTSim


def _contact_points() -> tuple[np.ndarray, np.ndarray]:
    """Points on the T's outline the pusher can reach, with outward normals (local frame)."""
    pts, normals = [], []

    def edge(a, b, n, ts):
        for t in ts:
            pts.append(np.array(a) + t * (np.array(b) - np.array(a)))
            normals.append(n)

    edge((-60, 0), (60, 0), (0, -1), np.linspace(0.06, 0.94, 9))  # top of the bar
    edge((60, 0), (60, 30), (1, 0), (0.3, 0.7))  # bar ends
    edge((-60, 30), (-60, 0), (-1, 0), (0.3, 0.7))
    edge((34, 30), (58, 30), (0, 1), (0.0, 0.5, 1.0))  # under the bar, clear of the stem
    edge((-34, 30), (-58, 30), (0, 1), (0.0, 0.5, 1.0))
    edge((15, 50), (15, 114), (1, 0), (0.0, 0.33, 0.67, 1.0))  # stem sides
    edge((-15, 50), (-15, 114), (-1, 0), (0.0, 0.33, 0.67, 1.0))
    edge((-9, 120), (9, 120), (0, 1), (0.0, 0.5, 1.0))  # stem end
    return np.array(pts, dtype=np.float64), np.array(normals, dtype=np.float64)


CONTACTS, NORMALS = _contact_points()


GOAL_COG = to_world(GOAL_POSE, TEE_COG[None])[0]
ANGLE_WEIGHT = 80.0  # px per radian of turn, against px of offset


def pose_error(poses: np.ndarray, angle_weight: float = ANGLE_WEIGHT) -> np.ndarray:
    """Distance (px) of a pose (..., 3) from the goal: centre-of-gravity offset + 80 px per radian.

    Linear in the angle, unlike corner distances, which stop growing near a half turn: a T upside
    down on the goal would otherwise sit on a plateau where no single push looks like progress.
    """
    poses = np.asarray(poses, dtype=np.float64)
    cog = to_world(poses, TEE_COG[None])[..., 0, :]
    turn = np.abs((poses[..., 2] - GOAL_POSE[2] + np.pi) % (2 * np.pi) - np.pi)
    return np.linalg.norm(cog - GOAL_COG, axis=-1) + angle_weight * turn


def _near_goal(sim: PushTSim) -> bool:
    """Cheap gate before the exact coverage: within 4 px and 0.08 rad of the goal (wider than success)."""
    (x, y), angle = sim.block.position, sim.block.angle
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = x - s * TEE_COG[1], y + c * TEE_COG[1]  # the centre of gravity, (0, 45) in the T's frame
    turn = abs((angle - GOAL_POSE[2] + math.pi) % (2 * math.pi) - math.pi)
    return math.hypot(cx - GOAL_COG[0], cy - GOAL_COG[1]) < 4.0 and turn < 0.08


# ---------------------------------------------------------------------------------------------
# geometry for paths around the block


def _point_segment_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def segment_clearance(p: np.ndarray, q: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Distance from segments p->q (..., 2) to the T's outline edges (E, 2, 2); 0 when they cross."""
    p, q = np.broadcast_arrays(p, q)
    p, q = p[..., None, :], q[..., None, :]
    a, b = edges[:, 0], edges[:, 1]
    d = np.minimum(
        np.minimum(_point_segment_dist(p, a, b), _point_segment_dist(q, a, b)),
        np.minimum(_point_segment_dist(a, p, q), _point_segment_dist(b, p, q)),
    )
    d1, d2 = _cross(q - p, a - p), _cross(q - p, b - p)
    d3, d4 = _cross(b - a, p - a), _cross(b - a, q - a)
    crossing = (d1 * d2 < 0) & (d3 * d4 < 0)
    return np.where(crossing, 0.0, d).min(-1)


class PathPlanner:
    """Shortest collision-free pusher paths around the T at one pose (a visibility graph)."""

    def __init__(self, block_pose: np.ndarray, clearance: float, ring_radius: float, n_ring: int = 16):
        corners = to_world(block_pose, TEE_OUTLINE)
        self.edges = np.stack([corners, np.roll(corners, -1, axis=0)], axis=1)  # (8, 2, 2)
        self.clearance = clearance
        cog = to_world(block_pose, TEE_COG[None])[0]
        angles = np.linspace(0, 2 * np.pi, n_ring, endpoint=False)
        ring = cog + ring_radius * np.stack([np.cos(angles), np.sin(angles)], -1)
        self.ring = ring[((ring >= 0) & (ring <= WINDOW)).all(-1)]
        n = len(self.ring)
        ok = segment_clearance(self.ring[:, None], self.ring[None], self.edges) >= clearance
        dist = np.where(ok, np.linalg.norm(self.ring[:, None] - self.ring[None], axis=-1), np.inf)
        np.fill_diagonal(dist, 0.0)
        self.next_hop = np.tile(np.arange(n), (n, 1))
        for k in range(n):  # Floyd-Warshall over a handful of ring nodes
            via = dist[:, k : k + 1] + dist[k : k + 1, :]
            better = via < dist
            dist = np.where(better, via, dist)
            self.next_hop = np.where(better, self.next_hop[:, k : k + 1], self.next_hop)
        self.ring_dist = dist

    def clear(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return segment_clearance(p, q, self.edges) >= self.clearance

    def lengths(self, start: np.ndarray, goals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Path lengths start -> goals[k] (K, 2), and each path's (entry, exit) ring nodes (-1: direct)."""
        k, n = len(goals), len(self.ring)
        direct = self._hop(np.broadcast_to(start, goals.shape), goals)  # (K,)
        if n == 0:
            return direct, np.full(k, -1), np.full(k, -1)
        to_ring = self._hop(np.broadcast_to(start, self.ring.shape), self.ring)  # (n,)
        from_ring = self._hop(np.broadcast_to(self.ring, (k, n, 2)), np.broadcast_to(goals[:, None], (k, n, 2)))  # (K, n)
        total = (to_ring[:, None] + self.ring_dist)[None] + from_ring[:, None, :]  # (K, entry, exit)
        flat = total.reshape(k, -1).argmin(1)
        best = total.reshape(k, -1)[np.arange(k), flat]
        entry, exit_ = np.divmod(flat, n)
        via_ring = best < direct
        return np.where(via_ring, best, direct), np.where(via_ring, entry, -1), np.where(via_ring, exit_, -1)

    def _hop(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Length of each straight move p -> q, or inf where it passes too close to the block."""
        return np.where(self.clear(p, q), np.linalg.norm(q - p, axis=-1), np.inf)

    def waypoints(self, goal: np.ndarray, entry: int, exit_: int) -> list[np.ndarray]:
        if entry < 0:
            return [goal]
        pts, i = [self.ring[entry]], entry
        while i != exit_:
            i = self.next_hop[i, exit_]
            pts.append(self.ring[i])
        return pts + [goal]


def along(points: list[np.ndarray], start: np.ndarray, step: float) -> list[np.ndarray]:
    """Targets every ``step`` px along the polyline start -> points (the last point included)."""
    out, here = [], np.asarray(start, dtype=np.float64)
    carry = 0.0
    for p in points:
        seg = p - here
        length = float(np.linalg.norm(seg))
        s = step - carry
        while s < length:
            out.append(here + seg * (s / length))
            s += step
        carry = length - (s - step)
        here = p
    if not out or np.linalg.norm(out[-1] - here) > 1e-9:
        out.append(here.copy())
    return out


# ---------------------------------------------------------------------------------------------


class PushTExpert:
    """Call ``act(sim)`` once per control step with the env's ``PushTSim``; returns the target.

    A plan is scored by its progress per control step (pose error removed / steps it takes,
    travel included), so a long detour wins only when it pays for its time, and a plan that
    solves the task beats everything, the sooner the better.
    """

    def __init__(
        self,
        depths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
        push_speed: float = 10.0,
        travel_speed: float = 30.0,
        gap: float = 3.0,
        n_verify: int = 4,
        angle_weight: float = ANGLE_WEIGHT,
        record_size: int | None = None,
        keep_pusher_px: float = 15.0,
        keep_block_px: float = 3.0,
        keep_block_rad: float = 0.05,
    ):
        """``record_size``: also render ``img`` frames of this size in ``record`` (image datasets).

        The plan is kept while the state stays near its prediction: the pusher within
        ``keep_pusher_px`` (its velocity within 5x that, in px/s), the block within
        ``keep_block_px`` and ``keep_block_rad``. Farther, the expert plans afresh from the state
        it is shown. The pusher's tolerance is loose on purpose: the plan's targets pull a pusher
        that lags or overshoots back onto it, whereas planning afresh at every step of a noisy
        pusher changes its mind so often that it stops making progress (benchmarks/README.md,
        "DAgger").
        """
        self.record_size = record_size
        self.keep_pusher_px, self.keep_block_px, self.keep_block_rad = keep_pusher_px, keep_block_px, keep_block_rad
        self.depths, self.push_speed, self.travel_speed, self.gap = depths, push_speed, travel_speed, gap
        self.n_verify, self.angle_weight = n_verify, angle_weight
        self.model = PushTSim(count_contacts=False)
        self.queue: list[tuple[np.ndarray, tuple]] = []  # (target, the state predicted after it)
        self.expected: tuple | None = None  # the state the last action was predicted to lead to

    def reset(self) -> None:
        self.queue, self.expected = [], None

    def act(self, env) -> np.ndarray:
        """The target for the state of ``env`` (a ``PushTEnv``, or its ``PushTSim``) now."""
        sim = getattr(getattr(env, "unwrapped", env), "sim", env)
        if not self.queue or not self._as_predicted(sim):
            snap = sim.snapshot()
            self.queue = self._predict(snap, [np.clip(t, 0.0, WINDOW) for t in self._plan(sim)])
        target, self.expected = self.queue.pop(0)
        return target

    def record(self, env) -> dict[str, np.ndarray]:
        """The state of ``env`` as one row of the PushT dataset layout (see ``demos``), action excluded."""
        from polx_envs.pusht import geometry, render

        env = getattr(env, "unwrapped", env)
        sim = getattr(env, "sim", env)
        row = {"state": sim.state().astype(np.float32), "keypoint": geometry.keypoints(sim.block_pose).astype(np.float32)}
        row["n_contacts"] = np.array([getattr(env, "n_contacts", 0)], dtype=np.float32)  # during the last step, as demos record it
        if self.record_size is not None:
            row["img"] = render.render_frame(sim.agent_pos, sim.block_polygons(), sim.contact_markers(), self.record_size)
        return row

    def _as_predicted(self, sim: PushTSim) -> bool:
        """Is ``sim`` near the state the plan predicted (pusher, its velocity, block pose)?"""
        if self.expected is None:
            return False
        agent, velocity, block, angle = self.expected[:4]
        pusher, spread = self.keep_pusher_px, 5 * self.keep_pusher_px
        return (
            max(abs(sim.agent.position[0] - agent[0]), abs(sim.agent.position[1] - agent[1])) < pusher
            and max(abs(sim.agent.velocity[0] - velocity[0]), abs(sim.agent.velocity[1] - velocity[1])) < spread
            and max(abs(sim.block.position[0] - block[0]), abs(sim.block.position[1] - block[1])) < self.keep_block_px
            and abs(sim.block.angle - angle) < self.keep_block_rad
        )

    def _predict(self, snap: tuple, targets: list[np.ndarray]) -> list[tuple[np.ndarray, tuple]]:
        """Each target with the model's state after it, from ``snap``."""
        self.model.restore(snap)
        out = []
        for t in targets:
            self.model.step(t)
            out.append((t, self.model.snapshot()))
        return out

    # -----------------------------------------------------------------------------------------

    def _push_targets(self, approach: np.ndarray, normal: np.ndarray, depth: float) -> list[np.ndarray]:
        total = self.gap + depth
        speed = min(self.push_speed, max(2.0, depth / 2))
        n = int(np.ceil(total / speed))
        targets = [approach - normal * min(total, speed * (k + 1)) for k in range(n)]
        return targets + [targets[-1]]  # one more step to let the pusher catch up

    def _rollout(self, snap: tuple, targets: list[np.ndarray]) -> tuple[np.ndarray, int | None]:
        """Final block pose after ``targets`` from ``snap``, and the step that succeeds (if one does)."""
        model = self.model
        model.restore(snap)
        for k, t in enumerate(targets):
            model.step(t)
            if _near_goal(model) and coverage_fast(model.block_pose) > SUCCESS_THRESHOLD:
                return model.block_pose, k + 1
        return model.block_pose, None

    def _plan(self, sim: PushTSim) -> list[np.ndarray]:
        snap = sim.snapshot()
        pose, agent = sim.block_pose, sim.agent_pos
        contacts = to_world(pose, CONTACTS)
        normals = NORMALS @ rotation(pose[2]).T
        approach = contacts + normals * (AGENT_RADIUS + self.gap)
        pre = approach + normals * 12.0
        inside = ((approach >= 0) & (approach <= WINDOW)).all(-1)

        planner = PathPlanner(pose, clearance=AGENT_RADIUS + 3.0, ring_radius=100.0)
        prefix = self._retreat(agent, planner)
        start = prefix[-1] if prefix else agent
        path_len, entry, exit_ = planner.lengths(start, pre)
        travel_steps = np.ceil((path_len + np.linalg.norm(pre - approach, axis=-1)) / self.travel_speed) + len(prefix)
        now = float(pose_error(pose, self.angle_weight))

        # 1. screen every push with the pusher placed at its approach point
        screened = []
        # long shoves only far from the goal, nudges only near it
        depths = [d for d in self.depths if max(1.0, now / 12) <= d <= max(4.0, 0.8 * now)]
        for i in np.nonzero(inside & np.isfinite(path_len))[0]:
            for depth in depths:
                targets = self._push_targets(approach[i], normals[i], depth)
                teleported = (tuple(approach[i]), (0.0, 0.0), *snap[2:])
                final, solved = self._rollout(teleported, targets)
                steps = travel_steps[i] + (solved or len(targets))
                screened.append((self._score(now, final, solved, steps), i, targets))
        if not screened:  # nothing reachable from here: step out to the far side of the ring
            far = planner.ring[np.argmax(np.linalg.norm(planner.ring - start, axis=-1))] if len(planner.ring) else start
            return prefix + [far]
        screened.sort(key=lambda c: c[0])

        # 2. the best few, executed in full (retreat, travel, push) from the true state
        best = (np.inf, None)
        for _, i, targets in screened[: self.n_verify]:
            path = planner.waypoints(pre[i], entry[i], exit_[i]) + [approach[i]]
            plan = prefix + along(path, start, self.travel_speed) + targets
            final, solved = self._rollout(snap, plan)
            score = self._score(now, final, solved, len(plan))
            if score < best[0]:
                best = (score, plan[:solved] if solved else plan)
        return best[1]

    def _score(self, now: float, final: np.ndarray, solved: int | None, steps: float) -> float:
        """Lower is better: solving (sooner first), then progress per step, then least harm."""
        if solved:
            return -1e6 + steps
        after = float(pose_error(final, self.angle_weight))
        if after < now:
            return (after - now) / steps
        return 1e3 + after  # no progress: a longer plan must not look better by dividing by its length

    @staticmethod
    def _retreat(p: np.ndarray, planner: PathPlanner) -> list[np.ndarray]:
        """Points backing the pusher away from the block until it has clearance (none if it has)."""
        a, b = planner.edges[:, 0], planner.edges[:, 1]
        out = []
        for _ in range(6):
            t = np.clip(((p - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1), 0, 1)
            closest = a + t[:, None] * (b - a)
            d = np.linalg.norm(p - closest, axis=-1)
            k = int(d.argmin())
            if d[k] >= planner.clearance + 0.5:
                break
            away = (p - closest[k]) / max(d[k], 1e-9)
            p = p + away * (planner.clearance + 2.0 - d[k])
            out.append(p)
        return out


def run_episode(seed: int, max_steps: int = 300, legacy: bool = True, expert: PushTExpert | None = None) -> dict:
    """Roll the expert out from the benchmark start state of ``seed`` (state observations)."""
    from polx_envs.pusht.env import PushTEnv

    env = PushTEnv(obs_type="state", legacy=legacy)
    env.reset(seed=seed)
    expert = expert or PushTExpert()
    best, steps, success = 0.0, 0, False
    for steps in range(1, max_steps + 1):
        _, _, terminated, _, info = env.step(expert.act(env))
        best = max(best, info["coverage"])
        if terminated:
            success = True
            break
    return {"seed": seed, "success": success, "max_coverage": best, "steps": steps}
