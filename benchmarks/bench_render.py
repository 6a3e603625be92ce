"""How fast `kit render` is: a cold process per run, and render() alone in a warm process.

    python benchmarks/bench_render.py [--runs 20]

Writes benchmarks/results-render.md. Bundles go to a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from timing import ROOT, Row, cold, write_results

PROFILE = "profiles/qwen25-a10g.toml"


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
        rows = [
            Row.of("python -m kit render (cold process)", cold([sys.executable, "-m", "kit", "render", PROFILE, "-o", tmp], args.runs, ok=(0,))),
            Row.of("render() in a warm process", warm(args.runs)),
        ]
    write_results("results-render.md", "kit render: wall time", [f"Produced by `python benchmarks/bench_render.py` on {PROFILE}."], rows)


if __name__ == "__main__":
    main()
