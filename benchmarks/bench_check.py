"""How fast `kit check` is from a cold process: one profile and the whole library.

    python benchmarks/bench_check.py [--runs 30]

Each run is a fresh `python -m kit check ...` process (interpreter start and imports included), as
in an editor's on-save hook or a pre-commit run. Prints medians and writes benchmarks/results-check.md.
"""

from __future__ import annotations

import argparse
import sys

from timing import Row, cold, write_results

CASES = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    # The libraries the check path cannot do without (off a terminal it does not load rich): what is
    # left above this is kit's own.
    "import pydantic+typer (floor)": [sys.executable, "-c", "from pydantic import BaseModel; import typer, typer._adapters"],
    "kit check, one profile": [sys.executable, "-m", "kit", "check", "profiles/qwen25-a10g-flashinfer.toml"],
    # A lock that holds model facts read by `kit lock` (from the test Hub: benchmarks/results-model-facts.md).
    "kit check, one profile, model facts in its lock": [sys.executable, "-m", "kit", "check", "benchmarks/model-facts/qwen3-8b-40k.toml"],
    "kit check, whole library": [sys.executable, "-m", "kit", "check"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    rows = [Row.of(name, cold(cmd, args.runs)) for name, cmd in CASES.items()]
    write_results(
        "results-check.md",
        "kit check: cold-process wall time",
        ["Produced by `python benchmarks/bench_check.py`; target: well under 300 ms median for one profile."],
        rows,
    )


if __name__ == "__main__":
    main()
