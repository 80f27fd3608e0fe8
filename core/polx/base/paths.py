"""Paths a command will write: checked before anything is created."""

from __future__ import annotations

import os
from pathlib import Path

from polx.errors import UserInputError


def check_writable_dir(path: Path, option: str) -> None:
    """``path`` is, or can be created as, a directory polx can write; else ``UserInputError`` (nothing is created)."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"is under {str(existing)!r}, which is a file"
        raise UserInputError(f"{option} {str(path)!r} {where}, not a directory; choose a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(f"{option} {str(path)!r}: {str(existing)!r} is not writable; choose a directory you can write")
