"""``polx plugin new KIND NAME``: write a complete, installable plugin distribution to start from.

What is written is a working example, not a skeleton: ``pip install`` it and ``polx train`` (or
``--logger NAME``) uses it as generated, and its own test passes. The templates are in
``polx.scaffold_templates``; ``tests/test_scaffold.py`` installs and trains each kind.

Layout for ``polx plugin new head mlp``::

    polx-plugin-mlp/
      pyproject.toml           distribution polx-plugin-mlp, entry point polx: mlp = polx_mlp.plugin
      README.md
      polx_mlp/__init__.py
      polx_mlp/config.py       the attrs config class (cheap: loaded with the plugin, no torch)
      polx_mlp/plugin.py       register_components (and render_trajectory for an env)
      polx_mlp/<kind>.py       the component: head.py, objective.py, env.py, logger.py or dataset.py
      tests/test_mlp.py        its own tests, and polx.testing's contract check for its kind
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from polx import scaffold_templates as templates
from polx.errors import UserInputError

KIND_NAMES = ("head", "objective", "env", "logger", "dataset")


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def render(kind: str, name: str) -> dict[str, str]:
    """Relative path -> text of every file of the distribution for component ``name`` of ``kind``."""
    if kind not in KIND_NAMES:
        raise UserInputError(f"unknown kind {kind!r}; choose one of: {', '.join(KIND_NAMES)}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UserInputError(f"name {name!r}: use lower-case letters, digits and underscores, starting with a letter (e.g. mlp_head)")
    values = {"name": name, "Name": camel(name), "package": f"polx_{name}", "dist": f"polx-plugin-{name.replace('_', '-')}", "kind": kind}
    parts = templates.KINDS[kind]
    files = {
        "pyproject.toml": templates.PYPROJECT,
        "README.md": parts["readme"],
        "$package/__init__.py": templates.INIT,
        "$package/config.py": parts["config"],
        "$package/plugin.py": parts["plugin"],
        f"$package/{kind}.py": parts["module"],
        "tests/test_$name.py": parts["test"],
    }
    return {Template(path).substitute(values): Template(text).substitute(values).lstrip("\n") for path, text in files.items()}


def write_plugin(kind: str, name: str, out: Path) -> Path:
    """Write the distribution under ``out``; refuses (exit 2) to overwrite an existing directory."""
    files = render(kind, name)
    root = Path(out) / f"polx-plugin-{name.replace('_', '-')}"
    if root.exists():
        raise UserInputError(f"{str(root)!r} already exists; choose another --out or NAME (nothing was written)")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
