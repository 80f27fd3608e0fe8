"""``polx export RUN_DIR|CKPT --out DIR``: a trained policy as a self-contained directory.

The checkpoint is loaded with ``weights_only=True`` and its policy rebuilt exactly as ``polx eval``
rebuilds it (EMA weights when kept); its state dict goes to ``model.safetensors``, everything a
loader needs to ``config.json``, a model card to ``README.md`` and, with ``--onnx``, the sampler to
``policy.onnx`` (``polx.deploy.onnx_export``). Everything is written into a hidden sibling of
``DIR`` and renamed into place at the end: a refused or failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from polx.version import __version__
from polx.deploy import artifact
from polx.errors import UserInputError
from polx.policy.layout import ActionLayout
from polx.policy.policy import Policy
from polx.base.checkpoint import LATEST, _TOPK_NAME, check_complete, load_checkpoint


def resolve_source(source: Path) -> tuple[Path, Path | None]:
    """``(checkpoint, run_dir)`` for a run directory (its ``checkpoints/latest.ckpt``) or a ``.ckpt`` file."""
    source = Path(source)
    if source.is_dir():
        ckpt = source / "checkpoints" / LATEST
        if not (source / "config.yaml").is_file() and not (source / "checkpoints").is_dir():
            raise UserInputError(f"{str(source)!r} is not a polx run directory (no config.yaml, no checkpoints/); pass RUN_DIR or a .ckpt file")
        if not ckpt.is_file():
            raise UserInputError(
                f"run {str(source)!r} has no checkpoint ({str(ckpt)!r} does not exist: the run wrote none yet); nothing was written"
            )
        return ckpt, source
    if not source.exists():
        raise UserInputError(f"{str(source)!r} does not exist; pass a run directory or a .ckpt file")
    run_dir = source.parent.parent if source.parent.name == "checkpoints" else None
    return source, run_dir


def check_out(out: Path) -> None:
    """``--out`` must be a new path in a writable directory (nothing is written otherwise)."""
    from polx.base.paths import check_writable_dir

    out = Path(out)
    if out.exists():
        raise UserInputError(f"--out {str(out)!r} already exists; choose a new directory (nothing was written)")
    check_writable_dir(out, "--out")


def _requirement(plugins: Any, kind: str, name: str) -> dict:
    from polx.plugins import CORE_PLUGIN_NAME

    comp = plugins.registry.get(kind, name)
    if comp.plugin == CORE_PLUGIN_NAME:
        return {"name": name, "distribution": "polx", "version": __version__}
    try:
        info = plugins.info(comp.plugin)
        dist, version = info.distribution, info.version
    except Exception:  # a plugin registered in-process (tests): no distribution to name
        dist, version = None, None
    return {"name": name, "distribution": dist, "version": version}


def sampling_steps(config: Any, policy: Policy) -> int | None:
    """Network calls per chunk the run evaluated with: ``eval.num_steps``, else the objective's default."""
    steps = config.eval.num_steps
    return steps if steps is not None else getattr(policy.objective, "default_num_steps", None)


def policy_config(plugins: Any, config: Any, run_config: dict, shape_meta: dict, policy: Policy, state: dict, onnx: bool) -> dict:
    """What ``config.json`` holds (see ``polx.deploy.artifact``)."""
    layout = ActionLayout.from_config(shape_meta, config.policy)
    normalizer = {
        key: {name: policy.normalizer.stats[key].get_buffer(name).detach().cpu().numpy().tolist() for name in ("shift", "scale", "bias")}
        for key in policy.normalizer.keys()
    }
    comps = config.components
    groups = {name: [start, stop] for name, start, stop in layout.groups}
    return {
        "format": artifact.FORMAT,
        "format_version": artifact.FORMAT_VERSION,
        "polx_version": __version__,
        "plugins": {kind: _requirement(plugins, kind, getattr(comps, kind)) for kind in ("head", "objective", "env")},
        "obs": {key: {"shape": list(meta["shape"]), "type": meta.get("type", "low_dim"), "dtype": "float32"} for key, meta in shape_meta["obs"].items()},
        "action": {
            "shape": [layout.env_dim],
            "groups": groups,
            "layout": "packed" if layout.packed else "natural",
            "group_width": layout.width,
            "head_dim": layout.dim,
        },
        "n_obs_steps": policy.n_obs_steps,
        "horizon": policy.horizon,
        "n_action_steps": policy.n_action_steps,
        "sampling_steps": sampling_steps(config, policy),
        "noise_shape": [policy.horizon, layout.dim],
        "normalizer": normalizer,
        "weights": "ema" if state.get("ema") is not None else "model",
        "global_step": int(state["global_step"]),
        "checkpoint": None,  # filled in by export_policy
        "onnx": None,
        "run_config": run_config,
    }


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _last_value(log: Path, key: str) -> float | None:
    value = None
    try:
        for line in Path(log).read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and key in record:
                value = record[key]
    except OSError:
        return None
    return value


def model_card(config: Any, info: dict, checkpoint: Path, run_dir: Path | None) -> str:
    """README.md: what the policy is, the data and budget it was trained with, its score and how to use it."""
    comps = config.components
    manifest = _read_json(run_dir / "manifest.json") if run_dir else None
    summary = _read_json(run_dir / "summary.json") if run_dir else None
    step = info["global_step"]
    lines = [
        f"# {comps.head} / {comps.objective} policy for {comps.env}",
        "",
        f"Exported by `polx export` (polx {__version__}) from `{checkpoint.name}` at step {step}; "
        f"weights: {'the EMA average' if info['weights'] == 'ema' else 'the trained weights (the run kept no EMA)'}.",
        "",
        "## Policy",
        "",
        f"- head `{comps.head}`, objective `{comps.objective}`, {info['sampling_steps']} network call(s) per action chunk",
        f"- observations: " + ", ".join(f"`{k}` {v['shape']} ({v['type']})" for k, v in info["obs"].items()),
        f"- action: {info['action']['shape'][0]} dims, groups {info['action']['groups']}, layout {info['action']['layout']}",
        f"- {info['n_obs_steps']} observation step(s) in, a {info['horizon']}-step chunk out, {info['n_action_steps']} executed per call",
        "",
        "## Data",
        "",
    ]
    dataset = (manifest or {}).get("dataset") or config.data.path
    episodes = (manifest or {}).get("episodes") or {}
    env_cfg = config.to_dict().get("env", {})
    lines.append(f"- env `{comps.env}` with " + (", ".join(f"{k}={v}" for k, v in env_cfg.items() if not isinstance(v, (dict, list))) or "its defaults"))
    lines.append(f"- dataset: `{Path(dataset).name if dataset else 'the env default'}`" + (f", {episodes.get('train')} training and {episodes.get('val')} validation episodes" if episodes else ""))
    lines += ["", "## Budget", ""]
    train_time = _last_value(run_dir / "logs.json.txt", "train_time_s") if run_dir else None
    budget = f"- {step} optimizer steps of batch {config.train.batch_size}, lr {config.train.lr}"
    if train_time is not None:
        budget += f", {train_time / 60:.1f} min of training" if train_time >= 60 else f", {train_time:.1f} s of training"
    if manifest:
        budget += f" on {manifest.get('device', '?')} (world size {manifest.get('world_size', 1)})"
    lines.append(budget)
    lines += ["", "## Score", ""]
    ev = config.eval
    seeds = f"test seeds {ev.test_start_seed}..{ev.test_start_seed + ev.n_test - 1} ({ev.n_test} episodes, at most {ev.max_steps} steps each)"
    metrics = (summary or {}).get("metrics") or {}
    topk = _TOPK_NAME.fullmatch(checkpoint.name)
    if summary and summary.get("global_step") == step and "test_mean_score" in metrics:
        score = f"- test_mean_score **{metrics['test_mean_score']:.3f}**"
        if "test_success_rate" in metrics:
            score += f", success rate {metrics['test_success_rate']:.2f}"
        lines.append(f"{score} on {seeds}, at step {step}")
    elif topk:
        lines.append(f"- test_mean_score **{float(topk.group(3)):.3f}** on {seeds}, at step {step} (from the checkpoint's name)")
    else:
        lines.append("- not measured at this checkpoint's step; `polx eval --policy DIR` measures it")
    lines += ["", "## Command that trained it", ""]
    command = (manifest or {}).get("command")
    lines += ["```", shlex.join(str(c) for c in command) if command else "(unknown: the checkpoint is not inside a run directory)", "```"]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import polx",
        "policy = polx.load_policy(\"DIR\"" + (', runtime="onnx"' if info["onnx"] else "") + ")",
        "policy.reset(seed=0)",
        "action = policy.act(obs)   # obs: {key: np.ndarray of the shape above}",
        "```",
        "",
        "`polx eval --policy DIR` rolls it out; `polx serve DIR --port 8000` serves it over a websocket.",
        "Plugins it needs: " + ", ".join(dict.fromkeys(artifact.pip_line({**req, "kind": kind}).removeprefix("pip install ") for kind, req in info["plugins"].items())) + ".",
        "",
    ]
    return "\n".join(lines)


def state_tensors(policy: Policy) -> dict[str, torch.Tensor]:
    """The policy's state dict as contiguous CPU tensors that share no storage (safetensors refuses sharing)."""
    return {key: value.detach().cpu().contiguous().clone() for key, value in policy.state_dict().items()}


def export_policy(plugins: Any, source: Path, out: Path, *, onnx: bool = False, opset: int | None = None) -> dict:
    """Write the policy directory ``out``; returns its ``config.json`` dict. Nothing exists at ``out`` unless it succeeds."""
    from polx.eval.evaluate import policy_from_checkpoint
    from polx.runs import config_from_saved

    out = Path(out)
    checkpoint, run_dir = resolve_source(Path(source))
    check_out(out)
    state = load_checkpoint(checkpoint)
    check_complete(state, checkpoint)
    saved = dict(state["config"])
    saved["components"] = {**saved["components"], "loggers": []}  # a policy logs nothing
    saved["loggers"] = {}
    config = config_from_saved(plugins, saved)
    adapter = plugins.build_env(config)
    policy = policy_from_checkpoint(plugins, config, adapter.shape_meta, state, checkpoint)
    if onnx:
        from polx.deploy.onnx_export import check_exportable

        check_exportable(policy, config)  # refused before anything is written
    info = policy_config(plugins, config, config.to_dict(), adapter.shape_meta, policy, state, onnx)
    info["checkpoint"] = checkpoint.name
    return write_policy_dir(policy, info, out, onnx=onnx, card=lambda info: model_card(config, info, checkpoint, run_dir), opset=opset)


def write_policy_dir(policy: Policy, info: dict, out: Path, *, onnx: bool, card: Any, opset: int | None = None) -> dict:
    """Write ``model.safetensors``, ``policy.onnx`` (``onnx``), ``config.json`` (``info``) and
    ``README.md`` (``card(info)``) into a hidden sibling of ``out``, then rename it to ``out``."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:12]}")
    tmp.mkdir()
    try:
        save_file(state_tensors(policy), str(tmp / artifact.WEIGHTS), metadata={"format": artifact.FORMAT})
        os.chmod(tmp / artifact.WEIGHTS, 0o644)  # safetensors creates it owner-only; the rest of the directory is readable
        if onnx:
            from polx.deploy.onnx_export import export_onnx

            info["onnx"] = export_onnx(policy, info, tmp / artifact.ONNX, opset=opset)
        (tmp / artifact.CONFIG).write_text(json.dumps(info, indent=2) + "\n")
        (tmp / artifact.CARD).write_text(card(info))
        if out.exists():
            raise UserInputError(f"--out {str(out)!r} appeared while exporting; nothing was written")
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return info
