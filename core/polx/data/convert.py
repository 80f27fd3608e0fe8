"""``polx data convert``: any readable dataset -> a new one in another format, episode by episode.

Every array is copied exactly (same keys, shapes, dtypes and values), except camera frames
written as video (``video=True``, the LeRobot writer's mp4: lossy); the writers are atomic, so
an interrupted or failed conversion leaves nothing at the output path. Only one episode is in
memory at a time (plus the reader's bounded frame cache).
"""

from __future__ import annotations

import errno
import inspect
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from polx.data.formats import dataset_formats, get_episode, is_image, open_dataset
from polx.errors import DatasetError, PolxError, UserInputError


def writable_formats(registry: Any) -> list[str]:
    """Registered formats that can write (have a ``write(out, episodes)`` method)."""
    return [name for name, f in dataset_formats(registry).items() if callable(getattr(f, "write", None))]


def convert_dataset(
    src: Path, out: Path, to: str, *, registry: Any, src_format: str | None = None, progress: bool = True, meta: dict | None = None,
    video: bool = False,
) -> dict:
    """Copy ``src`` into a new dataset at ``out`` in format ``to``; returns a summary dict.

    ``meta``: dataset-level attributes for writers that keep them (``write(out, episodes, meta=...)``:
    the hdf5 writer's file attributes, ``sim=True`` for generated data); none by default, since a
    converted dataset's origin is not known. ``video``: camera frames as video, for writers that
    take ``write(out, episodes, video=True)`` (lerobot); refused for the others."""
    from polx.base.paths import check_writable_dir

    formats = dataset_formats(registry)
    if to not in writable_formats(registry):
        raise UserInputError(f"--to {to!r} is not a format polx can write; choose one of: {', '.join(writable_formats(registry))}")
    _check_video(video, to, registry)
    out = Path(out)
    if out.exists():
        raise UserInputError(f"OUT {str(out)!r} already exists; choose a new path (nothing was written)")
    check_writable_dir(out.parent, "OUT's parent")
    reader = open_dataset(src, src_format, registry=registry)
    if video and not any(is_image(*reader.array_info(key)) for key in reader.keys()):
        kinds = ", ".join(f"{key} {reader.array_info(key)[1]} {tuple(reader.array_info(key)[0][1:])}" for key in reader.keys())
        raise UserInputError(f"--video: {str(src)!r} has no camera arrays (uint8, (H, W, C) per step) to store as video; it has {kinds} (nothing was written)")
    n = len(reader.episode_ends)
    episodes = (get_episode(reader, i) for i in range(n))
    if progress:
        from tqdm import tqdm

        episodes = tqdm(episodes, total=n, desc=f"{reader.format} -> {to}", unit="episode")
    try:
        write = formats[to].write
        kwargs = {"meta": meta} if meta and "meta" in inspect.signature(write).parameters else {}
        written = write(out, episodes, **kwargs, **({"video": True} if video else {}))
    except ValueError as exc:  # a writer's own refusal (a key it cannot name, say)
        raise DatasetError(f"cannot write {str(src)!r} as {to}: {exc} (nothing was written)") from None
    except OSError as exc:  # a full disk, a quota: the libraries' errors often name no path
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        hint = "; free space or choose another OUT" if full else ""
        raise PolxError(f"cannot write {str(out)!r} as {to}{where}: {exc.strerror or exc} (nothing was written{hint})") from None
    summary = {"source": str(src), "source_format": reader.format, "out": str(out), "format": to, "episodes": written, "steps": int(reader.episode_ends[-1])}
    return {**summary, "video": True} if video else summary


def _check_video(video: bool, to: str, registry: Any) -> None:
    if video and to not in video_formats(registry):
        raise UserInputError(f"--video: format {to!r} does not store video; formats that do: {', '.join(video_formats(registry)) or 'none'}")


def video_formats(registry: Any) -> list[str]:
    """Writable formats whose ``write`` takes ``video=True`` (camera frames as video files)."""
    return [name for name in writable_formats(registry) if "video" in inspect.signature(dataset_formats(registry)[name].write).parameters]


def generate_in_format(adapter: Any, out: Path, to: str, *, registry: Any, video: bool = False, **generate_kwargs: Any) -> dict:
    """``adapter.generate_demos`` (which writes zarr) in any writable format: a hidden zarr beside
    ``out``, converted, then removed; ``out`` appears only when every episode is in."""
    import shutil
    import uuid

    out = Path(out)
    _check_video(video, to, registry)
    if to == "zarr":
        return adapter.generate_demos(out, **generate_kwargs)
    if to not in writable_formats(registry):
        raise UserInputError(f"--format {to!r} is not a format polx can write; choose one of: {', '.join(writable_formats(registry))}")
    _remove_stale_generating(out)
    staging = out.with_name(f".{out.name}.generating-{os.getpid()}-{uuid.uuid4().hex[:12]}.zarr")
    try:
        summary = adapter.generate_demos(staging, **generate_kwargs)
        convert_dataset(
            staging, out, to, registry=registry, src_format="zarr", progress=generate_kwargs.get("progress", True), meta={"sim": True},
            video=video,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**summary, "out": str(out), "format": to, **({"video": True} if video else {})}


def _remove_stale_generating(out: Path) -> None:
    """Remove the hidden staging stores (and their ``.partial`` writes) of ``out`` whose generating
    process is gone: what a SIGKILL of ``polx data generate --format F`` leaves."""
    from polx.data.staging import pid_alive

    stale = []
    for path in [*out.parent.glob(f".{out.name}.generating-*"), *out.parent.glob(f"..{out.name}.generating-*")] if out.parent.is_dir() else []:
        m = re.search(r"\.generating-(\d+)-[0-9a-f]+\.zarr", path.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            stale.append(path.name)
    if stale:
        print(f"polx: removed {len(stale)} unfinished generation(s) left by a killed process: {', '.join(stale)}", file=sys.stderr)
