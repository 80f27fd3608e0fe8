"""The shipped recipes (``configs/*.yaml``) load and validate with every head they are meant for.

Their scores are benchmark work (``benchmarks/bench_learning.py``); here only that a user's
``polx train --config FILE`` resolves to what the file says, with nothing written.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))
HEADS = ("imf_attnres", "ddpm_transformer")


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_recipes_the_readme_names_exist():
    assert {p.name for p in RECIPES} >= {
        "quickstart_cpu.yaml", "pusht_keypoints_cpu.yaml", "pusht_image_cpu.yaml", "pusht_image_gpu.yaml",
        "roboimi_cpu.yaml", "roboimi_imf_gpu.yaml",
    }  # fmt: skip


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
@pytest.mark.parametrize("head", HEADS)
def test_recipe_resolves_to_its_values(recipe, head, tmp_path):
    env = recipe.stem.split("_")[0]  # pusht_*.yaml, roboimi_*.yaml, quickstart (PushT)
    env = env if env in ("pusht", "roboimi") else "pusht"
    result = subprocess.run(
        [sys.executable, "-m", "polx", "train", "--head", head, "--env", env, "--config", str(recipe), "--print-config",
         "--out", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    resolved = _flatten(yaml.safe_load(result.stdout))
    for key, value in _flatten(yaml.safe_load(recipe.read_text())).items():
        assert resolved[key] == (list(value) if isinstance(value, tuple) else value), key
    assert not (tmp_path / "runs").exists()  # --print-config writes nothing
