"""PushT's fixed geometry: workspace, T block, goal, keypoints, and the coverage measure.

Poses are (x, y, angle) of a body's origin in the 512x512 workspace (pixels, y down). The T is
two boxes in its local frame: the bar x in [-60, 60], y in [0, 30] and the stem x in [-15, 15],
y in [30, 120]; its centre of gravity is (0, 45), midway between the boxes' centres, as in the
original env (which is why setting the angle after the position moves the block).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

WINDOW = 512
AGENT_RADIUS = 15.0
#: the four wall segments (ends) and their radius; the pusher passes through them, the block not
WALLS = (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506)))
WALL_RADIUS = 2.0
GOAL_POSE = np.array([256.0, 256.0, np.pi / 4])
SUCCESS_THRESHOLD = 0.95
TEE_AREA = 120.0 * 30.0 + 30.0 * 90.0

#: the T's two boxes, local vertices in pymunk's (convex hull) order
TEE_BOXES = (
    np.array([[-60.0, 0.0], [60.0, 0.0], [60.0, 30.0], [-60.0, 30.0]]),
    np.array([[-15.0, 30.0], [15.0, 30.0], [15.0, 120.0], [-15.0, 120.0]]),
)
TEE_COG = np.array([0.0, 45.0])
#: the T's outline (8 corners, local frame), for costs and drawing outlines
TEE_OUTLINE = np.array(
    [[-60.0, 0.0], [60.0, 0.0], [60.0, 30.0], [15.0, 30.0], [15.0, 120.0], [-15.0, 120.0], [-15.0, 30.0], [-60.0, 30.0]]
)

#: The 9 block keypoints of the low-dim benchmark, in the block's local frame. The original picks
#: them by farthest-point sampling over the pixels of a rendered T (``np.random.default_rng(0)``)
#: plus a uniform [0, 1) jitter; ``tests/test_pusht_env.py`` re-derives them that way with our
#: renderer, and they reproduce the dataset's ``keypoint`` array.
BLOCK_KEYPOINTS = np.array(
    [
        [9.2697867138, 90.0409735239],
        [-60.9834723645, -1.1867297608],
        [60.9127555773, -1.3933642242],
        [-0.270503439, 25.5436249915],
        [-14.0649275762, 122.8158535541],
        [39.0027385002, 32.8574042766],
        [-39.9664144247, 32.7296554464],
        [-16.8243443794, 62.8631789223],
        [23.5414612202, -1.7002881095],
    ]
)


def rotation(angle: float | np.ndarray) -> np.ndarray:
    """(..., 2, 2) rotation matrices."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def to_world(pose: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Local points (..., K, 2) of a body at ``pose`` (..., 3) -> world points (..., K, 2)."""
    pose = np.asarray(pose, dtype=np.float64)
    return np.einsum("...ij,...kj->...ki", rotation(pose[..., 2]), local) + pose[..., None, :2]


def keypoints(block_pose: np.ndarray) -> np.ndarray:
    """(9, 2) world keypoints of the block at ``block_pose`` (x, y, angle)."""
    return to_world(block_pose, BLOCK_KEYPOINTS)


def legacy_block_position(position: np.ndarray, angle: float) -> np.ndarray:
    """Where the original's legacy reset (position first, then angle) really puts the block.

    pymunk rotates about the centre of gravity, so the origin moves by cog - R(angle) cog.
    """
    return np.asarray(position, dtype=np.float64) + TEE_COG - rotation(angle) @ TEE_COG


def _clip(poly: list[tuple[float, float]], a: tuple[float, float], b: tuple[float, float]) -> list[tuple[float, float]]:
    """The part of a convex polygon left of the directed line a -> b (Sutherland-Hodgman, one edge)."""
    (ax, ay), (bx, by) = a, b
    out = []
    for i in range(len(poly)):
        (px, py), (qx, qy) = poly[i - 1], poly[i]
        sp = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
        sq = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
        if sq >= 0:
            if sp < 0:
                t = sp / (sp - sq)
                out.append((px + t * (qx - px), py + t * (qy - py)))
            out.append((qx, qy))
        elif sp >= 0:
            t = sp / (sp - sq)
            out.append((px + t * (qx - px), py + t * (qy - py)))
    return out


def _area_signed(poly: list[tuple[float, float]]) -> float:
    return 0.5 * sum(poly[i - 1][0] * poly[i][1] - poly[i][0] * poly[i - 1][1] for i in range(len(poly)))


def _area(poly: list[tuple[float, float]]) -> float:
    return abs(_area_signed(poly))


def _world_boxes(pose: Sequence[float]) -> list[list[tuple[float, float]]]:
    x, y, angle = (float(v) for v in pose)
    c, s = math.cos(angle), math.sin(angle)
    return [[(x + c * u - s * v, y + s * u + c * v) for u, v in box.tolist()] for box in TEE_BOXES]


def _goal_edges() -> list[list[tuple[tuple[float, float], tuple[float, float]]]]:
    """Each goal box's edges, directed so the box lies on their left."""
    edges = []
    for g in _world_boxes(GOAL_POSE):
        ccw = _area_signed(g) > 0
        edges.append([(g[i - 1], g[i]) if ccw else (g[i], g[i - 1]) for i in range(len(g))])
    return edges


_GOAL_EDGES = _goal_edges()


def coverage_fast(block_pose: Sequence[float]) -> float:
    """``coverage`` against the goal without shapely, for planning (agrees to within 1e-9).

    The T's boxes are convex and meet only along an edge, so the overlap is the sum of the four
    box-box overlaps, each a convex clip.
    """
    overlap = 0.0
    for edges in _GOAL_EDGES:
        for clipped in _world_boxes(block_pose):
            for a, b in edges:
                clipped = _clip(clipped, a, b)
                if not clipped:
                    break
            else:
                overlap += _area(clipped)
    return overlap / TEE_AREA


def _shapely_tee(pose: np.ndarray):
    import shapely.geometry as sg

    return sg.MultiPolygon([sg.Polygon(to_world(pose, box)) for box in TEE_BOXES])


def coverage(block_pose: np.ndarray, goal_pose: np.ndarray = GOAL_POSE) -> float:
    """area(block ∩ goal) / area(goal), with shapely as the original computes it."""
    goal = _shapely_tee(np.asarray(goal_pose, dtype=np.float64))
    return float(goal.intersection(_shapely_tee(np.asarray(block_pose, dtype=np.float64))).area / goal.area)
