"""The pygame/OpenCV stand-ins: reference values recorded with pygame 2.1.3, and their invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polx_envs.pusht import raster, render

WHITE = (255, 255, 255)


def blank(size: int = 64) -> raster.Canvas:
    return raster.Canvas(size, img=np.zeros((size, size, 3), np.uint8))


def lit(canvas: raster.Canvas) -> np.ndarray:
    return canvas.img[..., 0] > 0


# values measured with pygame 2.1.3 on a black 64x64 surface: pixel count and sum of x * y


@pytest.mark.parametrize("radius, count, lo, hi", [(2, 12, 28, 31), (11, 368, 19, 40), (15, 688, 15, 44)])
def test_filled_circle_matches_pygame(radius, count, lo, hi):
    c = blank()
    raster.fill_circles(c, np.array([[30, 30]]), radius, WHITE)
    ys, xs = np.nonzero(lit(c))
    assert len(xs) == count and (xs.min(), xs.max(), ys.min(), ys.max()) == (lo, hi, lo, hi)


def test_polygon_and_thick_line_match_pygame():
    c = blank()
    raster.fill_polygons(c, np.array([[(3, 10), (40, 2), (55, 45), (12, 60), (3, 10)]]), WHITE)
    ys, xs = np.nonzero(lit(c))
    assert (len(xs), int((xs * ys).sum())) == (2064, 1696367)
    c = blank()
    raster.thick_lines(c, np.array([[5, 7]]), np.array([[50, 20]]), 4, WHITE)
    ys, xs = np.nonzero(lit(c))
    assert (len(xs), int((xs * ys).sum())) == (184, 80258)


@pytest.mark.parametrize(
    "start, end, count, checksum",
    [((10, 20), (70, 50), 216, 290322), ((30, 50), (40, 75), 56, 105002), ((-5, 10), (20, -8), 41, 389)],
)
def test_thick_lines_leaving_the_canvas_clip_like_pygame(start, end, count, checksum):
    # pygame restarts its walk at the clipped end, so these differ from the unclipped pixels
    c = blank()
    raster.thick_lines(c, np.array([start]), np.array([end]), 4, WHITE)
    ys, xs = np.nonzero(lit(c))
    assert (len(xs), int((xs * ys).sum())) == (count, checksum)


def test_aaline_leaving_the_canvas_clips_like_pygame():
    c = raster.Canvas(64)
    raster.aaline(c, (30, 58), (33, 67), (231, 76, 60))
    ys, xs = np.nonzero((c.img != 255).any(-1))
    got = [(int(x), int(y), *(int(v) for v in c.img[y, x])) for y, x in zip(ys, xs)]
    assert got == [
        (30, 58, 231, 76, 60), (30, 59, 239, 135, 125), (31, 59, 246, 195, 189), (30, 60, 247, 195, 190),
        (31, 60, 238, 135, 124), (31, 61, 231, 76, 60), (31, 62, 238, 135, 124), (32, 62, 247, 195, 190),
        (31, 63, 246, 195, 189), (32, 63, 239, 135, 125),
    ]  # fmt: skip


def test_aaline_blends_like_pygame():
    c = raster.Canvas(64)
    raster.aaline(c, (10, 12), (16, 15), (231, 76, 60))
    ys, xs = np.nonzero((c.img != 255).any(-1))
    got = {(int(x), int(y)): tuple(int(v) for v in c.img[y, x]) for y, x in zip(ys, xs)}
    full, half = (231, 76, 60), (243, 165, 157)
    assert got == {
        (10, 12): full, (11, 12): half, (11, 13): half, (12, 13): full, (13, 13): half,
        (13, 14): half, (14, 14): full, (15, 14): half, (15, 15): half, (16, 15): full,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the closed-form Bresenham against pygame's loop, transcribed


def pygame_walk(x1: int, y1: int, x2: int, y2: int) -> list[tuple[int, int]]:
    dx, dy = abs(x2 - x1), abs(y2 - y1)
    sx, sy = (1 if x1 < x2 else -1), (1 if y1 < y2 else -1)
    err = dx // 2 if dx > dy else -(dy // 2)

    def sign(v: int, default: int) -> int:
        return 1 if v > 0 else (-1 if v < 0 else default)

    out = []
    while sign(x1 - x2, sx) != sx or sign(y1 - y2, sy) != sy:
        out.append((x1, y1))
        e2 = err
        if e2 > -dx:
            err -= dy
            x1 += sx
        if e2 < dy:
            err += dx
            y1 += sy
    return out + [(x1, y1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-30, 90), min_size=4, max_size=4))
def test_closed_form_walk_is_pygames_loop(coords):
    x1, y1, x2, y2 = coords
    xs, ys, _ = raster._bresenham(np.array([[x1, y1]]), np.array([[x2, y2]]))
    got = list(dict.fromkeys(zip(xs[0].tolist(), ys[0].tolist())))  # padding repeats the last pixel
    assert got == pygame_walk(x1, y1, x2, y2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 70), st.integers(-5, 70)), min_size=8, max_size=8))
def test_polygons_of_one_colour_fill_alike_together_or_apart(corners):
    quads = np.array(corners).reshape(2, 4, 2)
    apart, together = blank(), blank()
    for quad in quads:
        raster.fill_polygons(apart, quad[None], WHITE)
    raster.fill_polygons(together, quads, WHITE)
    assert np.array_equal(lit(apart), lit(together))
    ys, xs = np.nonzero(lit(together))
    lo, hi = quads.reshape(-1, 2).min(0), quads.reshape(-1, 2).max(0)
    assert ((xs >= lo[0]) & (xs <= hi[0]) & (ys >= lo[1]) & (ys <= hi[1])).all()  # inside the bounding box


def test_rectangle_fills_its_inclusive_bounds():
    c = blank()
    raster.fill_polygons(c, np.array([[(10, 5), (30, 5), (30, 20), (10, 20)]]), WHITE)
    expected = np.zeros((64, 64), bool)
    expected[5:21, 10:31] = True
    assert np.array_equal(lit(c), expected)


# ---------------------------------------------------------------------------------------------
# the sampled canvas and the resize


@settings(max_examples=25, deadline=None)
@given(
    st.floats(0, 512),
    st.floats(0, 512),
    st.floats(40, 470),
    st.floats(40, 470),
    st.floats(-7, 7),
    st.sampled_from([96, 64, 33]),
)
def test_sampled_canvas_resizes_like_the_full_canvas(ax, ay, bx, by, angle, size):
    from polx_envs.pusht.geometry import TEE_BOXES, to_world

    polygons = [to_world(np.array([bx, by, angle]), box) for box in TEE_BOXES]
    full = render.draw_scene((ax, ay), polygons)
    sampled = render.draw_scene((ax, ay), polygons, size=size)
    assert np.array_equal(full.img[np.ix_(sampled.rows, sampled.cols)], sampled.img)
    assert np.array_equal(raster.resize(full.img, size), raster.resize(sampled, size))


def test_resize_keeps_flat_colour_and_blends_edges():
    img = np.full((512, 512, 3), 200, np.uint8)
    assert (raster.resize(img, 96) == 200).all()
    img[:, 253:] = 0  # output column 47 samples source columns 252 and 253 (weights 0.17, 0.83)
    out = raster.resize(img, 96)
    assert (out[:, :47] == 200).all() and (out[:, 48:] == 0).all() and 0 < out[0, 47, 0] < 200
