"""Action layouts (``polx.policy.layout``): packing is lossless on real dims, padding never counts.

Properties: pack then unpack is the identity on the env's dims for any tiling of groups and any
width; padding is zero and masked; for every registered objective, whatever the padded dims of
a packed chunk hold never changes the loss, and a head under ``Policy``'s padding-blind wrapper
never lets padded inputs reach a real dim's output. End to end, a packed run trains, validates,
rolls out and evaluates with env-width actions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.components import ObsActionSpec
from polx.errors import PolxError, UserInputError
from polx.policy.layout import ActionLayout, declared_groups
from polx.policy.valid import valid_mask

import toy_plugin  # noqa: E402
from test_objective_contract import PLUGINS, SMALL, head_for, OBJECTIVES  # noqa: E402


class _Policy:
    def __init__(self, layout: str, width: int | None = None):
        self.action_layout, self.group_width = layout, width


def _meta(widths: list[int]) -> dict:
    bounds, start = {}, 0
    for i, w in enumerate(widths):
        bounds[f"g{i}"] = [start, start + w]
        start += w
    return {"shape": [start], "groups": bounds}


widths_st = st.lists(st.integers(1, 5), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(widths=widths_st, extra=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_pack_then_unpack_is_the_identity_and_padding_is_zero_and_masked(widths, extra, seed):
    width = max(widths) + extra
    layout = ActionLayout.from_config({"action": _meta(widths)}, _Policy("packed", width))
    assert layout.dim == width * len(widths) and layout.env_dim == sum(widths)
    x = torch.randn(2, 3, sum(widths), generator=torch.Generator().manual_seed(seed))
    packed = layout.pack(x)
    assert torch.equal(layout.unpack(packed), x)
    assert int(layout.mask.sum()) == sum(widths)
    assert torch.all(packed[..., ~layout.mask] == 0)
    for (_, start, stop), (_, hstart, hstop), w in zip(layout.groups, layout.head_groups, widths):
        assert torch.equal(packed[..., hstart : hstart + w], x[..., start:stop])  # each group at the start of its slot
        assert hstop - hstart == width
    natural = ActionLayout.from_config({"action": _meta(widths)}, _Policy("natural", width))
    assert natural.pack(x) is x and natural.unpack(x) is x and natural.head_groups == natural.groups


def test_roboimi_packs_to_the_32_wide_two_arm_layout():
    pytest.importorskip("polx_envs")
    from polx_envs.roboimi.config import ROBOIMI_PRESET

    layout = ActionLayout.from_config(
        {"action": {"shape": [16], "groups": {"left": [0, 8], "right": [8, 16]}}},
        _Policy("packed", ROBOIMI_PRESET["policy"]["group_width"]),
    )
    assert layout.dim == 32 and layout.head_groups == (("left", 0, 16), ("right", 16, 32))
    assert layout.mask.tolist() == [True] * 8 + [False] * 8 + [True] * 8 + [False] * 8


@pytest.mark.parametrize(
    "groups, message",
    [
        ({"a": [0, 2], "b": [3, 5]}, "group 'b': \\[3, 5\\) must start at 2"),
        ({"a": [0, 2], "b": [2, 2]}, "must start at 2 and be non-empty"),
        ({"a": [0, 2]}, "cover dims \\[0, 2\\) of the 5-dim action"),
    ],
)
def test_groups_that_do_not_tile_the_action_are_named(groups, message):
    with pytest.raises(PolxError, match=message):
        declared_groups({"shape": [5], "groups": groups})


def test_a_group_width_narrower_than_a_group_is_refused():
    with pytest.raises(UserInputError, match="policy.group_width: 2 is narrower than action group 'g1' \\(3 dims\\); use >= 3 or null"):
        ActionLayout.from_config({"action": _meta([1, 3])}, _Policy("packed", 2))


PACKED = ActionLayout.from_config({"action": _meta([2, 1])}, _Policy("packed", 3))  # [a a 0 b 0 0]


@pytest.fixture(scope="module", params=OBJECTIVES)
def packed_pair(request):
    obj_c, head_c = PLUGINS.registry.get("objective", request.param), head_for(request.param)
    spec = ObsActionSpec(action_dim=PACKED.dim, horizon=6, n_obs_steps=2, cond_dim=5, action_groups=PACKED.head_groups)
    torch.manual_seed(0)
    head = head_c.build(head_c.config_cls(**SMALL.get(head_c.name, {})), spec).eval()
    return obj_c.build(obj_c.config_cls()), head


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), garbage=st.sampled_from([3.0, -50.0, 1e4]))
def test_padded_dims_never_change_any_objectives_loss(packed_pair, seed, garbage):
    objective, head = packed_pair
    gen = torch.Generator().manual_seed(seed)
    action = PACKED.pack(torch.randn(3, 6, PACKED.env_dim, generator=gen))
    cond = torch.randn(3, 2, 5, generator=gen)
    is_pad = torch.zeros(3, 6, dtype=torch.bool)
    mask = PACKED.pack_mask(None, torch.zeros(3, 6, PACKED.env_dim))

    def loss_of(action):
        batch = {"action": action, "cond": cond, "action_is_pad": is_pad, "action_mask": mask, "valid": valid_mask(action, is_pad, mask)}
        torch.manual_seed(seed)
        return float(PLUGINS.hook.compute_loss(objective=objective, head=PACKED.blind(head), batch=batch)[0].detach())

    reference = loss_of(action)
    assert loss_of(torch.where(PACKED.mask, action, garbage)) == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert loss_of(torch.where(PACKED.mask, action + 0.5, action)) != pytest.approx(reference, rel=1e-6, abs=1e-9)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), garbage=st.sampled_from([3.0, -50.0, 1e4]))
def test_a_blind_head_never_reads_padded_inputs(packed_pair, seed, garbage):
    """Sampling moves padded dims by the head's untrained outputs; they must not reach real dims."""
    _, head = packed_pair
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 6, PACKED.dim, generator=gen)
    cond = torch.randn(2, 2, 5, generator=gen)
    imf = "imf" in type(head).__module__  # the mean-flow call (z, r, t, cond); the others (z, t, cond)
    args = (torch.full((2,), 0.2), torch.full((2,), 0.5), cond) if imf else (torch.full((2,), 3), cond)
    blind = PACKED.blind(head)
    out, moved = blind(z, *args), blind(torch.where(PACKED.mask, z, garbage), *args)
    out, moved = (out[0], moved[0]) if isinstance(out, tuple) else (out, moved)
    assert torch.allclose(out[..., PACKED.mask], moved[..., PACKED.mask])


def test_a_packed_run_trains_rolls_out_and_evaluates_at_env_width(tmp_path):
    pytest.importorskip("polx_imf_attnres")
    from polx.eval.evaluate import evaluate_checkpoint
    from polx.runs import prepare_training
    from polx.base.checkpoint import LATEST, load_checkpoint
    from polx.train.trainer import run_training

    overrides = toy_plugin.toy_overrides(
        tmp_path / "cache", "train.max_steps=4", "train.val_every=4", "eval.rollout_every=0", "eval.n_test=1", "eval.n_train=0",
        "eval.max_steps=8", "env.action_groups=true", "policy.action_layout=packed", "policy.group_width=3",
        "head.n_emb=16", "head.n_layer=1", "eval.sample_steps=[1, 2]",
    )
    plan = prepare_training(PLUGINS, head="imf_attnres", env="toy_reach", out=tmp_path / "runs", overrides=overrides, argv=["test"])
    run = run_training(plan)
    merged = {k: v for line in (run / "logs.json.txt").read_text().splitlines() for k, v in json.loads(line).items()}
    assert {"val_loss", "val_action_mse", "test_mean_score", "train/group_loss_x", "val_group_loss_y", "val_group_loss_imbalance",
            "val_action_mae_1step", "val_action_mae_x_2step", "val_action_mae_imbalance_2step"} <= set(merged)  # fmt: skip
    state = load_checkpoint(run / "checkpoints" / LATEST)
    assert state["spec"]["action_layout"] == {"width": 3, "groups": [["x", 0, 1], ["y", 1, 2]]}
    assert state["model"]["head.sample_emb.weight"].shape[1] == 6  # the head is 6 wide, the env 2
    report = evaluate_checkpoint(PLUGINS, run / "checkpoints" / LATEST, episodes=1, out=tmp_path / "eval")
    assert 0.0 <= report["metrics"]["test_mean_score"] <= 1.0
