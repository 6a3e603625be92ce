"""How fast `kit render` is: a cold process per run, and render() alone in a warm process.

    python benchmarks/bench_render.py [--runs 20]

Writes benchmarks/results-render.md. Bundles go to a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILE = "profiles/qwen25-a10g.toml"


def cold(runs: int, out: str) -> list[float]:
    cmd = [sys.executable, "-m", "kit", "render", PROFILE, "-o", out]
    # As installed: kit's modules byte-compiled once, like pip does at install. (This machine sets
    # PYTHONDONTWRITEBYTECODE=1, which would make every run recompile kit's editable sources.)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"NO_COLOR": "1"}
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def warm(runs: int) -> list[float]:
    sys.path.insert(0, str(ROOT))
    from kit.load import load
    from kit.render import render

    loaded = load(ROOT / PROFILE)
    render(loaded)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        render(loaded)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"python -m kit render (cold process)": cold(args.runs, tmp), "render() in a warm process": warm(args.runs)}
    rows = []
    for name, t in cases.items():
        t = sorted(t)
        rows.append((name, statistics.median(t) * 1000, t[int(len(t) * 0.9) - 1] * 1000, t[0] * 1000))
        print(f"{name:<38} median {rows[-1][1]:7.1f} ms   p90 {rows[-1][2]:7.1f} ms   min {rows[-1][3]:7.1f} ms")
    lines = [
        "# kit render: wall time",
        "",
        f"{date.today().isoformat()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {args.runs} runs each, {PROFILE}.",
        "Produced by `python benchmarks/bench_render.py`.",
        "",
        "| case | median ms | p90 ms | min ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {n} | {m:.1f} | {p:.1f} | {lo:.1f} |" for n, m, p, lo in rows]
    (ROOT / "benchmarks" / "results-render.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
