"""``polx data convert``: any readable dataset -> a new one in another format, episode by episode.

Every array is copied exactly (same keys, shapes, dtypes and values); the writers are atomic, so
an interrupted or failed conversion leaves nothing at the output path. Only one episode is in
memory at a time (plus the reader's bounded frame cache).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from polx.data.formats import dataset_formats, get_episode, open_dataset
from polx.errors import DatasetError, UserInputError


def writable_formats(registry: Any) -> list[str]:
    """Registered formats that can write (have a ``write(out, episodes)`` method)."""
    return [name for name, f in dataset_formats(registry).items() if callable(getattr(f, "write", None))]


def convert_dataset(
    src: Path, out: Path, to: str, *, registry: Any, src_format: str | None = None, progress: bool = True, meta: dict | None = None
) -> dict:
    """Copy ``src`` into a new dataset at ``out`` in format ``to``; returns a summary dict.

    ``meta``: dataset-level attributes for writers that keep them (``write(out, episodes, meta=...)``:
    the hdf5 writer's file attributes, ``sim=True`` for generated data); none by default, since a
    converted dataset's origin is not known."""
    from polx.runs import check_writable_dir

    formats = dataset_formats(registry)
    if to not in writable_formats(registry):
        raise UserInputError(f"--to {to!r} is not a format polx can write; choose one of: {', '.join(writable_formats(registry))}")
    out = Path(out)
    if out.exists():
        raise UserInputError(f"OUT {str(out)!r} already exists; choose a new path (nothing was written)")
    check_writable_dir(out.parent, "OUT's parent")
    reader = open_dataset(src, src_format, registry)
    n = len(reader.episode_ends)
    episodes = (get_episode(reader, i) for i in range(n))
    if progress:
        from tqdm import tqdm

        episodes = tqdm(episodes, total=n, desc=f"{reader.format} -> {to}", unit="episode")
    try:
        write = formats[to].write
        takes_meta = meta and "meta" in inspect.signature(write).parameters
        written = write(out, episodes, meta=meta) if takes_meta else write(out, episodes)
    except ValueError as exc:  # a writer's own refusal (a key it cannot name, say)
        raise DatasetError(f"cannot write {str(src)!r} as {to}: {exc} (nothing was written)") from None
    return {"source": str(src), "source_format": reader.format, "out": str(out), "format": to, "episodes": written, "steps": int(reader.episode_ends[-1])}


def generate_in_format(adapter: Any, out: Path, to: str, *, registry: Any, **generate_kwargs: Any) -> dict:
    """``adapter.generate_demos`` (which writes zarr) in any writable format: a hidden zarr beside
    ``out``, converted, then removed; ``out`` appears only when every episode is in."""
    import shutil
    import uuid

    out = Path(out)
    if to == "zarr":
        return adapter.generate_demos(out, **generate_kwargs)
    if to not in writable_formats(registry):
        raise UserInputError(f"--format {to!r} is not a format polx can write; choose one of: {', '.join(writable_formats(registry))}")
    staging = out.with_name(f".{out.name}.generating-{uuid.uuid4().hex[:12]}.zarr")
    try:
        summary = adapter.generate_demos(staging, **generate_kwargs)
        convert_dataset(
            staging, out, to, registry=registry, src_format="zarr", progress=generate_kwargs.get("progress", True), meta={"sim": True}
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**summary, "out": str(out), "format": to}
