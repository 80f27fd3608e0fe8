"""Exceptions that reach the user as one clear message (the CLI maps them to exit codes)."""

from __future__ import annotations


class PolxError(Exception):
    """A runtime or plugin failure: the CLI prints the message and exits 1."""


class UserInputError(PolxError):
    """Bad user input (names, config, paths): the CLI prints the message and exits 2."""


class ConfigError(UserInputError):
    """One or more config problems, one line each, each starting with its dotted path."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UnknownComponentError(UserInputError):
    """``unknown head 'x'; available: a, b``."""

    def __init__(self, kind: str, name: str, available: list[str], note: str | None = None):
        self.kind, self.name, self.available = kind, name, sorted(available)
        avail = ", ".join(self.available) if self.available else "none (install a plugin that provides one)"
        why = f" ({note})" if note else ""
        super().__init__(f"unknown {kind} {name!r}{why}; available: {avail}")


class DuplicateComponentError(PolxError):
    """Two plugins registered the same component name."""


class PluginLoadError(PolxError):
    """A plugin failed to load (raised only under ``POLX_STRICT_PLUGINS=1``)."""


class DatasetError(UserInputError):
    """A dataset path or its contents are not what polx needs; the message names the path."""
