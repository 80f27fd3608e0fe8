"""Checkpoints: atomic writes, safe loading, top-k bookkeeping, RNG state.

A checkpoint is written to a temporary file in the same directory, flushed and fsynced, then
renamed over the target with ``os.replace`` (atomic on POSIX) and the directory fsynced: a
process killed at any moment leaves either the old file or the new one, never a torn one.
Loading always uses ``torch.load(weights_only=True)``: a checkpoint never executes code, so
every value in it is a tensor or plain Python data (RNG states included).
"""

from __future__ import annotations

import os
import pickle
import random
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from polx.errors import PolxError, UserInputError

FORMAT = "polx-checkpoint"
FORMAT_VERSION = 1
LATEST = "latest.ckpt"
_TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Create or replace ``path`` with what ``write(binary_file)`` writes, all or nothing."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{_TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides permissions, as for open()
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(directory: Path) -> None:
    """Temp files of a write that was killed; only one process ever writes a run's checkpoints."""
    for tmp in Path(directory).glob(f".*{_TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


def save_checkpoint(path: Path, state: dict) -> Path:
    """Write ``state`` atomically; a write that fails (a full disk) is a PolxError, the old file kept."""
    try:
        atomic_write(path, lambda f: torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, f))
    except (OSError, RuntimeError) as exc:  # torch reports a short write as "enforce fail at inline_container.cc"
        old = f"the previous {Path(path).name} is kept" if Path(path).is_file() else "no earlier checkpoint exists"
        raise PolxError(
            f"could not write checkpoint {str(path)!r} ({_write_failure(exc)}); {old}. "
            "Free disk space, then continue with polx train --resume"
        ) from None
    return Path(path)


def link_checkpoint(source: Path, path: Path) -> bool:
    """Make ``path`` a hard link of the checkpoint ``source`` (same state, written once), atomically.

    Safe for keeping checkpoints: every later write replaces a file by renaming a new one over it,
    so the other name keeps the old bytes. Returns False (nothing changed) where the filesystem
    has no hard links; the caller then writes the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{_TEMP_SUFFIX}")
    try:
        os.link(source, tmp)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return False
    _fsync_dir(path.parent)
    return True


def _write_failure(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if "enforce fail" in text or "write" in text.lower():
        return f"the file could not be written in full; is the disk full? ({text[:160]})"
    return text[:200]


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's dict on CPU; ``UserInputError`` for a missing file or one that is not a polx checkpoint."""
    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"checkpoint {str(path)!r} is a directory; pass a .ckpt file, e.g. {str(path / LATEST)!r}")
    if not path.is_file():
        raise UserInputError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError) as exc:
        raise UserInputError(f"{str(path)!r} is not a polx checkpoint: it cannot be read ({type(exc).__name__}: {first_line(exc)})") from None
    except pickle.UnpicklingError:  # not a torch file, or weights_only refused something that would run code
        raise UserInputError(
            f"{str(path)!r} is not a polx checkpoint: it is not a torch file of tensors and plain data "
            "(checkpoints are loaded with weights_only=True and never run code)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserInputError(f"{str(path)!r} is not a polx checkpoint (it is a {type(state).__name__} without format={FORMAT!r})")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise UserInputError(
            f"{str(path)!r} was written by a newer polx (checkpoint format {state['format_version']}); upgrade polx to load it"
        )
    return state


#: what every checkpoint ``polx train`` writes holds, checked right after loading (``check_complete``)
_REQUIRED = {"config": dict, "spec": dict, "model": dict, "optimizer": dict, "global_step": int, "epoch": int, "batch_in_epoch": int, "rng": dict}


def check_complete(state: dict, path: Path) -> None:
    """``UserInputError`` naming what a loaded checkpoint lacks, so a malformed one fails before any rollout or step."""
    problems = [
        f"{key} is {'missing' if key not in state else f'a {type(state[key]).__name__}, expected a {kind.__name__}'}"
        for key, kind in _REQUIRED.items()
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool)
    ]
    if not problems:
        if not isinstance(state["config"].get("components"), dict):
            problems.append("config has no components section")
        bad = [k for k, v in state["model"].items() if not isinstance(v, torch.Tensor)]
        if bad:
            problems.append(f"model weights {', '.join(bad[:3])} are not tensors")
        ema = state.get("ema")
        if ema is not None and not (isinstance(ema, dict) and isinstance(ema.get("model"), dict)):
            problems.append("ema has no model weights")
    if problems:
        raise UserInputError(f"{str(path)!r} is a malformed polx checkpoint: {'; '.join(problems)}")


def first_line(exc: BaseException) -> str:
    """An exception's first line, at most 200 characters (for one-line messages)."""
    return (str(exc).strip().splitlines() or [""])[0][:200]


def check_compatible(state: dict, expected: dict, path: Path) -> None:
    """Raise ``UserInputError`` when the checkpoint's head, objective or shapes differ from ``expected``."""
    saved = state.get("spec", {})
    diffs = [f"{key}: checkpoint has {saved.get(key)!r}, this run has {value!r}" for key, value in expected.items() if saved.get(key) != value]
    if diffs:
        raise UserInputError(f"checkpoint {str(path)!r} was written for a different policy; " + "; ".join(diffs))


def model_state_from(state: dict, ema: bool = True) -> dict:
    """The weights to evaluate: the EMA average when the checkpoint has one, else the trained weights."""
    if ema and state.get("ema") is not None:
        return state["ema"]["model"]
    return state["model"]


# ---------------------------------------------------------------------------------------------
# top-k by test_mean_score, kept in the file names so a resumed run sees the earlier ones

_TOPK_NAME = re.compile(r"epoch=(\d+)-step=(\d+)-test_mean_score=(-?\d+\.\d+)\.ckpt")


def topk_name(epoch: int, step: int, score: float) -> str:
    return f"epoch={epoch:04d}-step={step:07d}-test_mean_score={score:.3f}.ckpt"


class TopK:
    """The ``k`` best checkpoints by score in ``directory``; ties keep the older one."""

    def __init__(self, directory: Path, k: int):
        self.directory = Path(directory)
        self.k = k

    def kept(self) -> list[tuple[float, Path]]:
        """(score, path) best first."""
        found = []
        for path in self.directory.glob("epoch=*.ckpt"):
            match = _TOPK_NAME.fullmatch(path.name)
            if match:
                found.append((float(match.group(3)), path))
        return sorted(found, key=lambda sp: (-sp[0], sp[1].name))

    def offer(self, score: float, epoch: int, step: int, state: Callable[[], dict]) -> Path | None:
        """Save ``state()`` when ``score`` makes the top k; drop what falls out. Returns the new path."""
        if self.k == 0 or not np.isfinite(score):
            return None
        kept = self.kept()
        if len(kept) >= self.k and round(score, 3) <= kept[self.k - 1][0]:
            return None
        path = save_checkpoint(self.directory / topk_name(epoch, step, score), state())
        for _, old in self.kept()[self.k :]:
            old.unlink(missing_ok=True)
        return path


# ---------------------------------------------------------------------------------------------
# RNG state as plain data and tensors (weights_only-loadable)


def rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_weights(module: torch.nn.Module, weights: dict, path: Path) -> None:
    """``module.load_state_dict(weights)`` with a clear error when the shapes do not match or a weight is not finite."""
    bad = [k for k, v in weights.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UserInputError(
            f"checkpoint {str(path)!r} holds non-finite weights ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
            "a policy with NaN/inf weights has no score to report. Use an earlier checkpoint"
        )
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise UserInputError(
            f"checkpoint {str(path)!r} does not fit the policy built from its config "
            f"(did an override change the head's or encoder's shape?): {detail}"
        ) from None
