"""Writing a new dataset directory so that its path never holds half a dataset.

Every writer (the zarr replay buffer, the hdf5 and LeRobot writers) writes into a hidden sibling
``.<name>.partial-<id>`` and renames it into place only when it has finished; on an error, or a
kill, the sibling is what is left (``polx dagger`` clears those it finds), never ``out`` itself.
"""

from __future__ import annotations

import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from polx.errors import DatasetError


@contextmanager
def staged_dir(out: str | Path) -> Iterator[Path]:
    """The path to write the new dataset ``out`` into (not yet created); published when the block succeeds.

    Refuses an ``out`` that exists, before anything is written, and one that appears meanwhile.
    """
    out = Path(out)
    if out.exists():
        raise DatasetError(f"dataset {str(out)!r} already exists; choose a new path (nothing was written)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:12]}")
    try:
        yield tmp
        if out.exists():
            raise DatasetError(f"dataset {str(out)!r} appeared while writing; nothing was written")
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
