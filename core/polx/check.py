"""``polx check``: checks a researcher runs before spending compute.

``polx check plugins [--json]`` holds every installed plugin to its components' contracts: what
``polx plugins list`` checks at load (factories import, heads are modules with the methods the
trainer calls, hooks exist; ``polx.contracts.check_loaded``), plus, on the CPU with each
component's defaults, every head with each objective it pairs with on a tiny batch
(``polx.contracts.check_pair``), every env adapter's ``shape_meta`` and pickling, and every
dataset format's ``detect`` on paths that are not datasets (``polx.testing``). Each failing
plugin is reported ``broken`` with the check's message; the command exits 1 when one is.

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

from polx.contracts import LOAD_SPEC


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
    adapter = plugins.build_env(target_cfg)
    data = load_training_data(Path(source_cfg.data.path or adapter.default_dataset(progress=True)), adapter, source_cfg, plugins.registry)
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
    """Checks to run before a study: do the plugins keep their contracts, does a warm start reproduce its source?"""


def plugins_report(plugins: Any, tmp_dir: Path) -> list[dict]:
    """``polx check plugins``' rows: one per plugin, with ``status`` ``broken`` and ``error`` for each that fails."""
    from polx.contracts import ContractError, check_loaded, check_pair
    from polx.testing import check_env, pairs_of

    check_loaded(plugins)
    problems: dict[str, list[str]] = {}
    reg = plugins.registry
    for comp in list(reg):
        if comp.plugin not in reg.plugins:  # core's own: held to these contracts by core's tests
            continue
        try:
            if comp.kind == "head":
                for objective in pairs_of(plugins, "head", comp.name):
                    try:
                        check_pair(plugins, comp.name, objective, LOAD_SPEC)
                    except ContractError as exc:  # blamed on the plugin that declared the pair
                        obj = reg.get("objective", objective)
                        declared = objective in (comp.objectives or ()) or comp.default_objective == objective
                        blamed = comp.plugin if declared or obj.plugin not in reg.plugins else obj.plugin
                        problems.setdefault(blamed, []).append(str(exc))
            elif comp.kind == "env":
                check_env(plugins, comp.name, rollout=False)
            elif comp.kind == "dataset":
                _check_detect(plugins, comp.name, tmp_dir / comp.name)
        except ContractError as exc:
            problems.setdefault(comp.plugin, []).append(str(exc))
        except Exception as exc:  # a plugin's own failure, named as such
            problems.setdefault(comp.plugin, []).append(f"{comp.describe()}: {type(exc).__name__}: {exc}")
    for name, found in problems.items():
        info = reg.plugins[name]
        info.status, info.error, info.components, info.help = "broken", "; ".join(found), {}, {}
    return [
        {"name": i.name, "distribution": i.distribution, "version": i.version, "status": i.status, "error": i.error,
         "components": i.components}
        for i in plugins.infos
    ]  # fmt: skip


def _check_detect(plugins: Any, name: str, tmp_dir: Path) -> None:
    """The part of the dataset-format check that needs no sample data: ``detect`` on non-datasets."""
    from polx.contracts import ContractError
    from polx.testing import check_dataset_format

    try:
        check_dataset_format(plugins, name, tmp_dir)
    except ContractError as exc:
        if "cannot write; pass sample=" not in str(exc):
            raise


@check.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the report as a JSON array.")
def plugins_cmd(as_json: bool) -> None:
    """Hold every installed plugin to its contracts; exit 1 when one is broken.

    \b
    Checks, each on the CPU with the components' default options:
      what polx plugins list checks (factories import, heads have forward, spec and
      get_optim_groups, hook names exist), every head with each objective it pairs with on a
      tiny batch (a finite scalar loss, a (batch, horizon, action_dim) sample), every env's
      shape_meta and pickling, every dataset format's detect and, when it can write, a round trip.
    """
    import tempfile

    from polx.errors import PolxError
    from polx.plugins import load_plugins

    with tempfile.TemporaryDirectory(prefix="polx-check-") as tmp:
        rows = plugins_report(load_plugins(), Path(tmp))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            label = " ".join(x for x in (row["distribution"], row["version"]) if x)
            status = row["status"] if row["status"] != "broken" else f"broken: {row['error']}"
            click.echo(f"{row['name']:20s} {label:40s} {status}")
    broken = [r["name"] for r in rows if r["status"] == "broken"]
    if broken:
        raise PolxError(f"{len(broken)} plugin(s) broken: {', '.join(broken)}")


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
    from polx.plugins import load_plugins, warn_broken

    report = warmstart_report(warn_broken(load_plugins()), checkpoint, head, objective, overrides)
    if as_json:
        click.echo(json.dumps(report))
        return
    for key, value in report.items():
        click.echo(f"{key:26s} {value:.3g}" if isinstance(value, float) else f"{key:26s} {value}")
