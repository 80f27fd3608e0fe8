"""``polx.load_policy(DIR, runtime="torch"|"onnx")``: an exported policy, ready to act.

Importing this module imports neither torch nor onnxruntime; ``runtime="onnx"`` imports only
numpy and onnxruntime, so a robot computer without torch runs the policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polx.deploy import artifact
from polx.errors import UserInputError


def load_policy(directory: str | Path, runtime: str = "torch", *, device: str = "cpu", threads: int | None = None, plugins: Any = None) -> Any:
    """The policy exported to ``directory`` by ``polx export``.

    Returns an object with ``reset(seed=None)``, ``act(obs) -> action`` (the chunk-queue runtime
    the evaluator uses), ``predict_chunk(obs_history, noise=None) -> (n_action_steps, A)``,
    ``metadata`` and ``session()`` (another runtime over the same network).

    ``runtime="torch"``: the head's and objective's plugins must be installed (a missing one is
    named with its ``pip install`` line); ``device`` chooses where it runs. ``runtime="onnx"``:
    ``policy.onnx`` through onnxruntime on the CPU, ``threads`` intra-op threads.
    """
    if runtime not in artifact.RUNTIMES:
        raise UserInputError(f"runtime {runtime!r} is unknown; choose one of: {', '.join(artifact.RUNTIMES)}")
    directory = Path(directory)
    info = artifact.read_config(directory)
    if runtime == "onnx":
        from polx.deploy.onnx_policy import load_onnx_policy

        return load_onnx_policy(directory, info, threads=threads)
    from polx.deploy.torch_policy import load_torch_policy

    return load_torch_policy(directory, info, device=device, plugins=plugins)
