"""polx's version, in a module of its own so core modules can name it without importing the package's lazy exports."""

__version__ = "0.1.0"
