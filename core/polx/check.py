"""``polx check``: checks a researcher runs before spending compute. ``warmstart`` for now.

``polx check warmstart CKPT [--head H] [KEY=VALUE...]`` builds the checkpoint's own policy and
the policy a ``train.init_from=CKPT`` run with those options would start from, and reports on
one real batch of the checkpoint's dataset (its validation windows when it has some): the largest
difference of the heads' action embeddings and of their masked losses (same noise and times),
and whether the two are equivalent. A warm start that does not fit exits 2 naming the parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def warmstart_report(plugins: Any, checkpoint: Path, head: str | None, objective: str | None, overrides: tuple[str, ...]) -> dict:
    """The figures ``polx check warmstart`` prints (see the module docstring)."""
    from polx.data.normalizer import Normalizer
    from polx.eval.evaluate import policy_from_checkpoint
    from polx.policy.policy import build_policy
    from polx.runs import config_from_saved
    from polx.train.data import fixed_batches, load_training_data
    from polx.train.warmstart import checkpoint_weights, compare_warm_start, warm_start
    from polx.config import resolve_config

    state, weights = checkpoint_weights(checkpoint)
    saved = state["config"]
    source_cfg = config_from_saved(plugins, saved)
    comps = saved["components"]
    head = head or comps["head"]
    base = saved if head == comps["head"] else {k: v for k, v in saved.items() if k != "head"}
    objective = objective or (comps["objective"] if head == comps["head"] else None)
    target_cfg = resolve_config(plugins, head=head, env=comps["env"], objective=objective, overrides=overrides, base=base)
    adapter = plugins.registry.get("env", comps["env"]).build(target_cfg.env)
    data = load_training_data(Path(source_cfg.data.path or adapter.default_dataset(progress=True)), adapter, source_cfg)
    windows = data.val or data.train
    batch = windows.get_batch(fixed_batches(windows, min(source_cfg.train.batch_size, 32), 1, source_cfg.data.split_seed)[0])
    source = policy_from_checkpoint(plugins, source_cfg, adapter.shape_meta, state, checkpoint)
    target = build_policy(plugins, target_cfg, adapter.shape_meta, Normalizer.from_state_dict(weights, prefix="normalizer."))
    warm_start(target, checkpoint)
    report = compare_warm_start(source, target, batch, seed=source_cfg.train.seed)
    mode = getattr(target_cfg.head, "action_expert_mode", None)
    return {"checkpoint": str(checkpoint), "source_head": comps["head"], "target_head": head, "target_mode": mode,
            "batch_size": int(batch["action"].shape[0]), **report}  # fmt: skip


@click.group("check")
def check() -> None:
    """Checks to run before a study: does a warm start reproduce its source?"""


@check.command("warmstart")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--head", help="Head of the warm-started run (default: the checkpoint's).")
@click.option("--objective", help="Objective of the warm-started run (default: the checkpoint's, or the head's own).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def warmstart_cmd(checkpoint: Path, head: str | None, objective: str | None, as_json: bool, overrides: tuple[str, ...]) -> None:
    """Compare CHECKPOINT's policy with a run warm-started from it (train.init_from=CHECKPOINT).

    \b
    Example: does a shared imf_attnres head carry over into per-arm streams?
      polx check warmstart runs/.../checkpoints/latest.ckpt head.action_expert_mode=split_independent
    Reports, at step 0 on a real batch: input_projection_max_diff (the heads' action
    embeddings), loss_diff (masked loss, same noise and times) and equivalent (both < 1e-5).
    """
    from polx.cli import _plugins

    report = warmstart_report(_plugins(warn_broken=True), checkpoint, head, objective, overrides)
    if as_json:
        click.echo(json.dumps(report))
        return
    for key, value in report.items():
        click.echo(f"{key:26s} {value:.3g}" if isinstance(value, float) else f"{key:26s} {value}")
