"""An exported policy run by torch: the evaluator's own ``ChunkRuntime`` over weights from safetensors.

The policy is built from ``config.json`` alone: its head, objective, encoder and policy sections
come from the run's saved config, its shapes from ``obs`` and ``action``, so the env's plugin need
not be installed where it runs; the head's and objective's must be (a missing one is named with
its ``pip install`` line). Every tensor of ``model.safetensors`` is checked against the policy
built from the config before loading: a missing, extra or wrongly shaped tensor is named.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np
import torch

from polx.deploy import artifact
from polx.errors import ConfigError, UserInputError
from polx.policy.policy import Policy, build_policy
from polx.policy.runtime import ChunkRuntime


def shape_meta(info: dict) -> dict:
    """The env-style ``shape_meta`` recorded in ``config.json``."""
    obs = {key: {"shape": list(meta["shape"]), "type": meta.get("type", "low_dim")} for key, meta in info["obs"].items()}
    action: dict[str, Any] = {"shape": list(info["action"]["shape"])}
    groups = info["action"].get("groups") or {}
    if list(groups) != ["action"]:  # one group named "action" is what an env that declares none gets
        action["groups"] = {name: list(bounds) for name, bounds in groups.items()}
    return {"obs": obs, "action": action}


def policy_sections(plugins: Any, info: dict) -> SimpleNamespace:
    """The config sections ``build_policy`` reads, structured from the saved run config (no env needed)."""
    from polx.config import CORE_SECTIONS, resolve_sections

    missing = artifact.missing_plugins(info, lambda kind, name: name in plugins.registry.names(kind), kinds=("head", "objective"))
    if missing:
        raise UserInputError("this policy needs plugins that are not installed: " + "; ".join(missing))
    run = info["run_config"]
    comps = run.get("components") or {}
    head = plugins.registry.get("head", info["plugins"]["head"]["name"])
    objective = plugins.registry.get("objective", info["plugins"]["objective"]["name"])
    schema = {"policy": CORE_SECTIONS["policy"], "encoder": CORE_SECTIONS["encoder"], "head": head.config_cls, "objective": objective.config_cls}
    try:
        sections = resolve_sections(schema, {sec: run.get(sec, {}) for sec in schema})
    except ConfigError as exc:
        raise ConfigError([f"config.json run_config.{line}" for line in exc.problems]) from None
    components = SimpleNamespace(head=head.name, objective=objective.name, env=comps.get("env"))
    return SimpleNamespace(components=components, **sections)


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / artifact.WEIGHTS
    if not path.is_file():
        raise UserInputError(f"{str(directory)!r} has no {artifact.WEIGHTS}; re-export the policy with polx export")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserInputError(f"{str(path)!r} is not a readable safetensors file ({str(exc).splitlines()[0][:200]})") from None


def check_weights(expected: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], path: Path) -> None:
    """``UserInputError`` naming each tensor that is missing, unexpected, wrongly shaped or not finite."""
    problems = []
    for key, ref in expected.items():
        if key not in weights:
            problems.append(f"tensor {key!r} is missing")
        elif tuple(weights[key].shape) != tuple(ref.shape):
            problems.append(f"tensor {key!r} has shape {list(weights[key].shape)}, the policy in config.json expects {list(ref.shape)}")
        elif weights[key].is_floating_point() and not torch.isfinite(weights[key]).all():
            problems.append(f"tensor {key!r} holds NaN or inf")
    problems += [f"tensor {key!r} is not part of the policy in config.json" for key in weights if key not in expected]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise UserInputError(f"{str(path)!r} does not fit the policy: {'; '.join(problems[:5])}{more}")


def build_from_dir(plugins: Any, directory: Path, info: dict, device: str | torch.device = "cpu") -> Policy:
    """The torch ``Policy`` of an exported directory, weights loaded and checked, in eval mode."""
    from polx.data.normalizer import Normalizer

    config = policy_sections(plugins, info)
    weights = read_weights(directory)
    try:
        normalizer = Normalizer.from_state_dict(weights, prefix="normalizer.")
    except (ValueError, KeyError) as exc:
        raise UserInputError(f"{str(Path(directory) / artifact.WEIGHTS)!r}: the normaliser's tensors are incomplete ({exc})") from None
    policy = build_policy(plugins, config, shape_meta(info), normalizer)
    check_weights(policy.state_dict(), weights, Path(directory) / artifact.WEIGHTS)
    policy.load_state_dict(weights)
    return policy.to(device).eval()


def chunk_from_noise(policy: Policy, obs: Mapping[str, torch.Tensor], noise: torch.Tensor, num_steps: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(action, action_pred)`` from raw observations (B, To, ...) and the initial noise: what ``policy.onnx`` computes."""
    cond = policy.encode(obs)  # (B, To, cond_dim)
    chunk = policy.objective.sample_from_noise(policy.objective_head, cond, noise, num_steps)  # (B, T, head dim)
    if policy.layout is not None:
        chunk = policy.layout.unpack(chunk)
    action_pred = policy.normalizer.unnormalize("action", chunk)  # (B, T, A)
    start = policy.n_obs_steps - 1
    return action_pred[:, start : start + policy.n_action_steps], action_pred


class TorchPolicy(ChunkRuntime):
    """``reset(seed)``, ``act(obs) -> action`` and ``predict_chunk(history)`` over a torch ``Policy``.

    It is the evaluator's ``ChunkRuntime`` (same queue, same seeded generator), so a rollout through
    it matches ``polx eval --checkpoint`` episode for episode. ``session()`` gives another runtime
    (own history, queue and noise) over the same network."""

    runtime = "torch"

    def __init__(self, policy: Policy, info: dict, directory: Path | None = None):
        super().__init__(policy, num_steps=info.get("sampling_steps"))
        self.info, self.directory = info, directory

    @property
    def metadata(self) -> dict:
        return artifact.metadata(self.info)

    def session(self) -> "TorchPolicy":
        return TorchPolicy(self.policy, self.info, self.directory)

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        artifact.check_observation(self.info, obs)
        return super().act(obs)

    @torch.no_grad()
    def predict_chunk(self, obs_history: Any, noise: np.ndarray | None = None) -> np.ndarray:
        """``n_obs_steps`` observations (a list of dicts, or a dict of (To, ...) arrays) -> (n_action_steps, A).

        Without ``noise`` the runtime's generator draws it (as ``act`` does); with ``noise``
        (horizon, head action dim) the chunk is a pure function of its inputs, as in ``policy.onnx``."""
        stacked = artifact.stack_history(self.info, obs_history)
        if noise is None:
            return self._predict_chunk([{k: v[i] for k, v in stacked.items()} for i in range(self.n_obs_steps)])
        if not callable(getattr(self.policy.objective, "sample_from_noise", None)):
            raise UserInputError(f"predict_chunk(noise=...): the {self.info['plugins']['objective']['name']!r} objective cannot sample from given noise; call it without noise")
        device = self.policy.device
        obs = {k: torch.as_tensor(v, device=device)[None] for k, v in stacked.items()}
        z = torch.as_tensor(np.asarray(noise, dtype=np.float32), device=device).reshape(1, *self.info["noise_shape"])
        return chunk_from_noise(self.policy, obs, z, self.num_steps)[0][0].float().cpu().numpy()


def load_torch_policy(directory: Path, info: dict, *, device: str = "cpu", plugins: Any = None) -> TorchPolicy:
    from polx.plugins import load_plugins

    plugins = plugins if plugins is not None else load_plugins()
    return TorchPolicy(build_from_dir(plugins, Path(directory), info, device), info, Path(directory))
