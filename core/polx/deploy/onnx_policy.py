"""An exported policy run by onnxruntime: numpy and ``policy.onnx`` only, torch is never imported.

The noise is drawn with numpy the way torch's CPU generator draws it (``polx.deploy.noise``):
after ``reset(seed)`` the chunks' noise equals what the torch runtime (and ``polx eval
--checkpoint``) draws after the same seed, to float32 rounding, so a rollout through onnxruntime
follows the torch rollout of the same seed (a chunk of fewer than 16 noise values, which torch
draws another way, falls back to numpy's own normals). Given the same noise
(``predict_chunk(history, noise)``) the two runtimes agree to float32 rounding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from polx.deploy import artifact
from polx.deploy.noise import TorchNormal
from polx.errors import UserInputError
from polx.policy.queue import ChunkQueue


def open_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session; ``threads`` intra-op threads (default: ``OMP_NUM_THREADS`` or onnxruntime's choice)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserInputError("runtime='onnx' needs onnxruntime: pip install 'polx[onnx]' (or pip install onnxruntime)") from None
    options = ort.SessionOptions()
    threads = threads if threads is not None else int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UserInputError(f"{str(path)!r} cannot be opened by onnxruntime ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


class OnnxPolicy(ChunkQueue):
    """``reset(seed)``, ``act(obs) -> action`` and ``predict_chunk(history)`` through ``policy.onnx``."""

    runtime = "onnx"

    def __init__(self, session: Any, info: dict, directory: Path | None = None):
        super().__init__(info["n_obs_steps"])
        self.session_, self.info, self.directory = session, info, directory
        self.keys = list(info["obs"])
        self.noise_shape = (1, *info["noise_shape"])
        self._seed(int(np.random.default_rng().integers(2**32)))

    @property
    def metadata(self) -> dict:
        return artifact.metadata(self.info)

    def session(self) -> "OnnxPolicy":
        """Another runtime (own history, queue and noise) over the same onnxruntime session."""
        return OnnxPolicy(self.session_, self.info, self.directory)

    def _seed(self, seed: int) -> None:
        self.noise = TorchNormal(seed)
        self.rng = np.random.default_rng(seed)  # for chunks of fewer than 16 noise values

    def draw_noise(self) -> np.ndarray:
        """(1, horizon, head action dim): the noise torch's generator would draw next."""
        if int(np.prod(self.noise_shape)) >= 16:
            return self.noise.draw(self.noise_shape)
        return self.rng.standard_normal(self.noise_shape, dtype=np.float32)

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        artifact.check_observation(self.info, obs)
        return super().act(obs)

    def _predict_chunk(self, history: list[Mapping[str, np.ndarray]]) -> np.ndarray:
        stacked = {key: np.stack([np.asarray(o[key], dtype=np.float32) for o in history]) for key in self.keys}
        return self._run(stacked, self.draw_noise())

    def predict_chunk(self, obs_history: Any, noise: np.ndarray | None = None) -> np.ndarray:
        """``n_obs_steps`` observations (a list of dicts, or a dict of (To, ...) arrays) -> (n_action_steps, A).

        Without ``noise`` the runtime's generator draws it (as ``act`` does); with ``noise``
        (horizon, head action dim) the chunk is a pure function of its inputs."""
        stacked = artifact.stack_history(self.info, obs_history)
        if noise is None:
            z = self.draw_noise()
        else:
            z = np.asarray(noise, dtype=np.float32).reshape(self.noise_shape)
        return self._run(stacked, z)

    def predict_batch(self, obs: Mapping[str, np.ndarray], noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph itself: ``obs`` {key: (B, To, ...)}, ``noise`` (B, horizon, head dim) -> (action, action_pred)."""
        feeds = {key: np.ascontiguousarray(obs[key], dtype=np.float32) for key in self.keys}
        feeds[artifact.NOISE_INPUT] = np.ascontiguousarray(noise, dtype=np.float32)
        action, action_pred = self.session_.run(list(artifact.ONNX_OUTPUTS), feeds)
        return action, action_pred

    def _run(self, stacked: Mapping[str, np.ndarray], noise: np.ndarray) -> np.ndarray:
        action, _ = self.predict_batch({k: v[None] for k, v in stacked.items()}, noise)
        return action[0]  # (n_action_steps, A)


def load_onnx_policy(directory: Path, info: dict, *, threads: int | None = None) -> OnnxPolicy:
    path = Path(directory) / artifact.ONNX
    if not info.get("onnx") or not path.is_file():
        raise UserInputError(
            f"{str(directory)!r} has no {artifact.ONNX}: it was exported without --onnx "
            f"(re-export with polx export ... --onnx, or load it with runtime='torch')"
        )
    session = open_session(path, threads)
    names = [i.name for i in session.get_inputs()]
    expected = [*info["obs"], artifact.NOISE_INPUT]
    if sorted(names) != sorted(expected):
        raise UserInputError(f"{str(path)!r} takes inputs {names}; config.json describes {expected}: the directory is inconsistent, re-export it")
    return OnnxPolicy(session, info, Path(directory))
