"""The ``imf`` objective: improved MeanFlow (iMF) training loss and its one-step sampler.

For a normalized chunk x, noise e and times r <= t, the flow is ``z = (1 - t) x + t e`` with
conditional velocity ``e - x``. The head predicts the average velocity ``u(z, r, t)`` over
``[r, t]`` (and the instantaneous velocity ``v``). The MeanFlow identity
``v(z, t) = u + (t - r) du/dt`` turns ``u`` into a velocity that can be regressed on ``e - x``:

    V    = u + (t - r) * stopgrad(du/dt),   du/dt = jvp(u, (z, r, t), (stopgrad(v), 0, 1))
    loss = w(|V - (e - x)|^2) + w(|v - (e - x)|^2)

Sampling needs one evaluation: ``x = z - (t - r) u(z, r=0, t=1)`` for ``z ~ N(0, I)``.

Two training variants (``objective.variant``), ablated in ``benchmarks/README.md``:

* ``polx``: logit-normal times with half the batch at r = t (there ``V = u`` and the JVP is
  skipped), the tangent ``v`` from a separate v-head trained by the second loss term;
* ``reference``: t, r ~ U(0, 1) sorted, the tangent ``v = u(z, t, t)`` (no v-head), and the
  loss ``|V - (e - x)|^2`` alone.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import nn

from polx.policy.valid import batch_valid, group_means, masked_mean
from polx_imf_attnres.config import IMFConfig
from polx_imf_attnres.jvp import time_derivative


class Velocities(NamedTuple):
    """What one training evaluation of the head gives; all (B, T, A)."""

    u: torch.Tensor  # average velocity u(z, r, t), with gradient
    v: torch.Tensor | None  # v-head output, with gradient; None without a v-head
    tangent: torch.Tensor  # detached instantaneous velocity used as dz/dt in the JVP
    du_dt: torch.Tensor  # detached; zero where r = t (not computed: it is multiplied by t - r = 0)
    compound: torch.Tensor  # V = u + (t - r) du/dt


class IMFObjective:
    """Registered as objective ``imf``. The head is called directly (never through DDP's wrapper)."""

    name = "imf"

    def __init__(self, config: IMFConfig):
        self.config = config
        self.default_num_steps = config.default_num_steps
        self.jvp_impl = config.jvp_impl  # becomes "autograd" if torch.func fails once
        self.reference = config.variant == "reference"

    # ------------------------------------------------------------------ training

    def sample_times(
        self, batch_size: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, t)``, each (B,) in [0, 1] with r <= t; a ``r_equals_t_ratio`` share of them has r = t."""
        cfg = self.config
        if self.reference:  # t, r ~ U(0, 1), sorted; no forced r = t
            draws = torch.rand(2, batch_size, generator=generator, device=device)
            return draws.min(dim=0).values, draws.max(dim=0).values
        if cfg.time_sampler == "logit_normal":
            normal = torch.randn(2, batch_size, generator=generator, device=device)
            draws = torch.sigmoid(cfg.logit_normal_mean + cfg.logit_normal_std * normal)
        else:
            draws = torch.rand(2, batch_size, generator=generator, device=device)
        t, r = draws.max(dim=0).values, draws.min(dim=0).values
        n_equal = round(cfg.r_equals_t_ratio * batch_size)
        equal = torch.randperm(batch_size, generator=generator, device=device)[:n_equal]
        r[equal] = t[equal]
        return r, t

    def velocities(
        self, head: nn.Module, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, cond: torch.Tensor
    ) -> Velocities:
        """Head outputs at (z, r, t), the JVP ``du/dt`` along the predicted velocity, and ``V``."""
        u, v = head(z, r, t, cond)
        if self.reference:
            v = None  # the reference semantics have no v-head: a head's v output is not used
        if v is None:  # no v-head: the boundary condition u(z, t, t) = v(z, t)
            with torch.no_grad():
                tangent = head(z, t, t, cond)[0]
        else:
            tangent = v.detach()
        du_dt = self._time_derivative(head, z, r, t, cond, tangent)
        compound = u + (t - r)[:, None, None] * du_dt
        return Velocities(u=u, v=v, tangent=tangent, du_dt=du_dt, compound=compound)

    def _time_derivative(self, head, z, r, t, cond, tangent) -> torch.Tensor:
        """``du/dt`` (B, T, A), detached. Left at zero where r = t: there it is multiplied by
        ``t - r = 0``, so those samples (half the batch by default) skip the JVP."""
        du_dt = torch.zeros_like(tangent, dtype=torch.promote_types(tangent.dtype, torch.float32))  # kept in fp32
        moving = (t != r).nonzero().squeeze(1)  # (M,) samples with a non-empty interval
        if moving.numel() == 0:
            return du_dt
        cond_m = cond[moving]

        def u_fn(z_, r_, t_):
            return head(z_, r_, t_, cond_m)[0]

        args = (u_fn, z[moving], r[moving], t[moving], tangent[moving])
        if self.jvp_impl == "func":
            try:
                du_dt[moving] = time_derivative(*args, impl="func")
                return du_dt
            except Exception as exc:  # an op without a forward-mode rule: fall back for good, say so once
                warnings.warn(
                    f"imf: torch.func.jvp failed ({type(exc).__name__}: {exc}); using "
                    "torch.autograd.functional.jvp from now on (set objective.jvp_impl=autograd to silence this)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.jvp_impl = "autograd"
        du_dt[moving] = time_derivative(*args, impl="autograd")
        return du_dt

    def compute_loss(self, head: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        """Draw noise and times from the global RNG, then ``loss``."""
        x = batch["action"]
        r, t = self.sample_times(x.shape[0], x.device)
        return self.loss(head, batch, noise=torch.randn_like(x), r=r.to(x.dtype), t=t.to(x.dtype))

    def loss(
        self, head: nn.Module, batch: dict, *, noise: torch.Tensor, r: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, dict]:
        """The iMF loss for given noise (B, T, A) and times (B,): deterministic, for tests."""
        valid = batch_valid(batch)  # (B, T, A) bool, computed by the policy
        # invalid entries are zeroed before noising: the head attends across the chunk, so their
        # values would otherwise reach the valid entries' predictions (as in the ddpm objective)
        x = torch.where(valid, batch["action"], 0.0)  # (B, T, A)
        cond = batch["cond"]  # (B, To, D)
        z = (1 - t)[:, None, None] * x + t[:, None, None] * noise
        v_target = noise - x
        vel = self.velocities(head, z, r, t, cond)
        sq_errs = {"u": (vel.compound - v_target).pow(2)}  # (B, T, A) each
        if vel.v is not None:
            sq_errs["v"] = (vel.v - v_target).pow(2)
        terms = {f"loss_{k}": self._weighted(sq, valid) for k, sq in sq_errs.items()}
        loss = sum(terms.values())
        logged = {"loss": loss, **terms}
        if self.config.loss_weighting == "adaptive":  # the weighted terms hover near 1; log the plain errors too
            logged.update({f"mse_{k}": masked_mean(sq, valid) for k, sq in sq_errs.items()})
        logged.update(group_means(sum(sq_errs.values()), valid, head.spec.groups()))  # plain mse per action group
        metrics = dict(zip(logged, torch.stack([m.detach() for m in logged.values()]).tolist()))  # one device sync
        return loss, metrics

    def _weighted(self, sq_err: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``mse``: mean over valid entries. ``adaptive``: mean over samples of ``L / stopgrad(L + c)^p``."""
        if self.config.loss_weighting == "mse":
            return masked_mean(sq_err, valid)
        count = valid.sum(dim=(1, 2))  # (B,)
        per_sample = torch.where(valid, sq_err, 0.0).sum(dim=(1, 2)) / count.clamp_min(1)  # (B,)
        weight = (per_sample.detach() + self.config.adaptive_c).pow(-self.config.adaptive_p)
        has_valid = (count > 0).to(sq_err.dtype)  # a fully padded sample contributes nothing
        return (weight * per_sample * has_valid).sum() / has_valid.sum().clamp_min(1)

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(
        self,
        head: nn.Module,
        cond: torch.Tensor,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A normalized chunk (B, horizon, action_dim) in ``num_steps`` head calls (default one).

        Steps go from t = 1 to t = 0 on a uniform grid: ``z <- z - (t_i - t_{i+1}) u(z, t_{i+1}, t_i)``.
        The head's train/eval mode is left as the caller set it.
        """
        shape = (cond.shape[0], head.spec.horizon, head.spec.action_dim)
        noise_device = generator.device if generator is not None else cond.device
        noise = torch.randn(shape, generator=generator, device=noise_device, dtype=cond.dtype).to(cond.device)
        return self.sample_from_noise(head, cond, noise, num_steps)

    def sample_from_noise(self, head: nn.Module, cond: torch.Tensor, noise: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """``sample`` from given noise (B, horizon, action_dim): a pure function of its inputs, so
        ``polx export --onnx`` traces it, normalisation around it, into one graph."""
        steps = self.default_num_steps if num_steps is None else num_steps
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"imf sample: num_steps must be a positive int, got {num_steps!r}")
        B = cond.shape[0]
        z = noise
        times = torch.linspace(1.0, 0.0, steps + 1, dtype=cond.dtype, device=cond.device)
        for i in range(steps):
            t, r = times[i].expand(B), times[i + 1].expand(B)
            z = z - (times[i] - times[i + 1]) * head(z, r, t, cond)[0]
        return z


def build_objective(config: IMFConfig) -> IMFObjective:
    """Factory registered for objective ``imf``."""
    return IMFObjective(config)
