"""``polx eval --checkpoint PATH``: roll out a checkpoint with its saved config.

The checkpoint is loaded with ``weights_only=True``; its config is rebuilt exactly
(``config_from_saved``) with the command's overrides; the EMA weights are evaluated when the
checkpoint has them. Metrics are printed and written to ``metrics.json`` next to the trajectory
PNGs in ``--out`` (default ``<run>/eval/<time>/``).
"""

from __future__ import annotations

import datetime as _dt
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

from polx.data.normalizer import Normalizer
from polx.errors import UserInputError
from polx.eval.rollout import run_rollouts
from polx.policy.policy import Policy, build_policy, spec_summary
from polx.base.paths import check_writable_dir
from polx.executor import check_backend
from polx.runs import check_sample_steps, check_seeds, config_from_saved
from polx.base.checkpoint import atomic_write, check_compatible, check_complete, load_checkpoint, load_weights, model_state_from
from polx.strictjson import dumps_flagged
from polx.base.device import resolve_device
from polx.base.run_dir import unique_dir


def policy_from_checkpoint(plugins: Any, config: Any, shape_meta: dict, state: dict, path: Path) -> Policy:
    """The evaluation policy (EMA weights when present) of a loaded checkpoint, on CPU, in eval mode."""
    check_compatible(state, spec_summary(config, shape_meta), path)
    weights = model_state_from(state)
    policy = build_policy(plugins, config, shape_meta, Normalizer.from_state_dict(weights, prefix="normalizer."))
    load_weights(policy, weights, path)
    return policy.eval()


def default_out(checkpoint: Path) -> Path:
    """``<run>/eval/<time>`` for a checkpoint inside ``<run>/checkpoints/``, else next to the file."""
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return unique_dir(run_dir / "eval" / _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))


def evaluate_checkpoint(
    plugins: Any,
    checkpoint: Path,
    *,
    episodes: int | None = None,
    seed: int | None = None,
    out: Path | None = None,
    overrides: Iterable[str] = (),
) -> dict:
    """Roll out ``checkpoint``; returns what ``metrics.json`` holds."""
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    check_complete(state, checkpoint)
    saved = dict(state["config"])
    # evaluation logs nothing: the run's loggers need not be installed here
    saved["components"] = {**saved["components"], "loggers": []}
    saved["loggers"] = {}
    # --episodes and --seed are overrides like any KEY=VALUE (checked by the same converter), given last
    flags = [*([f"eval.n_test={episodes}"] if episodes is not None else []), *([f"eval.test_start_seed={seed}"] if seed is not None else [])]
    config = config_from_saved(plugins, saved, [*overrides, *flags])
    ev = config.eval
    check_seeds(config)
    check_sample_steps(config)
    check_backend(config.exec)

    out = Path(out) if out is not None else default_out(checkpoint)
    check_writable_dir(out, "--out")
    if (out / "metrics.json").exists():
        raise UserInputError(f"--out {str(out)!r} already holds a metrics.json; choose another directory")
    adapter = plugins.build_env(config)
    policy = policy_from_checkpoint(plugins, config, adapter.shape_meta, state, checkpoint)
    policy.to(resolve_device(config.train.device))

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        tty = sys.stderr.isatty()
        result = run_rollouts(
            plugins, config, adapter, policy, media_dir=out, progress=tty,
            say=None if tty else (lambda line: print(f"polx: {line}", file=sys.stderr, flush=True)),
        )
    except BaseException:
        if created:  # a failed evaluation leaves no half-filled directory behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    report = {
        "checkpoint": str(checkpoint),
        "global_step": int(state["global_step"]),
        "weights": "ema" if state.get("ema") is not None else "model",
        "n_test": ev.n_test,
        "test_start_seed": ev.test_start_seed,
        "n_train": ev.n_train,
        "train_start_seed": ev.train_start_seed,
        "metrics": result.metrics,
        "images": result.images,
    }
    atomic_write(out / "metrics.json", lambda f: f.write((dumps_flagged(report, what="metrics.json", indent=2) + "\n").encode()))
    for key, value in result.metrics.items():
        if "/" not in key:  # per-seed values stay in metrics.json
            print(f"{key}: {value:.4f}")
    print(f"metrics: {out / 'metrics.json'}")
    return report
