"""How fast `kit check` is from a cold process: one profile and the whole library.

    python benchmarks/bench_check.py [--runs 30]

Each run is a fresh `python -m kit check ...` process (interpreter start and imports included), as
in an editor's on-save hook or a pre-commit run. Prints medians and writes benchmarks/results-check.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    # The libraries the check path cannot do without: what is left above this is kit's own.
    "import pydantic+typer+rich (floor)": [sys.executable, "-c", "from pydantic import BaseModel; import typer, typer._adapters, rich.console"],
    "kit check, one profile": [sys.executable, "-m", "kit", "check", "profiles/qwen25-a10g-flashinfer.toml"],
    "kit check, whole library": [sys.executable, "-m", "kit", "check"],
}


def measure(cmd: list[str], runs: int) -> list[float]:
    # As installed: kit's modules byte-compiled once, like pip does at install. (This machine sets
    # PYTHONDONTWRITEBYTECODE=1, which would make every run recompile kit's editable sources.)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"NO_COLOR": "1"}
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True)  # warm the page cache, not the process
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True)
        times.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for name, cmd in CASES.items():
        t = sorted(measure(cmd, args.runs))
        rows.append((name, statistics.median(t) * 1000, t[int(len(t) * 0.9) - 1] * 1000, t[0] * 1000))
        print(f"{name:<28} median {rows[-1][1]:6.1f} ms   p90 {rows[-1][2]:6.1f} ms   min {rows[-1][3]:6.1f} ms")
    lines = [
        "# kit check: cold-process wall time",
        "",
        f"{date.today().isoformat()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {args.runs} runs each.",
        "Produced by `python benchmarks/bench_check.py`; target: well under 300 ms median for one profile.",
        "",
        "| case | median ms | p90 ms | min ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {n} | {m:.1f} | {p:.1f} | {lo:.1f} |" for n, m, p, lo in rows]
    (ROOT / "benchmarks" / "results-check.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
