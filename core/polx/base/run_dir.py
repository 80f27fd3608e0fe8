"""The run directory: ``config.yaml``, ``manifest.json``, ``checkpoints/``, ``media/`` (+ the loggers' files).

The manifest says how the run was made: command line, versions (Python, torch, polx, every
loaded plugin), git revision, host, start time; each resume appends an entry. It holds no
secrets: credentials come from the environment and are never written.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

from polx.version import __version__
from polx.base.checkpoint import atomic_write


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def git_revision(directory: Path) -> dict | None:
    """``{"revision", "dirty"}`` of the git checkout holding ``directory``, or None outside one."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"revision": rev.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _versions(plugins: Any) -> dict:
    return {
        "polx": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "plugins": plugins.loaded_versions(),
    }


def manifest(plugins: Any, argv: list[str], extra: dict) -> dict:
    return {
        "command": list(argv),
        "cwd": str(Path.cwd()),
        "start_time": _now(),
        "host": socket.gethostname(),
        "versions": _versions(plugins),
        "git": git_revision(Path(__file__).resolve().parents[1]),
        "broken_plugins": plugins.broken() if hasattr(plugins, "broken") else {},  # installed but not loaded
        **extra,
        "resumes": [],
    }


def create_run_dir(run_dir: Path, config: Any, manifest_data: dict) -> None:
    """The run's config and manifest in ``run_dir`` (new, or empty but for its lock), with ``checkpoints/`` and ``media/``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "media").mkdir()
    _write_text(run_dir / "config.yaml", config.to_yaml())
    _write_text(run_dir / "manifest.json", json.dumps(manifest_data, indent=2) + "\n")


def record_resume(run_dir: Path, config: Any, argv: list[str], step: int, plugins: Any) -> None:
    """A resumed run keeps its directory: the config (with the new overrides) and one manifest entry."""
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "media").mkdir(exist_ok=True)
    _write_text(run_dir / "config.yaml", config.to_yaml())
    path = run_dir / "manifest.json"
    data = json.loads(path.read_text()) if path.is_file() else {"resumes": []}
    data.setdefault("resumes", []).append(
        {"command": list(argv), "time": _now(), "host": socket.gethostname(), "from_step": step, "versions": _versions(plugins)}
    )
    _write_text(path, json.dumps(data, indent=2) + "\n")


def unique_dir(path: Path) -> Path:
    """``path``, or ``path_2``, ``path_3``... when two runs start within the same second."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}_{n}")
    return candidate
