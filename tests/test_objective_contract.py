"""Every registered objective honours the ``valid`` mask the policy hands it.

The property is run against each objective the installed plugins (and the toy plugin) register,
each with a small head that declares it: changing action entries that are padding or masked out
never changes the loss, and changing a valid entry does. Same seed, same draws, so the only
difference between the two calls is the masked entries.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polx.components import ObsActionSpec
from polx.plugins import load_plugins
from polx.policy.valid import valid_mask

import toy_plugin  # noqa: E402

PLUGINS = load_plugins(extra=[("toy", toy_plugin)])
#: small sizes for the shipped heads; a third-party head is built with its defaults
SMALL = {
    "imf_attnres": {"n_emb": 16, "n_layer": 1, "attnres_block_size": 1},
    "ddpm_transformer": {"n_emb": 16, "n_layer": 1, "n_head": 2, "p_drop_attn": 0.0},
    "toy_mlp": {"hidden": 16},
}
SPEC = ObsActionSpec(action_dim=3, horizon=6, n_obs_steps=2, cond_dim=5)


def head_for(objective: str):
    """A registered head that declares ``objective`` (its own choice, or listed in ``objectives``)."""
    for comp in PLUGINS.registry:
        if comp.kind == "head" and (objective in (comp.objectives or ()) or comp.default_objective == objective):
            return comp
    return None


OBJECTIVES = [name for name in PLUGINS.registry.names("objective") if head_for(name) is not None]


def test_every_registered_objective_is_covered():
    assert {"ddpm", "imf", "toy_flow"} <= set(OBJECTIVES)
    assert set(OBJECTIVES) == set(PLUGINS.registry.names("objective"))  # none skipped for want of a head


@pytest.fixture(scope="module", params=OBJECTIVES)
def pair(request):
    obj_c, head_c = PLUGINS.registry.get("objective", request.param), head_for(request.param)
    torch.manual_seed(0)
    head = head_c.build(head_c.config_cls(**SMALL.get(head_c.name, {})), SPEC).eval()  # eval: no dropout draws
    return obj_c.build(obj_c.config_cls()), head


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    pad_from=st.integers(1, SPEC.horizon),
    dim_mask=st.lists(st.booleans(), min_size=SPEC.action_dim, max_size=SPEC.action_dim),
    garbage=st.sampled_from([3.0, -50.0, 1e4]),
)
def test_masked_entries_never_change_the_loss(pair, seed, pad_from, dim_mask, garbage):
    objective, head = pair
    gen = torch.Generator().manual_seed(seed)
    B = 3
    action = torch.randn(B, SPEC.horizon, SPEC.action_dim, generator=gen)
    is_pad = torch.zeros(B, SPEC.horizon, dtype=torch.bool)
    is_pad[1:, pad_from:] = True  # sample 0 keeps every step
    mask = torch.tensor(dim_mask).expand(1, 1, SPEC.action_dim)
    cond = torch.randn(B, SPEC.n_obs_steps, SPEC.cond_dim, generator=gen)

    def loss_of(action: torch.Tensor) -> float:
        batch = {"action": action, "cond": cond, "action_is_pad": is_pad, "action_mask": mask}
        batch["valid"] = valid_mask(action, is_pad, mask)  # what Policy.compute_loss hands over
        torch.manual_seed(seed)  # the objective's own draws (noise, times) are the same each call
        loss, _ = PLUGINS.hook.compute_loss(objective=objective, head=head, batch=batch)
        assert torch.isfinite(loss)
        return float(loss.detach())

    valid = valid_mask(action, is_pad, mask)
    reference = loss_of(action)
    assert loss_of(torch.where(valid, action, torch.full_like(action, garbage))) == pytest.approx(reference, rel=1e-5, abs=1e-6)
    if valid.any():
        assert loss_of(torch.where(valid, action + 0.7, action)) != pytest.approx(reference, rel=1e-6, abs=1e-9)


def test_a_mask_that_does_not_broadcast_is_named():
    with pytest.raises(ValueError, match=r"action_mask: shape \(4, 5\) does not broadcast to the action's \(4, 6, 3\)"):
        valid_mask(torch.zeros(4, 6, 3), None, torch.ones(4, 5))
