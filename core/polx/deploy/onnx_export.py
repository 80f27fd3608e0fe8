"""``polx export --onnx``: the whole sampler as one ONNX graph, normalisation inside.

Inputs: one float32 array per observation key, ``(B, n_obs_steps, *shape)`` as the env gives it
(low-dim keys are normalised inside, images scaled and cropped inside), and ``noise``
``(B, horizon, head action dim)``, the initial noise drawn by the caller. Outputs: ``action``
``(B, n_action_steps, A)``, the chunk to execute, and ``action_pred`` ``(B, horizon, A)``, both in
the env's units. The batch axis is dynamic.

An objective can be exported when it defines ``sample_from_noise(head, cond, noise, num_steps)``,
``sample`` as a pure function of the noise: the ``imf`` objective does, and its one or few head
calls are unrolled into the graph. ``ddpm`` does not (its DDPM sampler draws fresh noise at every
one of its steps), so ``--onnx`` refuses it with a message; its policies deploy with the torch
runtime. The graph calls the objective directly: a plugin that wraps the ``sample`` hook is not
part of it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polx.deploy import artifact
from polx.deploy.torch_policy import chunk_from_noise
from polx.errors import PolxError, UserInputError
from polx.policy.policy import Policy

DEFAULT_OPSET = 17
#: largest |onnxruntime - torch| accepted by the check made right after export, relative to the
#: largest |action| (float32 rounding differs between the two; a wrong graph differs by far more)
EXPORT_TOLERANCE = 1e-4


def check_exportable(policy: Policy, config: Any) -> None:
    """``UserInputError`` when the objective's sampler cannot be one graph."""
    try:
        import onnxruntime  # noqa: F401  (the export is checked against torch with it)
    except ImportError:
        raise UserInputError("--onnx needs onnxruntime: pip install 'polx[onnx]' (nothing was written)") from None
    if not callable(getattr(policy.objective, "sample_from_noise", None)):
        name = config.components.objective
        raise UserInputError(
            f"--onnx: the {name!r} objective's sampler cannot be exported as one graph (it defines no sample_from_noise"
            + ("; ddpm draws fresh noise at each of its denoising steps" if name == "ddpm" else "")
            + "); export without --onnx and load it with runtime='torch' (nothing was written)"
        )


def _rms_norm(g: Any, x: Any, normalized_shape: Any, weight: Any, eps: Any) -> Any:
    """``aten::rms_norm`` for opsets below 23 (which has RMSNormalization): x / sqrt(mean(x^2) + eps) * weight."""
    from torch.onnx import symbolic_helper

    node = normalized_shape.node()
    if node.kind() == "prim::ListConstruct":  # sizes read from the input (x.size(-1)): only their count matters
        n_dims = len(list(node.inputs()))
    else:
        n_dims = len(symbolic_helper._get_const(normalized_shape, "is", "normalized_shape"))
    eps_value = symbolic_helper._maybe_get_const(eps, "f")
    if symbolic_helper._is_none(eps) or not isinstance(eps_value, float):
        eps_value = float(torch.finfo(torch.float32).eps)  # torch's default for float32 inputs
    axes = list(range(-n_dims, 0))
    mean_sq = g.op("ReduceMean", g.op("Mul", x, x), axes_i=axes, keepdims_i=1)
    denom = g.op("Sqrt", g.op("Add", mean_sq, g.op("Constant", value_t=torch.tensor(eps_value, dtype=torch.float32))))
    out = g.op("Div", x, denom)
    return out if symbolic_helper._is_none(weight) else g.op("Mul", out, weight)


def _register_symbolics(opset: int) -> None:
    torch.onnx.register_custom_op_symbolic("aten::rms_norm", _rms_norm, opset)


class OnnxSampler(nn.Module):
    """``(obs_1, ..., obs_k, noise) -> (action, action_pred)``: encoder, sampler, layout and unnormalisation."""

    def __init__(self, policy: Policy, keys: list[str], num_steps: int | None):
        super().__init__()
        self.policy, self.keys, self.num_steps = policy, list(keys), num_steps

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return chunk_from_noise(self.policy, dict(zip(self.keys, inputs[:-1])), inputs[-1], self.num_steps)


def example_inputs(info: dict, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 inputs of the graph's shapes (observations in [0, 1], standard normal noise)."""
    rng = np.random.default_rng(seed)
    feeds = {key: rng.random((batch, info["n_obs_steps"], *meta["shape"]), dtype=np.float32) for key, meta in info["obs"].items()}
    feeds[artifact.NOISE_INPUT] = rng.standard_normal((batch, *info["noise_shape"]), dtype=np.float32)
    return feeds


def export_onnx(policy: Policy, info: dict, path: Path, *, opset: int | None = None) -> dict:
    """Write ``path`` and check it against torch on one random input; returns ``config.json``'s ``onnx`` entry."""
    keys = list(info["obs"])
    opset = opset or DEFAULT_OPSET
    module = OnnxSampler(policy.eval(), keys, info["sampling_steps"]).eval()
    feeds = example_inputs(info, batch=2)
    args = tuple(torch.from_numpy(feeds[k]) for k in [*keys, artifact.NOISE_INPUT])
    names = [*keys, artifact.NOISE_INPUT]
    dynamic = {name: {0: "batch"} for name in [*names, *artifact.ONNX_OUTPUTS]}
    _register_symbolics(opset)
    try:
        with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes; its graph dumps on failure
            torch.onnx.export(
                module, args, str(path), input_names=names, output_names=list(artifact.ONNX_OUTPUTS), dynamic_axes=dynamic,
                opset_version=opset, dynamo=False, do_constant_folding=True,
            )  # fmt: skip
    except Exception as exc:
        raise PolxError(f"--onnx: torch could not export the sampler ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
    with torch.no_grad():
        expected = module(*args)[1].numpy()
    got = run_onnx(path, feeds)[1]
    diff = float(np.max(np.abs(got - expected)))
    limit = EXPORT_TOLERANCE * max(1.0, float(np.max(np.abs(expected))))
    if not diff <= limit:
        raise PolxError(f"--onnx: the exported graph differs from torch by {diff:.3g} (> {limit:.3g}) on a test input; nothing was written")
    return {"file": artifact.ONNX, "opset": opset, "inputs": names, "outputs": list(artifact.ONNX_OUTPUTS), "export_check_max_abs_diff": diff}


def run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(list(artifact.ONNX_OUTPUTS), feeds)
