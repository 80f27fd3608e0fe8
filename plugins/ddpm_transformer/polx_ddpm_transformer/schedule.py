"""Noise schedules and the DDPM / DDIM update rules (written here rather than taken from diffusers).

The semantics follow the diffusers schedulers Diffusion Policy trained and sampled with:
``DDPMScheduler`` with ``variance_type="fixed_small"`` and ``DDIMScheduler`` with
``set_alpha_to_one=True``, ``steps_offset=0``, ``timestep_spacing="leading"``, eta 0, and the
epsilon of the model (not re-derived from the clipped x0). Schedules are kept in float64; the
sampling loops turn the per-step coefficients into Python floats, so they never touch the device.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

#: the squaredcos_cap_v2 cap on each beta (late steps would otherwise reach beta = 1)
MAX_BETA = 0.999

#: denoise(x_t, t) -> (x0, eps): the model's clean-chunk and noise estimates at integer step t
Denoiser = Callable[[torch.Tensor, int], "tuple[torch.Tensor, torch.Tensor]"]


def make_betas(schedule: str, num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Betas (N,) in float64 for ``linear`` or ``squaredcos_cap_v2`` (Nichol & Dhariwal's cosine)."""
    n = num_train_timesteps
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
    if schedule == "squaredcos_cap_v2":
        s = torch.arange(n + 1, dtype=torch.float64) / n
        alpha_bar = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # (N + 1,) at s = 0, 1/N, ..., 1
        return (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)
    raise ValueError(f"beta_schedule: must be linear or squaredcos_cap_v2, got {schedule!r}")


def ddim_timesteps(num_train_timesteps: int, num_steps: int) -> list[int]:
    """Descending steps with diffusers' "leading" spacing: (k-1)r, ..., r, 0 with r = N // k."""
    ratio = num_train_timesteps // num_steps
    return [i * ratio for i in reversed(range(num_steps))]


class NoiseSchedule:
    """alphas_cumprod of a beta schedule, forward noising, and one DDPM or DDIM step."""

    def __init__(self, betas: torch.Tensor):
        self.betas = betas.to(torch.float64)  # (N,)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)  # (N,) strictly decreasing
        self.num_train_timesteps = len(betas)
        self._on_device: dict[torch.device, torch.Tensor] = {}  # alphas_cumprod copies for add_noise

    def alpha_bar(self, t: int) -> float:
        """alphas_cumprod[t]; 1.0 for t < 0 (the clean end of the chain)."""
        return float(self.alphas_cumprod[t]) if t >= 0 else 1.0

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise; x0, noise (B, ...), t (B,) integer steps."""
        if x0.device not in self._on_device:
            self._on_device[x0.device] = self.alphas_cumprod.to(x0.device)
        a = self._on_device[x0.device][t].to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))  # (B, 1, ..)
        return a.sqrt() * x0 + (1.0 - a).sqrt() * noise

    def split(self, x_t: torch.Tensor, output: torch.Tensor, t: int, prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The model output at step t as (x0, eps), whichever of the two it predicts."""
        a = self.alpha_bar(t)
        if prediction_type == "epsilon":
            return (x_t - math.sqrt(1.0 - a) * output) / math.sqrt(a), output
        return output, (x_t - math.sqrt(a) * output) / math.sqrt(1.0 - a)

    def ddpm_step(self, x_t: torch.Tensor, x0: torch.Tensor, t: int, noise: torch.Tensor | None) -> torch.Tensor:
        """Ancestral step t -> t-1: the posterior q(x_{t-1} | x_t, x0) mean, plus noise when t > 0."""
        a_t, a_prev = self.alpha_bar(t), self.alpha_bar(t - 1)
        alpha_t = a_t / a_prev
        beta_t = 1.0 - alpha_t
        mean = (math.sqrt(a_prev) * beta_t / (1.0 - a_t)) * x0 + (math.sqrt(alpha_t) * (1.0 - a_prev) / (1.0 - a_t)) * x_t
        if t == 0:
            return mean
        variance = max((1.0 - a_prev) / (1.0 - a_t) * beta_t, 1e-20)  # "fixed_small"
        return mean + math.sqrt(variance) * noise

    def ddim_step(self, x0: torch.Tensor, eps: torch.Tensor, t_prev: int) -> torch.Tensor:
        """Deterministic (eta 0) step to t_prev (< 0 means all the way to the clean chunk)."""
        a_prev = self.alpha_bar(t_prev)
        return math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * eps


def sample_ddpm(schedule: NoiseSchedule, denoise: Denoiser, x: torch.Tensor, draw_noise: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Ancestral sampling through every step N-1, ..., 0, from x = x_{N-1} (pure noise)."""
    for t in reversed(range(schedule.num_train_timesteps)):
        x0, _ = denoise(x, t)
        x = schedule.ddpm_step(x, x0, t, draw_noise() if t > 0 else None)
    return x


def sample_ddim(schedule: NoiseSchedule, denoise: Denoiser, x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """DDIM with eta 0 over ``num_steps`` leading-spaced steps: deterministic given the start x."""
    ratio = schedule.num_train_timesteps // num_steps
    for t in ddim_timesteps(schedule.num_train_timesteps, num_steps):
        x0, eps = denoise(x, t)
        x = schedule.ddim_step(x0, eps, t - ratio)
    return x
