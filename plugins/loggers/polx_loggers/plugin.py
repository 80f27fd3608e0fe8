"""Entry point module: declares the swanlab and wandb loggers (the JSON log is core's own).

Cheap: the tracker libraries are imported by the factories, only when a run opens that logger.
"""

from polx import hookimpl
from polx_loggers.config import SwanLabConfig, WandbConfig


@hookimpl
def register_components(register):
    register(
        "logger",
        "swanlab",
        SwanLabConfig,
        "polx_loggers.swanlab_logger:open_swanlab_logger",
        help="SwanLab tracker: online/offline/local/disabled; key from SWANLAB_API_KEY",
    )
    register(
        "logger",
        "wandb",
        WandbConfig,
        "polx_loggers.wandb_logger:open_wandb_logger",
        help="Weights & Biases tracker (legacy): online/offline/disabled; key from WANDB_API_KEY",
    )
