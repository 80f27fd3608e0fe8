"""Entry point module: declares this plugin's components (cheap: no torch import).

The factories are ``"module:attr"`` strings, so torch loads only when a head or objective is built.
"""

from polx import hookimpl
from polx_ddpm_transformer.config import DDPMConfig, DDPMTransformerConfig


@hookimpl
def register_components(register):
    register(
        "head",
        "ddpm_transformer",
        DDPMTransformerConfig,
        "polx_ddpm_transformer.head:build_head",
        help="Diffusion Policy transformer (DP-T): obs/time memory, causal action-token decoder",
        default_objective="ddpm",
        objectives=("ddpm",),
    )
    register(
        "objective",
        "ddpm",
        DDPMConfig,
        "polx_ddpm_transformer.objective:build_objective",
        help="DDPM denoising loss on valid entries; DDPM (all steps) or DDIM (fewer, eta 0) sampling",
    )
