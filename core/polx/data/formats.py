"""Dataset formats: the ``dataset`` component kind, format detection, and what works on any reader.

A format plugin registers ``register("dataset", NAME, ConfigCls, factory, help=...)``; the
factory, called with the config, returns a ``DatasetFormat`` (``polx.components``): ``detect(path)``
says cheaply whether a path looks like this format, ``open(path)`` opens it read-only, validates
it and returns a ``DatasetReader``. Core's own formats (``zarr``, ``hdf5``, ``lerobot``) are
registered the same way, from ``polx.builtin``.

A reader is a set of equal-length step arrays split into episodes by ``episode_ends``; everything
else (whole-array loads, per-episode reads, lazy arrays, ``polx data info``) is built here on its
four members, so a new format only has to read.
"""

from __future__ import annotations

import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from polx.errors import DatasetError


def is_image(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """A camera key as stored by polx: a uint8 (N, H, W, C) array, C in 1, 3, 4 (``polx data info`` also lists float frames)."""
    return np.dtype(dtype) == np.uint8 and len(shape) == 4 and shape[-1] in (1, 3, 4)


def is_float_frames(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Camera frames stored as floats (Diffusion Policy's PushT ``img``, float32 0..255): a float
    (N, H, W, C) array, C in 1, 3, 4, H and W at least 8. Training without an env reads them as
    a camera, cast to uint8 (``polx.data.offline_env``)."""
    return np.dtype(dtype).kind == "f" and len(shape) == 4 and shape[-1] in (1, 3, 4) and min(shape[1:3]) >= 8


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def missing_path_message(path: Path | str) -> str:
    """"dataset P does not exist", with the fetch command when P looks like a Hugging Face hub id (polx never downloads)."""
    text = f"dataset {str(path)!r} does not exist"
    if _REPO_ID.match(str(path)):
        text += (
            "; it looks like a Hugging Face hub id, and polx never downloads: fetch it first "
            f"(huggingface-cli download --repo-type dataset {path} --local-dir DIR) and pass DIR"
        )
    return text


def dataset_formats(registry: Any, skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """Every registered format, name -> built ``DatasetFormat`` (default config).

    With ``skipped`` (a dict), a format whose factory raises is left out and recorded there
    (name -> why) instead of failing every dataset command."""
    out = {}
    for name in registry.names("dataset"):
        comp = registry.get("dataset", name)
        if skipped is None:
            out[name] = comp.build(comp.config_cls())
            continue
        try:
            out[name] = comp.build(comp.config_cls())
        except Exception as exc:  # one plugin's format must not take the others down
            skipped[name] = f"{_origin(registry, name)}: building it raised {type(exc).__name__}: {exc}"
    return out


def _origin(registry: Any, name: str) -> str:
    comp = registry.get("dataset", name)
    return comp.describe() if hasattr(comp, "describe") else f"dataset format {name!r}"


def open_dataset(path: str | Path, fmt: str | None = None, *, registry: Any) -> Any:
    """Open ``path`` read-only with format ``fmt``, or the one format whose ``detect`` claims it.

    DatasetError (exit 2) when the path is missing, no format (or more than one) claims it, or
    the chosen format finds it unreadable; the message names the path and the formats tried.
    A format whose ``detect`` raises is skipped (and named), like a broken plugin. The reader is
    checked (``check_reader``) before it is returned. ``registry`` is the loaded plugins'
    (``polx.plugins.load_plugins().registry``): formats are components like any other.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(missing_path_message(path))
    if fmt is not None:
        formats = dataset_formats(registry)
        if fmt not in formats:
            raise DatasetError(f"unknown dataset format {fmt!r} (--dataset-format / data.format); available: {', '.join(formats)}")
        return _checked(registry, fmt, formats[fmt].open(path))
    skipped: dict[str, str] = {}
    formats = dataset_formats(registry, skipped)
    claimed = []
    for name, f in formats.items():
        try:
            if f.detect(path):
                claimed.append(name)
        except Exception as exc:  # a broken detect must not hide every other format's answer
            skipped[name] = f"{_origin(registry, name)}: detect raised {type(exc).__name__}: {exc}"
    for why in skipped.values():
        print(f"warning: {why}; it was skipped", file=sys.stderr)
    if len(claimed) == 1:
        return _checked(registry, claimed[0], formats[claimed[0]].open(path))
    tried = "; ".join(f"{name}: {registry.get('dataset', name).help}" for name in formats if name not in skipped)
    if not claimed:
        broken = "".join(f"; skipped {why}" for why in skipped.values())
        raise DatasetError(
            f"dataset {str(path)!r} is in no format polx recognises; tried {tried}{broken}. "
            "Pass --dataset-format NAME to open it as one of them and see what is wrong"
        )
    raise DatasetError(f"dataset {str(path)!r} looks like more than one format ({', '.join(claimed)}); choose with --dataset-format")


def _checked(registry: Any, name: str, reader: Any) -> Any:
    """``check_reader`` at open: a plugin's reader is also read (one step per key); core's own formats
    validate their files when they open and are held to the rest by their tests, so an array the
    run never uses is never read (a damaged one does not stop a run that does not need it)."""
    from polx.components import CORE_PLUGIN_NAME

    return check_reader(reader, _origin(registry, name), read=registry.get("dataset", name).plugin != CORE_PLUGIN_NAME)


def check_reader(reader: Any, origin: str = "", read: bool = True) -> Any:
    """``reader`` if it keeps the ``DatasetReader`` contract where it is cheap to see, else ``DatasetError``.

    ``episode_ends`` must be exclusive end steps (strictly increasing, the last one every array's
    length), not episode lengths; with ``read``, ``array_info`` must agree with what ``read``
    returns for each key's first step (shape and dtype), which reads one step per key.
    """
    where = f"dataset {str(getattr(reader, 'path', '?'))!r}" + (f" ({origin})" if origin else "")
    ends = np.asarray(reader.episode_ends)
    if ends.ndim != 1 or len(ends) == 0 or not np.issubdtype(ends.dtype, np.integer):
        raise DatasetError(f"{where}: episode_ends must be a non-empty 1-D integer array; got {ends.dtype} shape {ends.shape}")
    keys = list(reader.keys())
    if not keys:
        raise DatasetError(f"{where}: the reader has no arrays (keys() is empty)")
    lengths = {}
    for key in keys:
        shape, dtype = reader.array_info(key)
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        lengths[key] = shape[0] if shape else 0
        if lengths[key] == 0:
            raise DatasetError(f"{where}: array_info({key!r}) gives shape {shape}; a step array has shape (N, ...) with N > 0")
        if not read:
            continue
        got = np.asarray(reader.read(key, 0, 1))
        if got.shape != (1, *shape[1:]) or got.dtype != dtype:
            raise DatasetError(
                f"{where}: array_info({key!r}) says {shape} {dtype}, but read({key!r}, 0, 1) returned {got.shape} {got.dtype}; "
                f"expected {(1, *shape[1:])} {dtype}"
            )
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise DatasetError(f"{where}: arrays of different lengths ({listed}); every array has one row per step")
    n = next(iter(lengths.values()))
    increasing = bool(np.all(np.diff(ends) > 0)) and int(ends[0]) > 0
    if not increasing or int(ends[-1]) != n:
        hint = ""
        if int(ends.sum()) == n or not increasing:
            hint = " (episode_ends holds each episode's exclusive end step, cumulative: lengths [3, 2] are ends [3, 5])"
        raise DatasetError(
            f"{where}: episode_ends {_short(ends)} must be strictly increasing and end at the arrays' length {n}{hint}"
        )
    return reader


def _short(values: np.ndarray) -> str:
    items = [int(v) for v in values[:6]]
    return str(items)[:-1] + (", ...]" if len(values) > 6 else "]")


# ---------------------------------------------------------------------------------------------
# built on any reader


def episode_bounds(reader: Any, i: int) -> tuple[int, int]:
    ends = reader.episode_ends
    if not -len(ends) <= i < len(ends):
        raise IndexError(f"episode {i} out of range for {len(ends)} episodes")
    i %= len(ends)
    return (int(ends[i - 1]) if i > 0 else 0), int(ends[i])


def episode_spans(episode_ends: np.ndarray, start: int, stop: int):
    """``(episode, its first step, a, b)`` for each episode holding steps of ``[start, stop)``: its
    steps ``a..b`` (global indices). Readers that store one file or video per episode read by it."""
    first = int(np.searchsorted(episode_ends, start, side="right"))
    for e in range(first, len(episode_ends)):
        lo = int(episode_ends[e - 1]) if e else 0
        if lo >= stop:
            break
        yield e, lo, max(start, lo), min(stop, int(episode_ends[e]))


def load_arrays(reader: Any, keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """Whole arrays in memory (all keys by default)."""
    return {key: reader.read(key, 0, int(reader.episode_ends[-1])) for key in (reader.keys() if keys is None else keys)}


def get_episode(reader: Any, i: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """Episode ``i``'s steps of each array (all keys by default)."""
    start, end = episode_bounds(reader, i)
    return {key: reader.read(key, start, end) for key in (reader.keys() if keys is None else keys)}


def require_key(reader: Any, key: str) -> None:
    if key not in reader.keys():
        raise DatasetError(f"dataset {str(reader.path)!r} has no {key!r} array; it has: {', '.join(reader.keys()) or 'none'}")


class LazyArray:
    """One key of a reader as an array-like: shape, dtype, ``len`` and slicing read only what is asked.

    ``np.asarray(lazy)`` reads the whole array. Integer-array indexing reads the span it covers.
    """

    def __init__(self, reader: Any, key: str):
        require_key(reader, key)
        self.reader, self.key = reader, key
        shape, dtype = reader.array_info(key)
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.reader.read(self.key, 0, self.shape[0])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, index: Any) -> np.ndarray:
        first, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        if isinstance(first, slice):
            start, stop, step = first.indices(self.shape[0])
            block = self.reader.read(self.key, start, max(start, stop)) if step > 0 else np.asarray(self)[first]
            out = block[::step] if step > 0 else block
        elif isinstance(first, (int, np.integer)):
            i = int(first) % self.shape[0]
            out = self.reader.read(self.key, i, i + 1)[0]
        else:
            idx = np.asarray(first)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            idx = idx % self.shape[0] if idx.size else idx.astype(np.int64)
            lo, hi = (int(idx.min()), int(idx.max()) + 1) if idx.size else (0, 0)
            out = self.reader.read(self.key, lo, hi)[idx - lo]
        return out[rest] if rest else out


DEFAULT_BLOCK = 64  # steps per CachedFrames block when the reader has no chunking of its own


class CachedFrames:
    """A reader's camera key as a uint8 (N, H, W, C) array-like that never holds the whole array.

    Indexing (ints, slices, integer arrays of any shape, as ``PolicyDataset`` gathers) reads
    blocks of ``block`` steps, optionally through ``transform`` (a resize or a cast, say,
    returning frames of ``step_shape`` and ``dtype``), and keeps them in a least-recently-used
    cache bounded by ``max_bytes``: how a dataset larger than memory trains. The block defaults
    to the reader's storage chunk along time (optional ``reader.chunk_steps(key)``: zarr's), so a
    chunk is decompressed once per cache fill, not once per window; 64 steps otherwise.
    """

    def __init__(
        self, reader: Any, key: str, max_bytes: int, *, block: int | None = None, transform: Any = None,
        step_shape: tuple | None = None, dtype: Any = None,
    ):  # fmt: skip
        require_key(reader, key)
        shape, stored = reader.array_info(key)
        if block is None:
            chunk = getattr(reader, "chunk_steps", None)
            block = int(chunk(key)) if callable(chunk) else DEFAULT_BLOCK
        self.reader, self.key, self.block, self.transform = reader, key, max(1, block), transform
        self.shape = (shape[0], *(step_shape or shape[1:]))
        self.dtype, self.ndim = np.dtype(stored if dtype is None else dtype), len(self.shape)
        self.max_bytes, self.bytes, self._blocks = max_bytes, 0, OrderedDict()

    def __len__(self) -> int:
        return self.shape[0]

    def _get_block(self, b: int) -> np.ndarray:
        if b in self._blocks:
            self._blocks.move_to_end(b)
            return self._blocks[b]
        data = self.reader.read(self.key, b * self.block, min((b + 1) * self.block, self.shape[0]))
        data = data if self.transform is None else self.transform(data)
        if data.nbytes <= self.max_bytes:
            self._blocks[b] = data
            self.bytes += data.nbytes
            while self.bytes > self.max_bytes:
                self.bytes -= self._blocks.popitem(last=False)[1].nbytes
        return data

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(*index.indices(self.shape[0]))
        idx = np.asarray(index, dtype=np.int64) % max(self.shape[0], 1)
        flat = idx.ravel()
        out = np.empty((len(flat), *self.shape[1:]), dtype=self.dtype)
        blocks = flat // self.block
        for b in np.unique(blocks):
            where = blocks == b
            out[where] = self._get_block(int(b))[flat[where] - int(b) * self.block]
        return out.reshape(*idx.shape, *self.shape[1:])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(self.shape[0])]
        return out if dtype is None else out.astype(dtype, copy=False)


def source(reader: Any, key: str) -> str:
    """Where ``key`` lives in the files (``data/<key>``, an HDF5 path, a LeRobot feature); optional ``reader.source``."""
    where = getattr(reader, "source", None)
    return where(key) if callable(where) else key


def info_dict(reader: Any) -> dict:
    """What ``polx data info --json`` prints: format, sizes, cameras with image sizes, every array."""
    lengths = np.diff(reader.episode_ends, prepend=0)
    arrays, cameras = {}, {}
    for key in reader.keys():
        shape, dtype = reader.array_info(key)
        arrays[key] = {"shape": list(shape), "dtype": str(np.dtype(dtype)), "stored_as": source(reader, key)}
        if is_image(shape, dtype) or is_float_frames(shape, dtype):
            cameras[key] = {"height": int(shape[1]), "width": int(shape[2]), "channels": int(shape[3])}
    return {
        "path": str(reader.path),
        "format": reader.format,
        "episodes": int(len(lengths)),
        "steps": int(reader.episode_ends[-1]),
        "episode_length": {"min": int(lengths.min()), "mean": float(lengths.mean()), "max": int(lengths.max())},
        "cameras": cameras,
        "arrays": arrays,
    }


def describe_reader(reader: Any) -> str:
    """What ``polx data info`` prints: format, size, episode-length stats, cameras and each array."""
    info = info_dict(reader)
    length = info["episode_length"]
    lines = [
        f"dataset: {info['path']}",
        f"format: {info['format']}",
        f"episodes: {info['episodes']}",
        f"steps: {info['steps']}",
        f"episode length: min {length['min']}, mean {length['mean']:.1f}, max {length['max']}",
        "cameras: " + (", ".join(f"{k} {c['height']}x{c['width']}x{c['channels']}" for k, c in info["cameras"].items()) or "none"),
        "arrays:",
    ]
    rows = [(key, f"shape {tuple(a['shape'])}", a["dtype"], f"from {a['stored_as']}") for key, a in info["arrays"].items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3] for row in rows]
    return "\n".join(lines)
