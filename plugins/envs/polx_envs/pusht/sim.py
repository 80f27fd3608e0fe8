"""PushT physics: the original Diffusion Policy pymunk scene, step for step.

Everything that changes the floating-point trajectory is kept as the original has it, so recorded
actions replay to the recorded states: the order shapes are added (walls, pusher, T), shape
friction and elasticity left at pymunk's 0, space damping 0 (the block stops when not pushed), the
T's inertia (twice the bar's, a quirk of the original), and the PD update evaluated in the same
order of operations. ``Body.friction``, which the original sets, is not a pymunk property and has
no effect, so it is left out.
"""

from __future__ import annotations

import numpy as np
import pymunk

from polx_envs.pusht.geometry import AGENT_RADIUS, TEE_BOXES, WALL_RADIUS, WALLS

SIM_HZ = 100
CONTROL_HZ = 10
SUBSTEPS = SIM_HZ // CONTROL_HZ
DT = 1.0 / SIM_HZ
K_P, K_V = 100, 20  # PD gains pulling the pusher toward the commanded target


class PushTSim:
    """The pymunk space: walls, a kinematic circular pusher and the T block.

    ``count_contacts=False`` skips the per-contact callback (a planning model needs no counts).
    """

    def __init__(self, count_contacts: bool = True) -> None:
        self.space = pymunk.Space()
        self.space.gravity = 0, 0
        self.space.damping = 0
        self.space.add(*[pymunk.Segment(self.space.static_body, a, b, WALL_RADIUS) for a, b in WALLS])

        self.agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        self.agent.position = (256, 400)
        self.space.add(self.agent, pymunk.Circle(self.agent, AGENT_RADIUS))

        bar, stem = (box.tolist() for box in TEE_BOXES)
        inertia = pymunk.moment_for_poly(1, vertices=bar)
        self.block = pymunk.Body(1, inertia + inertia)
        shapes = [pymunk.Poly(self.block, bar), pymunk.Poly(self.block, stem)]
        self.block.center_of_gravity = (shapes[0].center_of_gravity + shapes[1].center_of_gravity) / 2
        self.block.position = (256, 300)
        self.block.angle = 0
        self.space.add(self.block, *shapes)
        self.block_shapes = shapes

        self.n_contact_points = 0
        if count_contacts:
            self.space.on_collision(0, 0, post_solve=self._count_contacts)

    def _count_contacts(self, arbiter: pymunk.Arbiter, space: pymunk.Space, data: object) -> None:
        self.n_contact_points += len(arbiter.contact_point_set.points)

    # -----------------------------------------------------------------------------------------

    def set_state(self, state: np.ndarray, legacy: bool = False) -> None:
        """Place pusher and block from [agent x, agent y, block x, block y, angle], then step once.

        ``legacy`` sets the block's position before its angle, as the original's evaluation
        reset does; pymunk then rotates about the centre of gravity and the block lands displaced.
        """
        state = [float(v) for v in np.asarray(state).reshape(5)]
        self.agent.position = state[:2]
        if legacy:
            self.block.position = state[2:4]
            self.block.angle = state[4]
        else:
            self.block.angle = state[4]
            self.block.position = state[2:4]
        self.space.step(DT)  # also refreshes the shapes' cached vertices that drawing uses

    def step(self, action: np.ndarray | None) -> int:
        """One control step (10 physics steps of PD control toward ``action``); returns contacts.

        ``None`` leaves the scene untouched, as in the original (a teleoperator not pushing).
        """
        self.n_contact_points = 0
        if action is not None:
            tx, ty = float(action[0]), float(action[1])
            agent, step = self.agent, self.space.step
            for _ in range(SUBSTEPS):
                (px, py), (vx, vy) = agent.position, agent.velocity
                ax = K_P * (tx - px) + K_V * (0 - vx)
                ay = K_P * (ty - py) + K_V * (0 - vy)
                agent.velocity = (vx + ax * DT, vy + ay * DT)
                step(DT)
        return int(np.ceil(self.n_contact_points / SUBSTEPS))

    # -----------------------------------------------------------------------------------------
    # reading the scene

    @property
    def agent_pos(self) -> np.ndarray:
        return np.array(self.agent.position)

    @property
    def block_pose(self) -> np.ndarray:
        """(x, y, angle) with the angle as pymunk holds it (not wrapped)."""
        return np.array([*self.block.position, self.block.angle])

    def state(self) -> np.ndarray:
        """The 5-vector of the dataset: agent x, y, block x, y, angle wrapped to [0, 2 pi)."""
        (ax, ay), (bx, by) = self.agent.position, self.block.position
        return np.array([ax, ay, bx, by, self.block.angle % (2 * np.pi)])

    def block_polygons(self) -> list[list[tuple[float, float]]]:
        """World vertices of the T's two boxes, computed by pymunk as its debug draw does."""
        to_world = self.block.local_to_world
        return [[tuple(to_world(v)) for v in shape.get_vertices()] for shape in self.block_shapes]

    def contact_markers(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """The short segments pymunk's debug draw marks each contact of the last step with."""
        segments = []

        def collect(arbiter: pymunk.Arbiter) -> None:
            cps = arbiter.contact_point_set
            nx, ny = cps.normal
            for p in cps.points:
                (ax, ay), (bx, by) = p.point_a, p.point_b
                segments.append(((ax - nx * 2.0, ay - ny * 2.0), (bx + nx * 2.0, by + ny * 2.0)))

        self.block.each_arbiter(collect)
        return segments

    # -----------------------------------------------------------------------------------------
    # cheap snapshots for planning

    def snapshot(self) -> tuple:
        """Poses and velocities of pusher and block (not the engine's contact caches)."""
        a, b = self.agent, self.block
        return (tuple(a.position), tuple(a.velocity), tuple(b.position), b.angle, tuple(b.velocity), b.angular_velocity)

    def restore(self, snap: tuple) -> None:
        """Set a ``snapshot``, and forget every contact so none carries over from before.

        pymunk warm-starts each contact with the impulse it had last step; removing and re-adding
        the moving shapes drops those cached contacts, so a restored rollout starts clean.
        """
        shapes = [*self.agent.shapes, *self.block_shapes]
        self.space.remove(*shapes)
        a, b = self.agent, self.block
        a.position, a.velocity = snap[0], snap[1]
        b.angle, b.position = snap[3], snap[2]  # angle first: pymunk turns about the centre of gravity
        b.velocity, b.angular_velocity = snap[4], snap[5]
        self.space.add(*shapes)
