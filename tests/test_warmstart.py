"""Warm starts (``train.init_from``, ``polx check warmstart``) from a real shared-head checkpoint.

A tiny ``imf_attnres`` run on the toy env (two action groups) writes the source checkpoint. A
``shared`` head maps exactly into ``head_only_parallel`` (equivalent at step 0); into the split
modes its action embeddings carry over exactly (difference 0) while the loss changes, because a
stream no longer sees the other group's actions, unless the source never used them (its columns
zeroed), where ``split_independent`` is exactly equivalent too. Weights that do not fit exit 2
naming the parameters, before any run directory exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import toy_plugin  # noqa: E402
from test_objective_contract import PLUGINS  # noqa: E402

from polx import cli  # noqa: E402
from polx.check import warmstart_report  # noqa: E402
from polx.errors import UserInputError  # noqa: E402
from polx.base.checkpoint import LATEST, load_checkpoint  # noqa: E402

pytest.importorskip("polx_imf_attnres")
TINY = ["head.n_emb=16", "head.n_layer=1", "head.n_head=2", "head.n_kv_head=1", "env.action_groups=true"]


def _train(tmp_path: Path, name: str, *extra: str) -> Path:
    return toy_plugin.train_head_on_toy(PLUGINS, tmp_path, tmp_path / name, "imf_attnres", *TINY, *extra) / "checkpoints" / LATEST


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("warm"), "shared")


def test_a_shared_head_maps_exactly_into_head_only_parallel(source):
    report = warmstart_report(PLUGINS, source, None, None, ("head.action_expert_mode=head_only_parallel",))
    assert report["target_mode"] == "head_only_parallel" and report["equivalent"] is True
    assert report["loss_diff"] < 1e-5 and report["input_projection_max_diff"] == 0.0


@pytest.mark.parametrize("mode", ["split_independent", "split_communicating"])
def test_into_split_streams_the_embeddings_carry_over_and_the_loss_is_reported_as_changed(source, mode):
    report = warmstart_report(PLUGINS, source, None, None, (f"head.action_expert_mode={mode}",))
    assert report["input_projection_max_diff"] == 0.0
    assert report["loss_diff"] > 1e-5 and report["equivalent"] is False  # each stream now sees only its group


def test_a_source_that_reads_no_group_across_is_exactly_equivalent_as_split_streams(source, tmp_path):
    """With a zero action embedding no token carries one group's actions to another's output, so
    the copied trunk, norms, output rows and embedding bias must reproduce the source exactly."""
    state = load_checkpoint(source)
    for weights in (state["model"], state["ema"]["model"]):
        weights["head.sample_emb.weight"].zero_()
    blind = tmp_path / "blind.ckpt"
    torch.save(state, blind)
    report = warmstart_report(PLUGINS, blind, None, None, ("head.action_expert_mode=split_independent",))
    assert report["equivalent"] is True, report
    communicating = warmstart_report(PLUGINS, blind, None, None, ("head.action_expert_mode=split_communicating",))
    # the streams are identical copies of the source's sequence; attending over both copies weighs
    # each key half as much and gives the same mixture, so joint attention is equivalent as well
    assert communicating["equivalent"] is True, communicating


def test_init_from_trains_a_split_head_from_the_shared_weights(source, tmp_path):
    latest = _train(tmp_path, "split", f"train.init_from={source}", "head.action_expert_mode=split_communicating", "train.lr=1e-12")
    state = load_checkpoint(latest)
    shared = load_checkpoint(source)["ema"]["model"]
    assert state["global_step"] == 3  # its own steps: the source's step and optimizer are not carried
    for g in (0, 1):  # a learning rate of ~0 keeps the mapped trunk visible after training
        assert torch.allclose(state["model"][f"head.streams.{g}.backbone.out_mix.pseudo_query"], shared["head.backbone.out_mix.pseudo_query"])


def test_weights_that_do_not_fit_are_named_and_nothing_is_written(source, tmp_path):
    with pytest.raises(UserInputError, match=r"head\.sample_emb\.weight \(checkpoint \(16, 2\), this run \(16, 6\)\)"):
        _train(tmp_path, "packed", f"train.init_from={source}", "policy.action_layout=packed", "policy.group_width=3")
    assert not (tmp_path / "packed").exists()


def test_the_cli_exits_2_naming_the_parameters_and_prints_json_when_it_fits(source, tmp_path, monkeypatch):
    code = textwrap.dedent(
        f"""
        import sys
        from importlib import metadata
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import toy_plugin
        import polx.cli as cli
        import polx.plugins
        real = polx.plugins.load_plugins
        polx.plugins.load_plugins = lambda *a, **k: real(entry_points=list(metadata.entry_points(group="polx")), extra=[("toy", toy_plugin)])
        cli.main(sys.argv[1:], prog_name="polx")
        """
    )
    args = ["check", "warmstart", str(source), "policy.action_layout=packed", "policy.group_width=3"]
    bad = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path, env=os.environ)
    assert bad.returncode == 2 and "head.sample_emb.weight (checkpoint (16, 2), this run (16, 6))" in bad.stderr, bad.stderr
    monkeypatch.setattr("polx.plugins.load_plugins", lambda *a, **k: PLUGINS)  # in-process: one subprocess is enough
    good = CliRunner().invoke(cli.main, ["check", "warmstart", str(source), "--json", "head.action_expert_mode=head_only_parallel"])
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["equivalent"] is True
