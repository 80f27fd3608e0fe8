"""Every registered component keeps its contract, checked with ``polx.testing``: the same checks a
plugin author runs, here on core's own components, the shipped plugins' and the toy plugin's.

A component added to any of them is checked without editing this file; only the options below
(smaller heads, trackers kept offline, the data the env-less ``offline`` env reads) are per name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from polx.plugins import load_plugins
from polx.testing import check_component, components

import toy_plugin  # noqa: E402

PLUGINS = load_plugins(extra=[("toy", toy_plugin)])
SMALL_HEADS = {
    "imf_attnres": {"n_emb": 16, "n_layer": 1, "attnres_block_size": 1},
    "ddpm_transformer": {"n_emb": 16, "n_layer": 1, "n_head": 2, "p_drop_attn": 0.0},
    "toy_mlp": {"hidden": 16},
}
OFFLINE_TRACKERS = {"wandb": {"mode": "disabled"}, "swanlab": {"mode": "disabled"}}


def options(kind: str, name: str, tmp_path: Path) -> dict:
    if kind == "head":
        return {"config": SMALL_HEADS.get(name)}
    if kind == "objective":
        heads = [h for h in SMALL_HEADS if h in PLUGINS.registry.names("head")]
        from polx.testing import pairs_of

        head = next((h for h in pairs_of(PLUGINS, "objective", name) if h in heads), None)
        return {"head": head, "head_config": SMALL_HEADS.get(head)} if head else {}
    if kind == "logger":
        return {"config": OFFLINE_TRACKERS.get(name)}
    if kind == "env" and name == "offline":
        from polx.data.replay_buffer import ReplayBuffer

        store = tmp_path / "offline.zarr"
        with ReplayBuffer.writer(store) as rb:
            rb.add_episode({"state": np.zeros((5, 3), np.float32), "action": np.zeros((5, 2), np.float32)})
        return {"overrides": (f"env.dataset={store}",), "rollout": False}  # no simulator to roll out
    return {}


@pytest.mark.parametrize("kind, name", components(PLUGINS))
def test_every_registered_component_keeps_its_contract(kind, name, tmp_path):
    check_component(PLUGINS, kind, name, tmp_path, **options(kind, name, tmp_path))


def test_every_kind_and_every_shipped_plugin_is_covered():
    listed = components(PLUGINS)
    assert {kind for kind, _ in listed} == {"head", "objective", "env", "logger", "dataset"}
    for name in ("imf_attnres", "ddpm_transformer", "imf", "ddpm", "pusht", "roboimi", "json", "wandb", "swanlab", "zarr", "hdf5", "lerobot"):
        assert name in {n for _, n in listed}
