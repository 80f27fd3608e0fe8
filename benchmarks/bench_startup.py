"""Start-up time of ``polx --help`` against ``python -c "import torch"`` (target: under a third).

Each command runs once to warm the file cache, then ``--runs`` times; the median wall time of
each is reported, with their ratio.

    .venv/bin/python benchmarks/bench_startup.py [--runs 7]

Prints readable lines, then one JSON object on its own line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_RATIO = 1 / 3


def polx_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m polx``."""
    script = Path(sys.executable).parent / "polx"
    if script.exists():
        return [str(script)]
    found = shutil.which("polx")
    return [found] if found else [sys.executable, "-m", "polx"]


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    polx = polx_command() + ["--help"]
    torch_import = [sys.executable, "-c", "import torch"]
    polx_s = median_seconds(polx, args.runs)
    torch_s = median_seconds(torch_import, args.runs)
    ratio = polx_s / torch_s
    print(f"{' '.join(polx)}: {polx_s * 1e3:.0f} ms (median of {args.runs})")
    print(f"python -c 'import torch': {torch_s * 1e3:.0f} ms (median of {args.runs})")
    verdict = "meets" if ratio < TARGET_RATIO else "MISSES"
    print(f"ratio {ratio:.3f} ({verdict} the target < {TARGET_RATIO:.3f})")
    print(
        json.dumps(
            {
                "benchmark": "bench_startup",
                "runs": args.runs,
                "polx_help_ms": round(polx_s * 1e3, 1),
                "import_torch_ms": round(torch_s * 1e3, 1),
                "ratio": round(ratio, 3),
                "target_ratio": round(TARGET_RATIO, 3),
                "meets_target": ratio < TARGET_RATIO,
            }
        )
    )


if __name__ == "__main__":
    main()
