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
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE = "profiles/qwen25-a10g-flashinfer.toml"


def measure(cmd: list[str], runs: int, cwd: Path) -> list[float]:
    # As installed: kit's modules byte-compiled once, like pip does at install. (This machine sets
    # PYTHONDONTWRITEBYTECODE=1, which would make every run recompile kit's editable sources.)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"NO_COLOR": "1"}
    subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)  # warm page cache and uv's cache; not timed
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)
        times.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return times


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
        rows = []
        for name, cmd, runs, cwd in cases:
            t = sorted(measure(cmd, runs, cwd))
            p90 = t[max(int(len(t) * 0.9) - 1, 0)]
            rows.append((name, runs, statistics.median(t) * 1000, p90 * 1000, t[0] * 1000))
            print(f"{name:<50} n={runs:<3} median {rows[-1][2]:8.1f} ms   p90 {rows[-1][3]:8.1f} ms   min {rows[-1][4]:8.1f} ms")
        if digest() != before:
            raise SystemExit("kit lock changed the committed lockfiles: locking is not deterministic, or they were stale")
    from kit.resolve import uv_version

    lines = [
        "# kit lock and kit check with a lock: cold-process wall time",
        "",
        f"{date.today().isoformat()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, uv {uv_version()}.",
        "Produced by `python benchmarks/bench_lock.py`. Check cases read committed lockfiles and use no network;",
        "lock cases resolve against the package index with uv's cache warm, and left every lockfile byte-identical.",
        "Target: kit check with a fresh lock well under 300 ms median for one profile.",
        "",
        "| case | runs | median ms | p90 ms | min ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {n} | {r} | {m:.1f} | {p:.1f} | {lo:.1f} |" for n, r, m, p, lo in rows]
    (ROOT / "benchmarks" / "results-lock.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
