"""The ``hdf5`` dataset format: ACT / RoboIMI episode directories, one ``episode_N.hdf5`` per episode.

::

    dataset_dir/
      episode_0.hdf5
        /action                      (T, A)
        /observations/qpos           (T, D)      -> key "qpos" (any /observations/<name> -> "<name>")
        /observations/images/<cam>   (T, H, W, C) uint8 -> key "<cam>"
      episode_1.hdf5 ...

Episodes are ordered by N (numerically). Opening checks every file: readable HDF5, the same keys
in each, every array of a file as long as its ``/action``, and one per-step shape and dtype per
key across files, and finite values below ±1e30 in every low-dimensional floating-point array (a file whose
bytes were overwritten reads as NaN there, not as an HDF5 error); each problem names the file and the
key. A gap in the numbering (episode_3 missing between 2 and 4) is warned about by name. Files stay open read-only while the
reader lives, and ``read`` touches only the episodes a step range covers. ACT's JPEG-compressed
variant (``compress`` attribute true) is refused: decompress it first.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Iterable

import attrs
import numpy as np

from polx.data.formats import episode_spans, is_image
from polx.data.staging import staged_dir
from polx.errors import DatasetError

HELP = "ACT/RoboIMI HDF5 episode directory (episode_N.hdf5: /action, /observations/qpos, /observations/images/<cam>)"
_EPISODE = re.compile(r"^episode_(\d+)\.hdf5$")
#: a low-dim value at or beyond this magnitude is not a measurement: overwritten bytes read as such
IMPLAUSIBLE = 1e30


@attrs.define(frozen=True, kw_only=True)
class Hdf5FormatConfig:
    """No options: the layout says everything."""


def episode_files(path: Path) -> list[Path]:
    """``episode_N.hdf5`` files of a directory, ordered by N."""
    found = [(int(m.group(1)), p) for p in Path(path).iterdir() if (m := _EPISODE.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def missing_episodes(files: list[Path]) -> list[str]:
    """The ``episode_N.hdf5`` names absent between the lowest and the highest N of ``files``."""
    numbers = {int(_EPISODE.match(p.name).group(1)) for p in files}
    return [f"episode_{n}.hdf5" for n in range(min(numbers), max(numbers) + 1) if n not in numbers] if numbers else []


def _datasets(f) -> dict[str, str]:
    """Reader key -> HDF5 path of every array in one episode file."""
    import h5py

    out: dict[str, str] = {}

    def add(key: str, h5path: str) -> None:
        if key in out:
            raise DatasetError(f"{f.filename}: {h5path} and {out[key]} would both be key {key!r}; rename one")
        out[key] = h5path

    for name, node in f.items():
        if isinstance(node, h5py.Dataset):
            add(name, f"/{name}")
    obs = f.get("observations")
    if isinstance(obs, h5py.Group):
        for name, node in obs.items():
            if isinstance(node, h5py.Dataset):
                add(name, f"/observations/{name}")
        images = obs.get("images")
        if isinstance(images, h5py.Group):
            for name, node in images.items():
                if isinstance(node, h5py.Dataset):
                    add(name, f"/observations/images/{name}")
    return out


class Hdf5Reader:
    """``DatasetReader`` over an episode directory, validated on open."""

    format = "hdf5"

    def __init__(self, path: Path):
        import h5py

        self.path = Path(path)
        where = f"dataset {str(self.path)!r}"
        if not self.path.is_dir():
            raise DatasetError(f"{where} is not a directory; expected {HELP}")
        self.files = episode_files(self.path)
        if not self.files:
            raise DatasetError(f"{where} holds no episode_N.hdf5 files; expected {HELP}")
        missing = missing_episodes(self.files)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            warnings.warn(f"{where}: {shown} missing from the numbering; reading the {len(self.files)} episodes present", UserWarning, stacklevel=2)
        self._handles, self._pid = [], os.getpid()
        lengths, layout, paths = [], None, None
        for file in self.files:
            try:
                f = h5py.File(file, "r")
            except OSError as exc:
                raise DatasetError(f"{file}: not a readable HDF5 file ({exc}); is it damaged or truncated?") from None
            self._handles.append(f)
            try:
                compressed, mine = f.attrs.get("compress", False), _datasets(f)
            except DatasetError:
                raise
            except Exception as exc:  # damaged object headers or attributes: h5py raises RuntimeError, KeyError...
                raise DatasetError(f"{file}: its HDF5 structure could not be read ({type(exc).__name__}: {exc}); is the file damaged?") from None
            if compressed:
                raise DatasetError(f"{file}: images are JPEG-compressed (attribute compress=True); polx reads raw frames only, decompress them first")
            if "action" not in mine:
                raise DatasetError(f"{file}: no /action array (it has {', '.join(sorted(mine)) or 'nothing'}); expected {HELP}")
            if paths is not None and set(mine) != set(paths):
                raise DatasetError(
                    f"{file}: keys {sorted(mine)} differ from {self.files[0].name}'s {sorted(paths)}; every episode needs the same arrays"
                )
            paths = paths or mine
            n = self._shape(f, file, "/action")[0]
            if n == 0:
                raise DatasetError(f"{file}: /action has no steps; remove the empty episode")
            this = {}
            for key, h5path in paths.items():
                shape = self._shape(f, file, h5path)
                if not shape or shape[0] != n:
                    raise DatasetError(f"{file}: {h5path} has {shape[0] if shape else 0} steps but /action has {n}; every array of an episode needs one row per step")
                this[key] = (shape[1:], np.dtype(f[h5path].dtype))
                if this[key][1].kind == "f" and len(shape) <= 2:  # low-dim: (T,) or (T, D); frames are not read here
                    self._check_finite(f, file, h5path)
            if layout is not None:
                for key, (step, dtype) in this.items():
                    if (step, dtype) != layout[key]:
                        raise DatasetError(
                            f"{file}: {paths[key]} has per-step shape {step} and dtype {dtype}, but {self.files[0].name} has "
                            f"{layout[key][0]} and {layout[key][1]}; every episode's frames need one size (resize them first)"
                        )
            layout = layout or this
            lengths.append(n)
        self._paths, self._layout = paths, layout
        self.episode_ends = np.cumsum(lengths).astype(np.int64)

    @staticmethod
    def _shape(f, file: Path, h5path: str) -> tuple[int, ...]:
        try:
            return tuple(f[h5path].shape)
        except Exception as exc:  # a damaged object header
            raise DatasetError(f"{file}: {h5path} could not be read ({exc}); is the file damaged?") from None

    @staticmethod
    def _check_finite(f, file: Path, h5path: str) -> None:
        """Low-dim float arrays are small; reading them whole on open catches overwritten bytes."""
        try:
            values = f[h5path][()]
        except Exception as exc:  # a damaged data block
            raise DatasetError(f"{file}: {h5path} could not be read ({exc}); is the file damaged?") from None
        with np.errstate(invalid="ignore"):  # signalling NaNs in overwritten bytes warn on the cast
            rows = values.reshape(len(values), -1).astype(np.float64) if values.ndim else values.reshape(1, 1).astype(np.float64)
            bad = ~(np.abs(rows) < IMPLAUSIBLE).all(axis=1)  # NaN compares False: caught too
        if bad.any():
            raise DatasetError(
                f"{file}: {h5path} holds NaN, inf or values beyond ±{IMPLAUSIBLE:.0e} from step {int(np.argmax(bad))} "
                f"({int(bad.sum())} of {len(bad)} steps); is the file damaged? expected finite numbers of a robot's scale "
                "(re-record or remove the episode)"
            )

    def keys(self) -> list[str]:
        return sorted(self._paths)

    def array_info(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        step, dtype = self._layout[key]
        return (int(self.episode_ends[-1]), *step), dtype

    def _file(self, e: int):
        """Episode ``e``'s open file, reopened in a process that did not open it: HDF5 handles are
        not fork-safe (DataLoader workers) and cannot be pickled (spawned workers)."""
        import h5py

        if self._pid != os.getpid():
            self._handles, self._pid = [None] * len(self.files), os.getpid()
        if self._handles[e] is None:
            self._handles[e] = h5py.File(self.files[e], "r")
        return self._handles[e]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": [None] * len(self.files), "_pid": None}

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        step, dtype = self._layout[key]
        stop = min(stop, int(self.episode_ends[-1]))
        out = np.empty((max(0, stop - start), *step), dtype=dtype)
        for e, lo, a, b in episode_spans(self.episode_ends, start, stop):
            try:
                out[a - start : b - start] = self._file(e)[self._paths[key]][a - lo : b - lo]
            except Exception as exc:  # a damaged data block
                raise DatasetError(f"{self.files[e]}: {self._paths[key]} could not be read ({exc}); is the file damaged?") from None
        return out

    def source(self, key: str) -> str:
        return self._paths[key]

    def close(self) -> None:
        for f in self._handles:
            if f is not None:
                f.close()


class Hdf5Format:
    name = "hdf5"

    def __init__(self, config: Hdf5FormatConfig | None = None):
        self.config = config

    def detect(self, path: Path) -> bool:
        path = Path(path)
        return path.is_dir() and any(_EPISODE.match(p.name) for p in path.iterdir())

    def open(self, path: Path) -> Hdf5Reader:
        return Hdf5Reader(path)

    def write(self, out: Path, episodes: Iterable[dict[str, np.ndarray]], meta: dict | None = None) -> int:
        return write_hdf5_episodes(out, episodes, meta)


def hdf5_path(key: str, shape: tuple[int, ...], dtype: np.dtype) -> str:
    """Where a key goes in an episode file: images under /observations/images, action at the root."""
    if key == "action":
        return "/action"
    return f"/observations/images/{key}" if is_image(shape, dtype) else f"/observations/{key}"


def write_hdf5_episodes(out: Path, episodes: Iterable[dict[str, np.ndarray]], attrs_: dict | None = None) -> int:
    """Write ``{key: (T, ...)}`` episodes as ``out/episode_N.hdf5``, atomically; returns the count.
    ``attrs_`` become every file's attributes (ACT's ``sim``: set for generated data only).

    The files are written into a hidden sibling directory renamed to ``out`` only when every
    episode is in, so ``out`` never holds a partial dataset. Each episode needs ``action``.
    """
    import h5py

    with staged_dir(out) as tmp:
        tmp.mkdir()
        n = 0
        for n, episode in enumerate(episodes, start=1):
            if "action" not in episode:
                raise DatasetError(f"episode {n - 1} has no 'action' array; the hdf5 layout needs one (it has {sorted(episode)})")
            # built in memory, then written with Python's own I/O: the HDF5 library fails on a full
            # disk with errors that name no path and can crash the interpreter at exit (rc 139)
            image = io.BytesIO()
            with h5py.File(image, "w") as f:
                for key, value in (attrs_ or {}).items():
                    f.attrs[key] = value
                for key, value in episode.items():
                    value = np.asarray(value)
                    f.create_dataset(hdf5_path(key, value.shape, value.dtype), data=value)
            with open(tmp / f"episode_{n - 1}.hdf5", "wb") as out_file:
                out_file.write(image.getbuffer())
            del image
        if n == 0:
            raise DatasetError(f"dataset {str(out)!r}: no episodes were given (nothing was written)")
        return n
