"""Entry point module: declares this plugin's components (cheap: no torch import)."""

from polx import hookimpl
from polx_imf_attnres.config import IMFAttnResConfig, IMFConfig


@hookimpl
def register_components(register):
    register(
        "head",
        "imf_attnres",
        IMFAttnResConfig,
        "polx_imf_attnres.head:build_head",
        help="one-step improved-MeanFlow policy head on an Attention-Residuals transformer",
        default_objective="imf",
        objectives=("imf",),
    )
    register(
        "objective",
        "imf",
        IMFConfig,
        "polx_imf_attnres.objective:build_objective",
        help="improved MeanFlow: average-velocity regression through a JVP; one-step sampling",
    )
