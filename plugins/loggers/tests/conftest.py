"""Shared fixtures: a hermetic environment for the real swanlab and wandb packages.

Each test runs in its own working directory with no tracker keys, modes or saved logins
visible, so offline runs cannot reach the network and nothing is written to the home directory.
wandb's offline mode starts a helper process (wandb-core); it is torn down after each test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from polx.components import Run

CONFIG_MARKER = "polx-config-marker-7f3a"  # a value of the run's config, searched for in the trackers' files


@pytest.fixture(autouse=True)
def hermetic_trackers(monkeypatch, tmp_path):
    home = tmp_path / "home"
    for var in ("SWANLAB_API_KEY", "SWANLAB_MODE", "WANDB_API_KEY", "WANDB_MODE", "SWANLAB_LOG_DIR", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(home / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(home / "wandb-data"))
    monkeypatch.setenv("NETRC", str(home / "netrc"))  # wandb: no saved login found or written
    monkeypatch.setenv("SWANLAB_ROOT", str(home / "swanlab"))  # swanlab: same
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()  # stops wandb-core, so no helper process outlives the test


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(
        dir=tmp_path / "runs" / "12-00-00_head_env",
        name="12-00-00_head_env",
        config={"train": {"lr": 1e-4, "max_steps": 10}, "note": CONFIG_MARKER},
    )


@pytest.fixture
def make_png(tmp_path):
    """``make_png(name, color)`` writes a small PNG outside the run directory and returns its path."""

    def make(name: str = "frame.png", color: tuple[int, int, int] = (200, 30, 60)) -> Path:
        path = tmp_path / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (24, 24), color)
        image.putpixel((1, 2), (0, 255, 0))  # not flat, so a stored copy must keep detail to match
        image.save(path)
        return path

    return make
