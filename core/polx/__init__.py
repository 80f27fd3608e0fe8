"""polx: train and evaluate action-chunk generative visuomotor policies.

The core owns the contracts (hook specifications, the component registry, configs) and the
training/evaluation machinery; heads, objectives, loggers and environments are plugins found
through the ``polx`` entry-point group. Importing this package never imports torch.
"""

import pluggy

__version__ = "0.1.0"

#: Decorator for plugin hook implementations: ``@polx.hookimpl def register_components(register): ...``
hookimpl = pluggy.HookimplMarker("polx")

__all__ = ["__version__", "hookimpl", "load_policy", "PolicyClient"]


def __getattr__(name: str):
    """``polx.load_policy`` and ``polx.PolicyClient``, imported on first use (``polx.deploy``)."""
    if name in ("load_policy", "PolicyClient"):
        import polx.deploy

        return getattr(polx.deploy, name)
    raise AttributeError(f"module 'polx' has no attribute {name!r}")
