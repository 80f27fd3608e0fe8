"""polx: train and evaluate action-chunk generative visuomotor policies.

The core owns the contracts (hook specifications, the component registry, configs) and the
training/evaluation machinery; heads, objectives, loggers and environments are plugins found
through the ``polx`` entry-point group. Importing this package never imports torch.
"""

# defined in leaf modules, so that core's own modules import them from there and never import
# this package's lazy exports (polx.deploy) back: tests/test_import_graph.py keeps core acyclic
from polx.hookspecs import hookimpl  # decorator for plugin hook implementations: @polx.hookimpl
from polx.version import __version__

__all__ = ["__version__", "hookimpl", "load_policy", "PolicyClient"]


def __getattr__(name: str):
    """``polx.load_policy`` and ``polx.PolicyClient``, imported on first use (``polx.deploy``)."""
    if name in ("load_policy", "PolicyClient"):
        import polx.deploy

        return getattr(polx.deploy, name)
    raise AttributeError(f"module 'polx' has no attribute {name!r}")
