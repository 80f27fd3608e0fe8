"""Meta-tests: every hook is documented in docs/plugin_hooks.md and exercised by some test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from polx import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "polx_spec"))
DOC = (ROOT / "docs" / "plugin_hooks.md").read_text()


def test_hookspecs_found():
    assert set(HOOKS) >= {"register_components", "build_head", "compute_loss", "sample", "log_metrics", "render_trajectory"}


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert re.search(rf"^## {hook}\({re.escape(params)}\)$", DOC, re.M), f"docs/plugin_hooks.md lacks '## {hook}({params})'"
    section = DOC.split(f"## {hook}(", 1)[1].split("\n## ", 1)[0]
    assert "```python" in section, f"the {hook} section has no example"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised_by_a_test(hook):
    test_files = [p for p in [*ROOT.glob("tests/test_*.py"), *ROOT.glob("plugins/*/tests/test_*.py")] if p.name != "test_docs.py"]
    assert any(hook in p.read_text() for p in test_files), f"no test mentions hook {hook!r}"
