"""Writing a new dataset directory so that its path never holds half a dataset.

Every writer (the zarr replay buffer, the hdf5 and LeRobot writers) writes into a hidden sibling
``.<name>.partial-<pid>-<id>`` and renames it into place only when it has finished; on an error the
sibling is removed, and after a kill (SIGKILL, a power cut) it is what is left, never ``out`` itself.
The next write of the same ``out`` removes such leftovers when they are clearly stale: their writer's
PID (in the name) is no longer a live process on this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from polx.errors import DatasetError


_PARTIAL = re.compile(r"\.partial-(\d+)-[0-9a-f]+$")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this machine (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove ``out``'s hidden ``.partial-<pid>-<id>`` siblings whose writer is gone; returns them."""
    removed = []
    prefix = f".{out.name}.partial-"
    for path in out.parent.glob(f"{prefix}*") if out.parent.is_dir() else ():
        m = _PARTIAL.search(path.name)
        if path.name.startswith(prefix) and m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        print(f"polx: removed {len(removed)} unfinished dataset write(s) left by a killed process: "
              f"{', '.join(p.name for p in removed)}", file=sys.stderr)
    return removed


@contextmanager
def staged_dir(out: str | Path) -> Iterator[Path]:
    """The path to write the new dataset ``out`` into (not yet created); published when the block succeeds.

    Refuses an ``out`` that exists, before anything is written, and one that appears meanwhile.
    """
    out = Path(out)
    if out.exists():
        raise DatasetError(f"dataset {str(out)!r} already exists; choose a new path (nothing was written)")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    try:
        yield tmp
        if out.exists():
            raise DatasetError(f"dataset {str(out)!r} appeared while writing; nothing was written")
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
