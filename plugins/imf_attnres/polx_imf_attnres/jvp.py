"""The time derivative of the average velocity along the flow, as one Jacobian-vector product.

Along a trajectory ``dz/dt = v``, ``dr/dt = 0``, ``dt/dt = 1``, so
``du/dt = (d_z u) v + d_t u = jvp(u, (z, r, t), (v, 0, 1))``. MeanFlow uses it under a stop-gradient,
so it is computed without a backward graph.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

JVP_IMPLS = ("func", "autograd")


def time_derivative(
    u_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    r: torch.Tensor,
    t: torch.Tensor,
    dz_dt: torch.Tensor,
    impl: str = "func",
) -> torch.Tensor:
    """``du/dt`` (B, T, A) of ``u_fn(z (B,T,A), r (B,), t (B,))`` along ``(dz_dt, 0, 1)``; detached.

    ``impl="func"`` uses forward-mode ``torch.func.jvp``; ``"autograd"`` uses
    ``torch.autograd.functional.jvp`` (two reverse passes, the double-backward trick), for models
    with an operation that has no forward-mode rule. Either way attention runs on the MATH kernel
    (fused kernels have no forward-mode AD) with autocast off and inputs in at least fp32: the
    derivative of a low-precision network is mostly rounding noise.
    """
    if impl not in JVP_IMPLS:
        raise ValueError(f"jvp impl must be one of {', '.join(JVP_IMPLS)}; got {impl!r}")
    dtype = torch.promote_types(z.dtype, torch.float32)
    primals = (z.detach().to(dtype), r.detach().to(dtype), t.detach().to(dtype))
    tangents = (dz_dt.detach().to(dtype), torch.zeros_like(primals[1]), torch.ones_like(primals[2]))
    with sdpa_kernel(SDPBackend.MATH), torch.autocast(z.device.type, enabled=False):
        if impl == "func":
            with torch.no_grad(), warnings.catch_warnings():  # no_grad only skips the backward graph
                # torch's first forward-mode derivative scripts a helper and warns about jit itself
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
                _, du_dt = torch.func.jvp(u_fn, primals, tangents)
        else:
            with torch.enable_grad():  # the double-backward trick needs reverse-mode graphs
                _, du_dt = torch.autograd.functional.jvp(u_fn, primals, tangents, create_graph=False)
    return du_dt.detach()
