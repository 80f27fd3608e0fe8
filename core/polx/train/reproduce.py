"""What a run directory keeps so the run can be made again, beside ``config.yaml`` and the manifest.

* ``requirements.txt``: every installed distribution as ``name==version`` (``pip freeze``'s
  format, read from ``importlib.metadata`` in-process: milliseconds, where a ``pip`` subprocess
  costs a second per run);
* ``git.diff``: ``git diff HEAD`` of the polx checkout when its tree is dirty (the manifest has
  the revision; the diff is what the revision does not say);
* ``command.sh``: the exact command, run from the directory it was started in, with the
  ``POLX_*`` and ``PYTHONPATH`` variables that change what loads.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from importlib import metadata
from pathlib import Path

from polx.base.checkpoint import atomic_write

ENV_KEYS = ("PYTHONPATH",)  # besides every POLX_* variable


def installed_distributions() -> str:
    """``name==version`` lines, sorted by name, one per installed distribution."""
    seen = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return "".join(line + "\n" for _, line in sorted(seen.items()))


def git_diff(directory: Path) -> str | None:
    """``git diff HEAD`` of the checkout holding ``directory`` when it has uncommitted changes, else None."""
    try:
        done = subprocess.run(["git", "diff", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 and done.stdout.strip() else None


def command_script(argv: list[str], cwd: Path) -> str:
    """A shell script that runs ``argv`` again from ``cwd`` with the variables that choose what loads."""
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("POLX_") or k in ENV_KEYS}
    lines = ["#!/bin/sh", "# the command that made this run (polx writes this file; edit a copy)", "set -e", f"cd {shlex.quote(str(cwd))}"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines.append(shlex.join(argv) if argv else "# (started from Python, not a command line: see manifest.json)")
    return "\n".join(lines) + "\n"


def write_reproduction(run_dir: Path, argv: list[str]) -> None:
    """``requirements.txt``, ``command.sh`` and (dirty tree only) ``git.diff`` in ``run_dir``."""
    atomic_write(run_dir / "requirements.txt", lambda f: f.write(installed_distributions().encode()))
    atomic_write(run_dir / "command.sh", lambda f: f.write(command_script(list(argv), Path.cwd()).encode()))
    (run_dir / "command.sh").chmod(0o755)
    diff = git_diff(Path(__file__).resolve().parents[1])
    if diff is not None:
        atomic_write(run_dir / "git.diff", lambda f: f.write(diff.encode()))


def peak_memory_mb(device_type: str) -> float:
    """The process's peak memory so far: CUDA's allocator peak on a GPU, the resident-set peak on CPU."""
    if device_type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
