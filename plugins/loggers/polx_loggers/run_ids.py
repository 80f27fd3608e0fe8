"""The tracker run id of a polx run, kept in its run directory, so ``--resume`` continues the same
SwanLab or W&B run instead of opening a second one (both accept an ``id`` with ``resume="allow"``).

The id is made on the run's first start, written to ``<run dir>/.<tracker>_run_id`` and read back
on every resume; deleting the file starts a new tracker run at the next resume.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

_ALPHABET = string.ascii_lowercase + string.digits  # valid for both trackers, safe in file names


def tracker_run_id(run_dir: Path, tracker: str) -> str:
    path = Path(run_dir) / f".{tracker}_run_id"
    if path.is_file():
        saved = path.read_text().strip()
        if saved and all(c in _ALPHABET for c in saved):
            return saved
    run_id = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(run_id + "\n")
    os.replace(tmp, path)
    return run_id
