"""How long `kit lock` takes on the library (warm uv cache), and `kit check` with a fresh lock.

    python benchmarks/bench_lock.py [--runs 20] [--lock-runs 5]

Each run is a fresh `python -m kit ...` process (interpreter start and imports included). The
check cases read the committed lockfiles and touch no network; the "no lockfile" case checks a
copy of the library without its locks, for comparison. The lock cases resolve against the index
with uv's cache already warm (one untimed run first), and must leave the lockfiles byte-identical.
Prints medians and writes benchmarks/results-lock.md.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

from timing import ROOT, Row, cold, write_results

ONE = "profiles/qwen25-a10g-flashinfer.toml"


def digest() -> str:
    h = hashlib.sha256()
    for p in sorted((ROOT / "profiles").glob("*.lock")):
        h.update(p.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="runs of each check case")
    parser.add_argument("--lock-runs", type=int, default=5, help="runs of each lock case (they reach the index)")
    args = parser.parse_args()
    kit = [sys.executable, "-m", "kit"]
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp)
        (bare / ".git").mkdir()
        shutil.copytree(ROOT / "profiles", bare / "profiles", ignore=shutil.ignore_patterns("*.lock"))
        n_profiles = len(list((ROOT / "profiles").glob("*.toml")))
        cases = [
            ("kit check, one profile, fresh lock (no network)", kit + ["check", ONE], args.runs, ROOT),
            ("kit check, one profile, no lockfile", kit + ["check", ONE], args.runs, bare),
            (f"kit check, library ({n_profiles}), fresh locks", kit + ["check"], args.runs, ROOT),
            (f"kit lock --check, library ({n_profiles})", kit + ["lock", "--check"], args.runs, ROOT),
            ("kit lock, one profile (warm uv cache)", kit + ["lock", ONE], args.lock_runs, ROOT),
            (f"kit lock, library ({n_profiles}, warm uv cache)", kit + ["lock"], args.lock_runs, ROOT),
        ]
        before = digest()
        rows = [Row.of(name, cold(cmd, runs, cwd)) for name, cmd, runs, cwd in cases]
        if digest() != before:
            raise SystemExit("kit lock changed the committed lockfiles: locking is not deterministic, or they were stale")
    from kit.resolve import uv_version

    write_results(
        "results-lock.md",
        "kit lock and kit check with a lock: cold-process wall time",
        [
            f"uv {uv_version()}. Produced by `python benchmarks/bench_lock.py`. Check cases read committed lockfiles and",
            "use no network; lock cases resolve against the package index with uv's cache warm, and left every",
            "lockfile byte-identical. Target: kit check with a fresh lock well under 300 ms median for one profile.",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
