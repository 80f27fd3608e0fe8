"""The JSON log: ``logs.json.txt`` in every run directory, one JSON object of numbers per line.

It is the run's own record, so it lives in core, not in a plugin: ``polx plot``, the
end-of-run curves, sweeps, ``polx dagger`` and resumes all read it by the one name
``LOG_NAME``, which is therefore not configurable. Core registers it as the ``json`` logger
(``polx.builtin.CorePlugin.register_components``), through the same door as a plugin's loggers;
``--logger none`` (or ``loggers.json.enabled=false``) turns it off.

The format of diffusion_policy's JsonLogger, so existing tooling reads it: each line is one
record (the trainer includes ``global_step`` and ``epoch``), flushed as soon as it is written,
so a crash loses at most the line being written. On resume that partial line is cut off and
logging appends. Images are not written here: the JSON log holds scalars only. A non-finite
value is written as ``null`` (strict JSON; ``Infinity`` is not JSON) and named in one warning per key.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from attrs import define

from polx.components import Run
from polx.config import doc
from polx.strictjson import finite_or_null

#: the JSON log's file name inside a run directory (read by ``polx plot``, sweeps and resumes)
LOG_NAME = "logs.json.txt"

# counters written as integers, as diffusion_policy's logs have them
_INTEGER_KEYS = ("global_step", "epoch")


def drop_partial_last_line(path: Path, chunk: int = 1 << 16) -> int:
    """Truncate ``path`` after its last newline (a crash mid-write leaves a partial line).

    Reads backwards in chunks, so resuming a long run does not read the whole log.
    Returns the number of bytes dropped.
    """
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        f.truncate(keep)
    return size - keep


def _record(step: int, metrics: Mapping[str, Any]) -> dict[str, float | int]:
    record: dict[str, float | int] = {} if "global_step" in metrics else {"global_step": int(step)}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {key!r} is not a number ({type(value).__name__}); the JSON log holds numbers only") from None
        record[key] = int(number) if key in _INTEGER_KEYS and number.is_integer() else number
    return record


def drop_records_after(path: Path, step: int) -> int:
    """Rewrite ``path`` without records whose ``global_step`` exceeds ``step``; returns how many went.

    A run killed after its last checkpoint logged steps that the resumed run logs again; keeping
    both would give the curve two values per step. The rewrite is atomic (temp file, rename).
    """
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = [line for line in lines if json.loads(line).get("global_step", 0) <= step]
    if len(keep) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(keep), encoding="utf-8")
        os.replace(tmp, path)
    return len(lines) - len(keep)


class JsonLogger:
    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            drop_partial_last_line(self.path)
            if resume_step is not None:
                drop_records_after(self.path, resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        self._warned: set[str] = set()

    def log(self, step: int, metrics: Mapping[str, float], images: Mapping[str, str] | None = None) -> None:
        record, bad = finite_or_null(_record(step, metrics))
        new = [key for key in bad if key not in self._warned]
        if new:
            self._warned.update(new)
            warnings.warn(f"{LOG_NAME}: not finite at step {step}, written as null: {', '.join(new)}", RuntimeWarning, stacklevel=2)
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@define(frozen=True, kw_only=True)
class JsonLogConfig:
    """``loggers.json.*``: only whether the log is written; its name is always ``LOG_NAME``."""

    enabled: bool = doc(f"write {LOG_NAME} in the run directory (false, like --logger none, turns it off)", default=True)


def open_json_log(config: Any, run: Run) -> JsonLogger:
    return JsonLogger(Path(run.dir) / LOG_NAME, resume_step=run.resume_step)
