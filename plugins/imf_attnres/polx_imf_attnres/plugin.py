"""Entry point module: declares this plugin's components (cheap: no torch import)."""

from polx import hookimpl


@hookimpl
def register_components(register):
    pass
