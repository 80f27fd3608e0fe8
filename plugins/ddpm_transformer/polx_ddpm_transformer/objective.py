"""The ``ddpm`` objective: denoising loss on valid entries only, DDPM or DDIM sampling."""

from __future__ import annotations

import torch
from torch import nn

from polx.errors import UserInputError
from polx.policy.valid import batch_valid, group_means
from polx_ddpm_transformer.config import DDPMConfig
from polx_ddpm_transformer.schedule import NoiseSchedule, make_betas, sample_ddim, sample_ddpm


class DDPMObjective:
    """Trains a head to predict the noise (or the clean chunk) of a noised action chunk."""

    name = "ddpm"

    def __init__(self, config: DDPMConfig):
        self.config = config
        self.schedule = NoiseSchedule(
            make_betas(config.beta_schedule, config.num_train_timesteps, config.beta_start, config.beta_end)
        )
        self.default_num_steps = config.num_inference_steps

    def compute_loss(self, head: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        """MSE over valid entries: sum(valid * err) / max(#valid, 1); metrics ``mse``, ``valid_fraction``."""
        action = batch["action"]  # (B, T, A), normalized
        valid = batch_valid(batch)  # (B, T, A) bool, computed by the policy
        # Invalid entries are zeroed before noising: the head attends across the chunk, so their
        # values would otherwise reach the valid entries' predictions (and the loss).
        x0 = torch.where(valid, action, torch.zeros_like(action))
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.schedule.num_train_timesteps, (x0.shape[0],), device=x0.device)  # (B,)
        pred = head(self.schedule.add_noise(x0, noise, t), t, batch["cond"])  # (B, T, A)
        target = noise if self.config.prediction_type == "epsilon" else x0
        err = torch.where(valid, (pred - target) ** 2, torch.zeros_like(pred))
        n_valid = valid.sum()
        loss = err.sum() / n_valid.clamp(min=1)
        groups = group_means((pred - target).detach() ** 2, valid, head.spec.groups())  # mse per action group
        values = torch.stack([loss.detach(), n_valid / valid.numel(), *groups.values()]).tolist()  # one device sync
        return loss, {"mse": values[0], "valid_fraction": values[1], **dict(zip(groups, values[2:]))}

    def sample(
        self, head: nn.Module, cond: torch.Tensor, num_steps: int | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(B, horizon, action_dim): DDPM over every step if num_steps == N, else DDIM (eta 0)."""
        n_train = self.schedule.num_train_timesteps
        num_steps = self.default_num_steps if num_steps is None else num_steps
        if not 1 <= num_steps <= n_train:
            raise UserInputError(f"num_steps: ddpm samples with 1 to {n_train} (num_train_timesteps) steps, got {num_steps}")
        shape = (cond.shape[0], head.spec.horizon, head.spec.action_dim)
        dtype = cond.dtype if cond.dtype.is_floating_point else torch.float32

        def draw_noise() -> torch.Tensor:  # on the generator's device, so a CPU generator works with CUDA
            device = generator.device if generator is not None else cond.device
            return torch.randn(shape, generator=generator, device=device, dtype=dtype).to(cond.device)

        def denoise(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
            steps = torch.full((shape[0],), t, dtype=torch.long, device=cond.device)
            x0, eps = self.schedule.split(x, head(x, steps, cond), t, self.config.prediction_type)
            if self.config.clip_sample:
                x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
            return x0, eps

        with torch.no_grad():  # the head's train/eval mode stays as the caller left it
            if num_steps == n_train:
                return sample_ddpm(self.schedule, denoise, draw_noise(), draw_noise)
            return sample_ddim(self.schedule, denoise, draw_noise(), num_steps)


def build_objective(config: DDPMConfig) -> DDPMObjective:
    """The registered factory of objective ``ddpm``."""
    return DDPMObjective(config)
