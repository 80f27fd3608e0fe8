"""PushT frames as the original draws them, and trajectory pictures.

The original draws on a 512x512 white canvas: the goal T filled light green; then pymunk's debug
draw of every shape in the order its spatial index yields them (the T's two boxes, the pusher,
the walls); then a short red mark at every contact of the last physics step; and shrinks the
canvas with ``cv2.resize``. A box is filled 1.2x lighter than its colour and outlined with
4-pixel "fat segments"; the pusher is a blue disc with a lighter disc 4 px smaller inside.
``raster`` reproduces each of those calls, so frames match the published dataset.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from polx_envs.pusht import raster
from polx_envs.pusht.geometry import AGENT_RADIUS, GOAL_POSE, TEE_BOXES, TEE_OUTLINE, WALL_RADIUS, WALLS, WINDOW, to_world

if TYPE_CHECKING:  # pragma: no cover
    from polx.components import Episode

WHITE = (255, 255, 255)
GOAL_GREEN = (144, 238, 144)  # pygame "LightGreen"
BLOCK_GRAY = (119, 136, 153)  # "LightSlateGray": outlines
AGENT_BLUE = (65, 105, 225)  # "RoyalBlue"
WALL_GRAY = (211, 211, 211)  # "LightGray"
CONTACT_RED = (231, 76, 60)  # pymunk's debug-draw colour for contact points
OUTLINE_RADIUS = 2  # the original's draw_polygon always outlines with radius 2


def lighter(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """The original's ``light_color``: 1.2x in float32, capped at 255, rounded (``as_int``)."""
    return tuple(round(float(c)) for c in np.minimum(np.float32(1.2) * np.float32(color), np.float32(255)))


def _pixel(p: Sequence[float]) -> tuple[int, int]:
    return round(p[0]), round(p[1])  # pymunk.pygame_util.to_pygame: Python's round (half to even)


def _grid(size: int) -> np.ndarray:
    """Canvas rows (and columns) a frame of ``size`` px reads; all of them for the full canvas."""
    return np.arange(WINDOW) if size == WINDOW else raster.resize_grid(WINDOW, size)


@lru_cache(maxsize=4)
def _background(size: int) -> raster.Canvas:
    """White canvas with the goal T, which never moves (stored rows/columns for a ``size`` frame)."""
    grid = _grid(size)
    canvas = raster.Canvas(WINDOW, grid, grid)
    goal = np.array([[_pixel(p) for p in to_world(GOAL_POSE, box)] for box in TEE_BOXES])
    raster.fill_polygons(canvas, goal, GOAL_GREEN)
    return canvas


@lru_cache(maxsize=4)
def _wall_mask(size: int) -> np.ndarray:
    """Stored pixels the walls cover. Walls are drawn last and opaque, so they paste as a mask."""
    grid = _grid(size)
    canvas = raster.Canvas(WINDOW, grid, grid, np.zeros((len(grid), len(grid), 3), np.uint8))
    ends = np.array(WALLS)
    raster.fat_segments(canvas, ends[:, 0], ends[:, 1], WALL_RADIUS, (1, 1, 1))
    return canvas.img[..., 0] == 1


def draw_scene(
    agent_pos: Sequence[float],
    block_polygons: Sequence[Sequence[Sequence[float]]],
    contacts: Sequence[tuple[Sequence[float], Sequence[float]]] = (),
    size: int = WINDOW,
) -> raster.Canvas:
    """The original's 512x512 canvas for one scene (only what a ``size`` px frame reads).

    ``draw_scene(...).img`` is the (512, 512, 3) uint8 picture for the default ``size``.
    """
    canvas = _background(size).copy()
    for verts in block_polygons:  # each box: lighter fill, then its four outline edges
        pts = np.array([_pixel(v) for v in verts])
        raster.fill_polygons(canvas, pts[None], lighter(BLOCK_GRAY))
        raster.fat_segments(canvas, pts, np.roll(pts, -1, axis=0), OUTLINE_RADIUS, BLOCK_GRAY)
    center = np.array([_pixel(agent_pos)])
    raster.fill_circles(canvas, center, round(AGENT_RADIUS), AGENT_BLUE)
    raster.fill_circles(canvas, center, round(AGENT_RADIUS - 4), lighter(AGENT_BLUE))
    canvas.img[_wall_mask(size)] = WALL_GRAY
    for a, b in contacts:
        raster.aaline(canvas, _pixel(a), _pixel(b), CONTACT_RED)
    return canvas


def render_frame(
    agent_pos: Sequence[float],
    block_polygons: Sequence[Sequence[Sequence[float]]],
    contacts: Sequence[tuple[Sequence[float], Sequence[float]]] = (),
    size: int = 96,
) -> np.ndarray:
    """The observation frame (size, size, 3) uint8: the canvas shrunk as ``cv2.resize`` does."""
    return raster.resize(draw_scene(agent_pos, block_polygons, contacts, size=size), size)


# ---------------------------------------------------------------------------------------------
# trajectory pictures


def render_trajectory(env, episode: "Episode", path: str | Path, size: int = 512) -> Path:
    """PNG of the final frame with the pusher's path in red, the goal outlined, start and end marked.

    The path is the pusher's own positions when the env recorded this episode (``env.agent_path``:
    one per control step since reset); otherwise the executed targets ``episode.actions``.
    """
    from PIL import Image, ImageDraw

    pusht = env.unwrapped
    frame = draw_scene(pusht.sim.agent_pos, pusht.sim.block_polygons()).img
    img = Image.fromarray(frame).resize((size, size), Image.BILINEAR) if size != WINDOW else Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    s = size / WINDOW

    goal = [(x * s, y * s) for x, y in to_world(GOAL_POSE, TEE_OUTLINE)]
    draw.line(goal + goal[:1], fill=(0, 120, 0), width=max(1, round(2 * s)))

    recorded = getattr(pusht, "agent_path", [])
    own = len(recorded) == len(episode.actions) + 1  # the env ran exactly this episode
    path_xy = np.asarray(recorded if own else episode.actions, dtype=np.float64).reshape(-1, 2)
    points = [(x * s, y * s) for x, y in path_xy]
    if len(points) > 1:
        draw.line(points, fill=(255, 0, 0), width=max(1, round(2 * s)), joint="curve")
    r = 6 * s
    if points:
        (x0, y0), (x1, y1) = points[0], points[-1]
        draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=(255, 0, 0), width=max(1, round(2 * s)))  # start: ring
        draw.rectangle([x1 - r, y1 - r, x1 + r, y1 + r], fill=(255, 0, 0))  # end: square
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out
