"""Pixel-exact stand-ins for the drawing calls the original PushT renderer makes, on numpy arrays.

The published PushT frames were drawn with pygame 2.1 (``pygame.draw.polygon``, ``circle``,
``lines`` with width 4, ``aaline``) on a 512x512 canvas and shrunk with OpenCV 4's bilinear
``cv2.resize``. Each function here reproduces one of those rasterisation rules (integer scanline
fill, midpoint circle, Bresenham thick line, antialiased line, fixed-point bilinear resize), so
frames match the dataset's to the pixel without either library.

Speed: a 96 px frame reads only 192 rows and 192 columns of the 512 canvas, so a ``Canvas`` may
hold just such a grid of rows and columns; every primitive computes its pixel runs for the full
canvas and writes the ones that fall on the grid. Primitives are vectorised over all the shapes
of one colour that are drawn back to back (e.g. the four outline edges of a box).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

Color = tuple[int, int, int]


class Canvas:
    """An RGB canvas of ``size`` x ``size`` pixels, storing only the given rows and columns.

    ``img[i, j]`` is pixel (x=cols[i], y=rows[j]) of the full canvas; with the defaults it is the
    whole canvas, ``img`` then being the usual (H, W, 3) uint8 image indexed [y, x].
    """

    def __init__(self, size: int, rows: np.ndarray | None = None, cols: np.ndarray | None = None, img: np.ndarray | None = None):
        self.size = size
        self.rows = np.arange(size, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self.cols = np.arange(size, dtype=np.int64) if cols is None else np.asarray(cols, dtype=np.int64)
        self.img = np.full((len(self.rows), len(self.cols), 3), 255, np.uint8) if img is None else img
        self._row_index, self._col_rank = _grid_lookup(size, self.rows.tobytes(), self.cols.tobytes())

    def copy(self) -> "Canvas":
        return Canvas(self.size, self.rows, self.cols, self.img.copy())

    def spans(self, ys: np.ndarray, x0: np.ndarray, x1: np.ndarray, color: Color) -> None:
        """Set pixels x0[k]..x1[k] (inclusive) of row ys[k], clipped to the canvas."""
        ys, x0, x1 = np.asarray(ys).ravel(), np.asarray(x0).ravel(), np.asarray(x1).ravel()
        keep = (ys >= 0) & (ys < self.size) & (x1 >= 0) & (x0 < self.size) & (x0 <= x1)
        ri = self._row_index[ys[keep]]
        c0 = self._col_rank[np.maximum(x0[keep], 0)]
        c1 = self._col_rank[np.minimum(x1[keep], self.size - 1) + 1]
        on = (ri >= 0) & (c1 > c0)
        ri, c0, lengths = ri[on], c0[on], (c1 - c0)[on]
        if ri.size == 0:
            return
        total = int(lengths.sum())
        starts = np.cumsum(lengths) - lengths
        cols = np.repeat(c0 - starts, lengths) + np.arange(total)
        self.img[np.repeat(ri, lengths), cols] = color

    def get(self, x: int, y: int) -> np.ndarray | None:
        """Pixel (x, y) if it is on the canvas and stored, else None."""
        if not (0 <= x < self.size and 0 <= y < self.size):
            return None
        ri, c = self._row_index[y], self._col_rank[x]
        if ri < 0 or c >= len(self.cols) or self.cols[c] != x:
            return None
        return self.img[ri, c]


@lru_cache(maxsize=8)
def _grid_lookup(size: int, rows: bytes, cols: bytes) -> tuple[np.ndarray, np.ndarray]:
    """row -> index in ``rows`` (-1 if absent); x -> number of stored columns left of x."""
    rows_a, cols_a = np.frombuffer(rows, dtype=np.int64), np.frombuffer(cols, dtype=np.int64)
    row_index = np.full(size, -1, dtype=np.int64)
    row_index[rows_a] = np.arange(len(rows_a))
    col_rank = np.searchsorted(cols_a, np.arange(size + 1))
    return row_index, col_rank


def _trunc_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """C integer division (rounds toward zero); exact in float64 for these pixel-sized operands."""
    return np.trunc(num / den).astype(np.int64)


def fill_polygons(canvas: Canvas, polygons: np.ndarray, color: Color) -> None:
    """``pygame.draw.polygon(surface, color, points)`` (filled) for each of (P, n, 2) int polygons.

    pygame's scanline rule: on each row y an edge counts if y1 <= y < y2 (or the edge ends on the
    last row), crossings are x1 + (y - y1) * (x2 - x1) / (y2 - y1) in C integer division, sorted
    and paired; horizontal edges strictly inside the row range are drawn on their own.
    """
    pts = np.asarray(polygons, dtype=np.int64).reshape(-1, np.shape(polygons)[-2], 2)
    xs, ys = pts[..., 0], pts[..., 1]  # (P, n)
    miny, maxy = ys.min(1), ys.max(1)
    flat = miny == maxy  # one pixel high: a line over the x range
    if flat.any():
        canvas.spans(miny[flat], xs[flat].min(1), xs[flat].max(1), color)
    px, py = np.roll(xs, 1, axis=1), np.roll(ys, 1, axis=1)  # the vertex before each vertex
    down = py < ys
    y_lo, y_hi = np.minimum(py, ys), np.maximum(py, ys)
    x_lo, x_hi = np.where(down, px, xs), np.where(down, xs, px)

    n_rows = int((maxy - miny).max()) + 1
    rows = miny[:, None] + np.arange(n_rows)  # (P, R)
    r = rows[..., None]  # (P, R, 1) against edges (P, 1, n)
    lo, hi, last = y_lo[:, None], y_hi[:, None], maxy[:, None, None]
    hit = ((r >= lo) & (r < hi)) | ((r == last) & (hi == last))
    hit &= (y_lo != y_hi)[:, None] & ~flat[:, None, None] & (rows <= maxy[:, None])[..., None]
    x_at = _trunc_div((r - lo) * (x_hi - x_lo)[:, None], np.maximum(hi - lo, 1)) + x_lo[:, None]
    x_at = np.sort(np.where(hit, x_at, np.iinfo(np.int64).max), axis=2)
    counts = hit.sum(2)
    for k in range(0, x_at.shape[2] - 1, 2):  # pairs of sorted crossings bound the inside
        pair = counts >= k + 2
        if not pair.any():  # convex polygons cross each row at most twice
            break
        canvas.spans(rows[pair], x_at[..., k][pair], x_at[..., k + 1][pair], color)

    inner_flat = (py == ys) & (ys > miny[:, None]) & (ys < maxy[:, None]) & ~flat[:, None]
    if inner_flat.any():
        canvas.spans(ys[inner_flat], np.minimum(xs, px)[inner_flat], np.maximum(xs, px)[inner_flat], color)


@lru_cache(maxsize=None)
def _circle_spans(radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row offsets and inclusive x offsets of pygame's filled midpoint circle of ``radius``."""
    dy, left, right = [], [], []
    f, ddf_x, ddf_y, x, y = 1 - radius, 0, -2 * radius, 0, radius
    while x < y:
        if f >= 0:
            y -= 1
            ddf_y += 2
            f += ddf_y
        x += 1
        ddf_x += 2
        f += ddf_x + 1
        if f >= 0:  # pygame draws these two rows only when y is about to step
            dy += [y - 1, -y]
            left += [-x, -x]
            right += [x - 1, x - 1]
        dy += [x - 1, -x]
        left += [-y, -y]
        right += [y - 1, y - 1]
    return np.array(dy, dtype=np.int64), np.array(left, dtype=np.int64), np.array(right, dtype=np.int64)


def fill_circles(canvas: Canvas, centers: np.ndarray, radius: int, color: Color) -> None:
    """``pygame.draw.circle(surface, color, center, radius)`` (filled) at each of (K, 2) int centres."""
    if radius < 1:
        return
    dy, left, right = _circle_spans(int(radius))
    c = np.asarray(centers, dtype=np.int64).reshape(-1, 2)
    canvas.spans(dy + c[:, 1:2], left + c[:, 0:1], right + c[:, 0:1], color)


def _bresenham(p1: np.ndarray, p2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of pygame's Bresenham walks from p1[k] to p2[k] (K, 2), in closed form.

    Along the major axis every step advances; the minor offset after i steps is
    ``max(0, ceil((i * d_minor - d_major // 2) / d_major))`` (pygame's initial error is half the
    major extent). Returns x, y (K, L) padded by repeating the last pixel, and the steep flags (K,).
    """
    d = np.abs(p2 - p1)
    sx = np.where(p1[:, 0] < p2[:, 0], 1, -1)[:, None]
    sy = np.where(p1[:, 1] < p2[:, 1], 1, -1)[:, None]
    x_major = d[:, 0] > d[:, 1]
    major = np.where(x_major, d[:, 0], d[:, 1])[:, None]
    minor = np.where(x_major, d[:, 1], d[:, 0])[:, None]
    i = np.minimum(np.arange(int(major.max()) + 1)[None, :], major)  # (K, L)
    k = np.maximum(0, -((major // 2 - i * minor) // np.maximum(major, 1)))  # ceil division
    xm = x_major[:, None]
    xs = p1[:, 0:1] + sx * np.where(xm, i, k)
    ys = p1[:, 1:2] + sy * np.where(xm, k, i)
    return xs, ys, ~x_major


def thick_lines(canvas: Canvas, p1: np.ndarray, p2: np.ndarray, width: int, color: Color) -> None:
    """``pygame.draw.lines(surface, color, False, [p1[k], p2[k]], width)`` for width > 1.

    Each visited pixel grows into a run of ``width`` pixels across the line: horizontally when the
    line is steep (|dx| <= |dy|), vertically otherwise. Lines with an end off the canvas (a block
    squeezed into a wall) take pygame's clipped walk, which differs from the unclipped one.
    """
    p1, p2 = np.asarray(p1, dtype=np.int64).reshape(-1, 2), np.asarray(p2, dtype=np.int64).reshape(-1, 2)
    inside = ((p1 >= 0) & (p1 < canvas.size) & (p2 >= 0) & (p2 < canvas.size)).all(1)
    for (x1, y1), (x2, y2) in zip(p1[~inside].tolist(), p2[~inside].tolist()):
        rows, x0, x1_ = _clipped_thick_line(canvas.size, x1, y1, x2, y2, width)
        canvas.spans(np.array(rows, dtype=np.int64), np.array(x0, dtype=np.int64), np.array(x1_, dtype=np.int64), color)
    if not inside.any():
        return
    xs, ys, steep = _bresenham(p1[inside], p2[inside])
    lo, hi = (width - 1) // 2, width // 2
    if steep.any():
        canvas.spans(ys[steep], xs[steep] - lo, xs[steep] + hi, color)
    if (~steep).any():
        x, y = xs[~steep].ravel(), ys[~steep].ravel()
        offsets = np.arange(-lo, hi + 1)
        canvas.spans((y[:, None] + offsets).ravel(), np.repeat(x, offsets.size), np.repeat(x, offsets.size), color)


def _clip_line(size: int, x1: int, y1: int, x2: int, y2: int) -> tuple[int, int, int, int] | None:
    """pygame's ``clip_line`` (Liang-Barsky against [0, size] in both axes, ends rounded half away)."""
    p1, p3 = x1 - x2, y1 - y2
    p2, p4 = -p1, -p3
    q1, q2, q3, q4 = x1, size - x1, y1, size - y1
    if (p1 == 0 and q1 < 0) or (p2 == 0 and q2 < 0) or (p3 == 0 and q3 < 0) or (p4 == 0 and q4 < 0):
        return None
    nmax, pmin = 0.0, 1.0
    for p_lo, p_hi, q_lo, q_hi in ((p1, p2, q1, q2), (p3, p4, q3, q4)):
        if p_lo:
            r1, r2 = q_lo / p_lo, q_hi / p_hi
            if p_lo < 0:
                nmax, pmin = max(nmax, r1), min(pmin, r2)
            else:
                nmax, pmin = max(nmax, r2), min(pmin, r1)
    if nmax > pmin:
        return None

    def offset(v: float) -> int:
        return int(v - 0.5) if v < 0 else int(v + 0.5)

    return x1 + offset(p2 * nmax), y1 + offset(p4 * nmax), x1 + offset(p2 * pmin), y1 + offset(p4 * pmin)


def _clipped_thick_line(size: int, x1: int, y1: int, x2: int, y2: int, width: int) -> tuple[list, list, list]:
    """pygame's ``draw_line_width`` walk, transcribed, for a line that needs clipping: its spans.

    The error term is set up from the unclipped ends but the walk starts at the clipped one, then
    runs on past the clipped end while still on the canvas.
    """
    rows, lefts, rights = [], [], []

    def span(x: int, y: int, along_x: bool) -> None:  # ``width`` pixels across the line at (x, y)
        if along_x:
            rows.append(y), lefts.append(x - (width - 1) // 2), rights.append(x + width // 2)
        else:
            for yy in range(y - (width - 1) // 2, y + width // 2 + 1):
                rows.append(yy), lefts.append(x), rights.append(x)

    def on_canvas(x: int, y: int) -> bool:
        return 0 <= x < size and 0 <= y < size

    def sign(v: int, default: int) -> int:
        return 1 if v > 0 else (-1 if v < 0 else default)

    end_x, end_y = x2, y2
    xinc = abs(x1 - x2) <= abs(y1 - y2)
    dx, dy = abs(x2 - x1), abs(y2 - y1)
    sx, sy = (1 if x1 < x2 else -1), (1 if y1 < y2 else -1)
    err = dx // 2 if dx > dy else -(dy // 2)
    clipped = _clip_line(size, x1, y1, x2, y2)
    if clipped is None:
        return rows, lefts, rights
    x1, y1, x2, y2 = clipped

    def advance() -> None:
        nonlocal err, x1, y1
        e2 = err
        if e2 > -dx:
            err -= dy
            x1 += sx
        if e2 < dy:
            err += dx
            y1 += sy

    while sign(x1 - x2, sx) != sx or sign(y1 - y2, sy) != sy:
        span(x1, y1, xinc)
        advance()
    lo, hi = (width - 1) // 2, width // 2
    if xinc:
        while y1 != end_y and (on_canvas(x1 - lo, y1) or on_canvas(x1 + hi, y1)):
            span(x1, y1, True)
            advance()
    else:
        while x1 != end_x and (on_canvas(x1, y1 - lo) or on_canvas(x1, y1 + hi)):
            span(x1, y1, False)
            advance()
    span(x1, y1, xinc)
    return rows, lefts, rights


def fat_segments(canvas: Canvas, p1: np.ndarray, p2: np.ndarray, radius: float, color: Color) -> None:
    """Diffusion Policy's ``DrawOptions.draw_fat_segment`` for segments p1[k] -> p2[k] of one colour.

    A 2*radius-wide line, then a quad offset by the absolute values of the segment's direction
    components (so segments sloping one way get a skewed quad; that quirk is in the published
    frames and is kept), then round caps. Segments of one colour drawn back to back can be drawn
    together: every pixel gets the same colour whichever comes first.
    """
    p1, p2 = np.asarray(p1, dtype=np.int64).reshape(-1, 2), np.asarray(p2, dtype=np.int64).reshape(-1, 2)
    width = round(max(1, radius * 2))
    thick_lines(canvas, p1, p2, width, color)
    if width <= 2:
        return
    o = np.abs(p2 - p1)[:, ::-1]  # (|dy|, |dx|)
    length = np.sqrt((o * o).sum(1))
    keep = length > 0
    if not keep.any():
        return
    p1, p2, o = p1[keep], p2[keep], o[keep]
    o = np.round(o * (radius / length[keep])[:, None]).astype(np.int64)  # numpy rounds half to even, as Python
    quads = np.stack([p1 - o, p1 + o, p2 + o, p2 - o], axis=1)
    fill_polygons(canvas, quads, color)
    fill_circles(canvas, np.concatenate([p1, p2]), round(radius), color)


def aaline(canvas: Canvas, p1: tuple[float, float], p2: tuple[float, float], color: Color) -> None:
    """``pygame.draw.aaline`` with blending, in pygame's single-precision arithmetic.

    Used for the contact marks of the debug draw (a few pixels each), so plain Python.
    """
    f32 = np.float32
    one = f32(1)

    def plot(x: int, y: int, brightness: np.float32) -> None:
        px = canvas.get(x, y)
        if px is not None:
            px[:] = [int(brightness * f32(c) + (one - brightness) * f32(b)) for c, b in zip(color, px)]

    fx, fy, tx, ty = f32(p1[0]), f32(p1[1]), f32(p2[0]), f32(p2[1])
    dx, dy = tx - fx, ty - fy
    if abs(float(dx)) < 0.0001 and abs(float(dy)) < 0.0001:
        plot(int(np.floor(float(fx) + 0.5)), int(np.floor(float(fy) + 0.5)), one)
        return
    steep = abs(dx) < abs(dy)
    clip_lo, clip_hi = f32(-1), f32(canvas.size)  # one pixel beyond the canvas, on either axis
    if steep:
        fx, fy, tx, ty, dx, dy = fy, fx, ty, tx, dy, dx
    if dx < 0:
        fx, tx, fy, ty, dx, dy = tx, fx, ty, fy, -dx, -dy
    if tx <= clip_lo or fx >= clip_hi:
        return
    gradient = dy / dx
    if fx < clip_lo:  # clip to the canvas (plus a pixel) as pygame does, which moves the ends
        fy, fx = fy + gradient * (clip_lo - fx), clip_lo
    if tx > clip_hi:
        ty, tx = ty + gradient * (clip_hi - tx), clip_hi
    top, bottom = (fy, ty) if gradient > 0 else (ty, fy)
    if bottom <= clip_lo or top >= clip_hi:
        return
    if gradient > 0:
        if fy < clip_lo:
            fx, fy = fx + (clip_lo - fy) / gradient, clip_lo
        if ty > clip_hi:
            tx, ty = tx + (clip_hi - ty) / gradient, clip_hi
    else:
        if ty < clip_lo:
            tx, ty = tx + (clip_lo - ty) / gradient, clip_lo
        if fy > clip_hi:
            fx, fy = fx + (clip_hi - fy) / gradient, clip_hi

    def put(major: int, minor: int, brightness: np.float32) -> None:
        if steep:
            plot(minor, major, brightness)
        else:
            plot(major, minor, brightness)

    fy, ty = fy + one, ty + one  # pygame shifts down a pixel so (int) floors, and draws one higher
    x_start = int(fx)
    intersect = y_end = fy + gradient * (f32(x_start) - fx)
    if tx > clip_lo + one:
        gap = one + f32(x_start) - fx
        frac = y_end - f32(int(y_end))
        if f32(int(y_end)) < y_end:
            put(x_start, int(y_end), frac * gap)
        put(x_start, int(y_end) - 1, (one - frac) * gap)
        intersect = intersect + gradient
        x_start += 1
    x_end = int(np.ceil(float(tx)))
    if fx < clip_hi - one:
        y_end = ty + gradient * (f32(x_end) - tx)
        gap = one - f32(x_end) + tx
        frac = y_end - f32(int(y_end))
        if f32(int(y_end)) < y_end:
            put(x_end, int(y_end), frac * gap)
        put(x_end, int(y_end) - 1, (one - frac) * gap)
    for x in range(x_start, x_end):
        y = int(intersect)
        brightness = one - intersect + f32(y)
        put(x, y - 1, brightness)
        if f32(y) < intersect:
            put(x, y, one - brightness)
        intersect = intersect + gradient


# ---------------------------------------------------------------------------------------------
# cv2.resize (INTER_LINEAR) for uint8


@lru_cache(maxsize=None)
def resize_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and 11-bit fixed-point weights of OpenCV's bilinear resize along one axis."""
    scale = src / dst
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)
    f[s < 0], s[s < 0] = 0, 0
    edge = s >= src - 1
    f[edge], s[edge] = 0, src - 1
    w0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int32)
    w1 = np.rint(f * np.float32(2048)).astype(np.int32)
    return s, np.minimum(s + 1, src - 1), w0, w1


def resize_grid(src: int, dst: int) -> np.ndarray:
    """The sorted source rows (or columns) a ``src`` -> ``dst`` resize reads."""
    s0, s1, _, _ = resize_taps(src, dst)
    return np.unique(np.concatenate([s0, s1]))


def _taps(img: np.ndarray, stored: np.ndarray, s0: np.ndarray, s1: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The two source lines each output line blends, along ``axis`` of a canvas storing ``stored``."""
    if len(stored) == 2 * len(s0) and np.array_equal(stored[0::2], s0) and np.array_equal(stored[1::2], s1):
        pick = (slice(None),) * axis
        return img[(*pick, slice(0, None, 2))], img[(*pick, slice(1, None, 2))]  # interleaved: views
    index = np.searchsorted(stored, np.arange(stored.max() + 2))
    return np.take(img, index[s0], axis=axis), np.take(img, index[s1], axis=axis)


def resize(canvas: Canvas | np.ndarray, size: int) -> np.ndarray:
    """``cv2.resize(img, (size, size))`` (INTER_LINEAR) of a uint8 canvas, bit-exact: (size, size, 3).

    OpenCV blends along x with 11-bit integer weights, then along y with its SIMD fixed-point
    rounding ``((r0 >> 4) * b0 >> 16) + ((r1 >> 4) * b1 >> 16) + 2 >> 2``; both are reproduced.
    A ``Canvas`` needs to hold at least ``resize_grid(canvas.size, size)`` rows and columns.
    """
    if isinstance(canvas, np.ndarray):
        canvas = Canvas(canvas.shape[0], img=canvas)
    n = canvas.size
    if n == size and len(canvas.rows) == n and len(canvas.cols) == n:
        return canvas.img.copy()
    ys0, ys1, b0, b1 = resize_taps(n, size)
    xs0, xs1, a0, a1 = resize_taps(n, size)
    left, right = _taps(canvas.img, canvas.cols, xs0, xs1, axis=1)
    horiz = left * a0[None, :, None]  # uint8 x int32 -> int32 (rows, size, 3); in place from here on
    horiz += right * a1[None, :, None]
    horiz >>= 4
    top, bottom = _taps(horiz, canvas.rows, ys0, ys1, axis=0)
    out = top * b0[:, None, None]
    out >>= 16
    low = bottom * b1[:, None, None]
    low >>= 16
    out += low
    out += 2
    out >>= 2  # the weights sum to 2048, so this is already within 0..255
    return out.astype(np.uint8)
