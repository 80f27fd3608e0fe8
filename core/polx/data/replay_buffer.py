"""A replay buffer: zarr arrays in diffusion_policy's layout, so its datasets load unchanged.

::

    store.zarr/
      data/<key>          (N, ...) one array per key, all of length N = total steps
      meta/episode_ends   (E,) int64, exclusive end step of each episode (strictly increasing)

Stores are written as ``zarr_format=2`` (what diffusion_policy and its published datasets use),
chunked along time and blosc/zstd-compressed, every chunk written (even one of fill values).
Reading opens the store read-only: ``open`` never touches the files, so a shared dataset is safe.
``open`` also checks that every chunk file an array's shape calls for is there: zarr reads a
missing chunk as fill values (zeros), which would train silently on data that is not there. Small zarr reads are ~100x slower than numpy
indexing, so training code calls ``load()`` once and samples from memory.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numcodecs
import numpy as np
import zarr
from zarr.storage import LocalStore

from polx.data.staging import staged_dir
from polx.errors import DatasetError

_LAYOUT = "a zarr replay buffer (data/<key> arrays of equal length and meta/episode_ends)"
_COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
_CHUNK_BYTES = 4 << 20  # ~4 MiB of raw data per chunk: big enough to compress well, small to read
_MAX_CHUNK_STEPS = 4096
#: zarr 3 skips chunks that hold only fill values; written here, so a missing chunk always means damage
_WRITE_EVERY_CHUNK = {"write_empty_chunks": True}
#: group attribute of the stores this writer makes: every chunk is on disk, so one missing is damage
EVERY_CHUNK_ATTR = "polx_every_chunk_written"


def _check_chunks(where: str, name: str, arr: zarr.Array, every_chunk_written: bool) -> None:
    """Chunk files of ``arr`` that are missing (zarr reads them as the fill value): DatasetError in
    a store polx wrote (all its chunks were written, so this is damage); in another store a
    warning, because zarr's own default skips writing chunks that hold only the fill value."""
    missing = arr.nchunks - arr.nchunks_initialized
    if not missing:
        return
    what = (
        f"{where}: {name} is missing {missing} of its {arr.nchunks} chunk files (shape {tuple(arr.shape)}, chunks "
        f"{tuple(arr.chunks)}); zarr would read them as zeros"
    )
    if every_chunk_written:
        raise DatasetError(f"{what}. The store is damaged: copy or generate it again")
    warnings.warn(
        f"{what} (fill value {arr.fill_value!r}). A store written with zarr's defaults skips chunks holding only that "
        "value, which is harmless; a copy that stopped part way is not: copy the store again if in doubt",
        stacklevel=3,
    )


def _chunk_steps(step_shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Steps per chunk along time for an array whose one step has ``step_shape``."""
    step_bytes = int(np.prod(step_shape, dtype=np.int64)) * dtype.itemsize
    return int(np.clip(_CHUNK_BYTES // max(step_bytes, 1), 1, _MAX_CHUNK_STEPS))


class ReplayBuffer:
    """Episodes stored as ``data/<key>`` arrays plus ``meta/episode_ends``.

    Get one with ``ReplayBuffer.open(path)`` (read-only) or ``with ReplayBuffer.writer(path) as rb``.
    """

    def __init__(self, path: Path, root: zarr.Group, episode_ends: np.ndarray, writable: bool):
        self.path = path
        self._root = root
        self.episode_ends = episode_ends  # (E,) int64, exclusive ends
        self._writable = writable

    # -----------------------------------------------------------------------------------------
    # opening

    @classmethod
    def open(cls, path: str | Path) -> "ReplayBuffer":
        """Open an existing store read-only, checking its layout; DatasetError names what is wrong."""
        path = Path(path)
        where = f"dataset {str(path)!r}"
        if not path.exists():
            raise DatasetError(f"{where} does not exist; expected {_LAYOUT}")
        if not path.is_dir():
            raise DatasetError(f"{where} is a file, not a zarr store directory; expected {_LAYOUT}")
        try:
            root = zarr.open_group(store=LocalStore(path, read_only=True), mode="r")
        except (FileNotFoundError, ValueError, KeyError) as exc:  # zarr's "no group here"
            raise DatasetError(f"{where} is not a zarr store ({exc}); expected {_LAYOUT}") from None
        try:
            return cls._checked(path, root)
        except DatasetError:
            raise
        except Exception as exc:  # damaged metadata (.zarray, .zgroup): JSON or type errors from zarr
            raise DatasetError(
                f"{where}: its zarr metadata could not be read ({type(exc).__name__}: {exc}); is a .zarray or .zgroup file damaged?"
            ) from None

    @classmethod
    def _checked(cls, path: Path, root: zarr.Group) -> "ReplayBuffer":
        where = f"dataset {str(path)!r}"
        if not isinstance(root.get("meta/episode_ends"), zarr.Array):
            raise DatasetError(f"{where} has no meta/episode_ends array; expected {_LAYOUT}")
        every_chunk = bool(root.attrs.get(EVERY_CHUNK_ATTR, False))
        _check_chunks(where, "meta/episode_ends", root["meta/episode_ends"], every_chunk)
        ends = root["meta/episode_ends"][:]
        if ends.ndim != 1 or ends.dtype.kind not in "iu":
            raise DatasetError(
                f"{where}: meta/episode_ends has shape {ends.shape} and dtype {ends.dtype}; "
                "expected a 1-D integer array"
            )
        if len(ends) == 0:
            raise DatasetError(f"{where} is empty: meta/episode_ends lists no episodes")
        ends = ends.astype(np.int64)
        lengths = np.diff(ends, prepend=0)
        if (lengths <= 0).any():
            i = int(np.argmax(lengths <= 0))
            prev = int(ends[i - 1]) if i > 0 else 0
            raise DatasetError(
                f"{where}: meta/episode_ends is not strictly increasing (entry {i} is {int(ends[i])} after {prev}); "
                "expected exclusive episode end steps, each greater than the last and than 0"
            )

        data = root.get("data")
        keys = sorted(data.array_keys()) if isinstance(data, zarr.Group) else []
        if not keys:
            raise DatasetError(f"{where} has no arrays under data/; expected {_LAYOUT}")
        for key in keys:
            n = data[key].shape[0] if data[key].ndim else 0
            if n != ends[-1]:
                raise DatasetError(
                    f"{where}: data/{key} has {n} steps but meta/episode_ends[-1] is {int(ends[-1])}; "
                    "expected every data array to have exactly episode_ends[-1] steps"
                )
        for key in keys:  # after the layout checks: a wrong length is the clearer message
            _check_chunks(where, f"data/{key}", data[key], every_chunk)
        return cls(path, root, ends, writable=False)

    @classmethod
    @contextmanager
    def writer(cls, path: str | Path) -> Iterator["ReplayBuffer"]:
        """A new, writable, empty buffer at ``path``, published only if the block succeeds.

        Episodes are written to a hidden sibling directory that is renamed to ``path`` on success
        and removed on error, so ``path`` never holds a half-written dataset.
        """
        with staged_dir(path) as tmp:
            root = zarr.open_group(store=LocalStore(tmp), mode="w-", zarr_format=2)
            root.attrs[EVERY_CHUNK_ATTR] = True
            root.require_group("data")
            root.create_array(
                "meta/episode_ends", shape=(0,), chunks=(_MAX_CHUNK_STEPS,), dtype="int64", compressors=_COMPRESSOR,
                config=_WRITE_EVERY_CHUNK,
            )
            rb = cls(Path(path), root, np.zeros(0, dtype=np.int64), writable=True)
            yield rb
            if rb.n_episodes == 0:
                raise DatasetError(f"dataset {str(path)!r}: no episodes were added (nothing was written)")

    # -----------------------------------------------------------------------------------------
    # reading

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.episode_ends, prepend=0)

    def keys(self) -> list[str]:
        """Names of the ``data/<key>`` arrays."""
        return sorted(self._root["data"].array_keys())

    def array_info(self, key: str) -> tuple[tuple[int, ...], np.dtype, tuple[int, ...]]:
        """(shape, dtype, chunks) of ``data/<key>`` without reading it."""
        arr = self._array(key)
        return tuple(arr.shape), np.dtype(arr.dtype), tuple(arr.chunks)

    def load(self, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """Whole arrays read into memory (all keys by default)."""
        return {key: self._read(key, slice(None)) for key in (self.keys() if keys is None else keys)}

    def get_episode(self, i: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """Episode ``i``'s steps of each array (all keys by default); read from the store."""
        if not -self.n_episodes <= i < self.n_episodes:
            raise IndexError(f"episode {i} out of range for {self.n_episodes} episodes")
        i %= self.n_episodes
        start, end = (int(self.episode_ends[i - 1]) if i > 0 else 0), int(self.episode_ends[i])
        return {key: self._read(key, slice(start, end)) for key in (self.keys() if keys is None else keys)}

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        """Steps ``[start, stop)`` of ``data/<key>``, read from the store."""
        return self._read(key, slice(start, stop))

    def _read(self, key: str, steps: slice) -> np.ndarray:
        arr = self._array(key)
        try:
            return arr[steps]
        except Exception as exc:  # a damaged chunk file: say which array, not just the codec's complaint
            where = f"dataset {str(self.path)!r}"
            raise DatasetError(f"{where}: data/{key} could not be read ({exc}); is the store damaged?") from exc

    def _array(self, key: str) -> zarr.Array:
        arr = self._root["data"].get(key)
        if not isinstance(arr, zarr.Array):
            raise DatasetError(
                f"dataset {str(self.path)!r} has no data/{key} array; it has: {', '.join(self.keys()) or 'none'}"
            )
        return arr

    # -----------------------------------------------------------------------------------------
    # writing

    def add_episode(self, data: dict[str, np.ndarray]) -> None:
        """Append one episode: ``{key: (T, ...)}``, every array with the same T > 0."""
        if not self._writable:
            raise DatasetError(f"dataset {str(self.path)!r} is open read-only; use ReplayBuffer.writer(path) to write")
        data = {key: np.asarray(value) for key, value in data.items()}
        lengths = {key: (value.shape[0] if value.ndim else 0) for key, value in data.items()}
        if not data or len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError(f"add_episode needs arrays of one common length > 0; got lengths {lengths}")
        if self.n_episodes:
            if set(data) != set(self.keys()):
                raise ValueError(f"add_episode got keys {sorted(data)}; this buffer's episodes have {self.keys()}")
            for key, value in data.items():
                shape, dtype, _ = self.array_info(key)
                if value.shape[1:] != shape[1:] or value.dtype != dtype:
                    raise ValueError(
                        f"add_episode: {key} has per-step shape {value.shape[1:]} and dtype {value.dtype}; "
                        f"earlier episodes have {shape[1:]} and {dtype}"
                    )
        else:
            for key, value in data.items():
                if "/" in key or not key:
                    raise ValueError(f"add_episode: key {key!r} is not a valid array name (non-empty, no '/')")
                self._root["data"].create_array(
                    key,
                    shape=(0, *value.shape[1:]),
                    chunks=(_chunk_steps(value.shape[1:], value.dtype), *value.shape[1:]),
                    dtype=value.dtype,
                    compressors=_COMPRESSOR,
                    config=_WRITE_EVERY_CHUNK,
                )

        start = self.n_steps
        end = start + next(iter(lengths.values()))
        for key, value in data.items():
            # an array opened again forgets its creation config: ask again for every chunk to be
            # written (zarr skips all-fill-value chunks by default, which read back as missing)
            arr = self._array(key).with_config(_WRITE_EVERY_CHUNK)
            arr.resize((end, *arr.shape[1:]))
            arr[start:end] = value
        ends = self._root["meta/episode_ends"].with_config(_WRITE_EVERY_CHUNK)
        ends.resize((self.n_episodes + 1,))
        ends[-1] = end
        self.episode_ends = np.append(self.episode_ends, np.int64(end))

    def __repr__(self) -> str:
        return f"ReplayBuffer({str(self.path)!r}, episodes={self.n_episodes}, steps={self.n_steps}, keys={self.keys()})"


def describe(rb: ReplayBuffer) -> str:
    """What ``polx data info`` prints: size, episode-length stats, and each array's layout."""
    lengths = rb.episode_lengths
    lines = [
        f"dataset: {rb.path}",
        f"episodes: {rb.n_episodes}",
        f"steps: {rb.n_steps}",
        f"episode length: min {int(lengths.min())}, mean {lengths.mean():.1f}, max {int(lengths.max())}",
        "arrays:",
    ]
    rows = []
    for key in rb.keys():
        shape, dtype, chunks = rb.array_info(key)
        rows.append((f"data/{key}", f"shape {shape}", str(dtype), f"chunks {chunks}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    return "\n".join(lines)
