"""The exported policy directory: its files, ``config.json``'s schema, and reading it back (no torch).

``polx export`` writes::

    model.safetensors   every tensor of the policy's state dict (EMA weights when the run kept EMA)
    config.json         FORMAT, the plugins it needs, shapes, n_obs_steps / horizon / n_action_steps,
                        sampling steps, action layout, normaliser statistics, and the run's config
    README.md           the model card: data, budget, score and its seeds, the training command
    policy.onnx         with --onnx: obs + noise -> action chunk, normalisation inside, one graph

Nothing in it is a pickle: safetensors, JSON, Markdown and ONNX protobuf only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polx.errors import UserInputError

FORMAT = "polx-policy"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
ONNX = "policy.onnx"
#: ONNX graph input holding the initial noise; the others are named after the observation keys
NOISE_INPUT = "noise"
ONNX_OUTPUTS = ("action", "action_pred")
RUNTIMES = ("torch", "onnx")

#: config.json keys every reader relies on, with their types
_REQUIRED = {
    "format": str, "format_version": int, "plugins": dict, "obs": dict, "action": dict, "n_obs_steps": int,
    "horizon": int, "n_action_steps": int, "run_config": dict,
}  # fmt: skip


def read_config(directory: Path) -> dict:
    """``DIR/config.json``, checked; ``UserInputError`` naming what is wrong with the directory."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is a file, not a directory"
        raise UserInputError(f"policy {str(directory)!r} {what}; pass a directory written by polx export")
    path = directory / CONFIG
    if not path.is_file():
        raise UserInputError(f"{str(directory)!r} is not an exported polx policy (no {CONFIG}); write one with polx export RUN_DIR --out DIR")
    try:
        config = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise UserInputError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserInputError(f"{str(path)!r} is not an exported polx policy's config (no format={FORMAT!r})")
    if not isinstance(config.get("format_version"), int) or config["format_version"] > FORMAT_VERSION:
        raise UserInputError(f"{str(path)!r} was written by a newer polx (policy format {config.get('format_version')!r}); upgrade polx to load it")
    problems = [
        f"{key} is {'missing' if key not in config else f'a {type(config[key]).__name__}, expected a {kind.__name__}'}"
        for key, kind in _REQUIRED.items()
        if not isinstance(config.get(key), kind) or isinstance(config.get(key), bool) and kind is not bool
    ]
    if problems:
        raise UserInputError(f"{str(path)!r} is malformed: {'; '.join(problems)}")
    return config


def metadata(config: dict) -> dict:
    """What a client needs to drive the policy: shapes, history and chunk sizes, action layout.

    The server sends it on connect; ``run_config`` is included so ``polx eval --policy ws://``
    can build the env and its evaluation settings on the client's side."""
    keys = ("format", "format_version", "plugins", "obs", "action", "n_obs_steps", "horizon", "n_action_steps", "sampling_steps", "noise_shape", "weights", "global_step", "run_config")
    return {key: config[key] for key in keys if key in config}


def pip_line(requirement: dict) -> str:
    """``pip install polx-plugin-x`` (pinned to the exporting version when known)."""
    dist = requirement.get("distribution") or f"a plugin providing {requirement.get('kind')} {requirement.get('name')!r}"
    version = requirement.get("version")
    return f"pip install {dist}=={version}" if version and requirement.get("distribution") else f"pip install {dist}"


def missing_plugins(config: dict, registered: Any, kinds: tuple[str, ...] = ("head", "objective", "env")) -> list[str]:
    """One line per component of ``config['plugins']`` (of ``kinds``) that ``registered(kind, name)`` lacks."""
    lines = []
    for kind in kinds:
        req = config["plugins"].get(kind)
        if not isinstance(req, dict) or not req.get("name"):
            continue
        if not registered(kind, req["name"]):
            source = f" from {req['distribution']}" if req.get("distribution") else ""
            lines.append(f"{kind} {req['name']!r}{source} is not installed: {pip_line({**req, 'kind': kind})}")
    return lines


class ObservationError(ValueError):
    """An observation that does not fit the policy: the message names the key and both shapes."""


def stack_history(info: dict, history: Any) -> dict:
    """``n_obs_steps`` observations, oldest first, as ``{key: (n_obs_steps, *shape) float32}``.

    ``history`` is a list of observation dicts or a dict of stacked arrays; ``ObservationError``
    names a missing key, a wrong shape or a history of the wrong length."""
    import numpy as np

    steps = info["n_obs_steps"]
    if isinstance(history, (list, tuple)):
        if len(history) != steps:
            raise ObservationError(f"the observation history has {len(history)} steps; this policy takes {steps} (n_obs_steps)")
        for obs in history:
            check_observation(info, obs)
        return {key: np.stack([np.asarray(obs[key], dtype=np.float32) for obs in history]) for key in info["obs"]}
    if not isinstance(history, dict):
        raise ObservationError(f"the observation history must be a list of {steps} observation dicts or a dict of arrays; got a {type(history).__name__}")
    out = {}
    for key, meta in info["obs"].items():
        if key not in history:
            raise ObservationError(f"observation key {key!r} is missing; this policy takes {', '.join(info['obs'])}")
        arr = np.asarray(history[key], dtype=np.float32)
        want = (steps, *meta["shape"])
        if arr.shape != want:
            raise ObservationError(f"observation {key!r} history has shape {list(arr.shape)}; this policy takes {list(want)} (n_obs_steps, *shape)")
        out[key] = arr
    return out


def check_observation(info: dict, obs: Any) -> None:
    """``ObservationError`` unless ``obs`` maps every key of the policy to an array of its shape."""
    import numpy as np

    if not isinstance(obs, dict):
        raise ObservationError(f"an observation must be a dict of arrays ({', '.join(info['obs'])}); got a {type(obs).__name__}")
    for key, meta in info["obs"].items():
        if key not in obs:
            raise ObservationError(f"observation key {key!r} is missing; this policy takes {', '.join(info['obs'])}")
        try:
            shape = np.shape(obs[key])
            ok = np.asarray(obs[key]).dtype.kind in "biuf"
        except Exception:
            shape, ok = None, False
        if not ok:
            raise ObservationError(f"observation {key!r} is not a numeric array")
        if list(shape) != list(meta["shape"]):
            raise ObservationError(f"observation {key!r} has shape {list(shape)}; this policy takes {list(meta['shape'])}")
