"""What the benchmark scripts share: timing a command in fresh processes, and the results table."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def env() -> dict[str, str]:
    """The environment of a timed run: kit's modules byte-compiled once, as pip leaves an install.

    This machine sets PYTHONDONTWRITEBYTECODE=1, which would make every run recompile kit's
    editable sources; NO_COLOR keeps the output plain.
    """
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"NO_COLOR": "1"}


def cold(cmd: list[str], runs: int, cwd: Path = ROOT, ok: tuple[int, ...] = (0, 1)) -> list[float]:
    """Wall seconds of `runs` fresh processes of `cmd`, after one untimed run (page cache, uv's cache)."""
    e = env()
    subprocess.run(cmd, cwd=cwd, env=e, capture_output=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=e, capture_output=True)
        times.append(time.perf_counter() - start)
        if proc.returncode not in ok:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return times


@dataclass
class Row:
    case: str
    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float

    @classmethod
    def of(cls, case: str, seconds: list[float]) -> Row:
        t = sorted(seconds)
        p90 = t[max(int(len(t) * 0.9) - 1, 0)]
        row = cls(case, len(t), statistics.median(t) * 1000, p90 * 1000, t[0] * 1000)
        print(f"{case:<50} n={row.runs:<3} median {row.median_ms:8.1f} ms   p90 {row.p90_ms:8.1f} ms   min {row.min_ms:8.1f} ms")
        return row


def write_results(name: str, title: str, notes: list[str], rows: list[Row]) -> None:
    """benchmarks/<name>: the machine, the notes, and one table row per case."""
    lines = [
        f"# {title}",
        "",
        f"{date.today().isoformat()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        *notes,
        "",
        "| case | runs | median ms | p90 ms | min ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {r.case} | {r.runs} | {r.median_ms:.1f} | {r.p90_ms:.1f} | {r.min_ms:.1f} |" for r in rows]
    (ROOT / "benchmarks" / name).write_text("\n".join(lines) + "\n")
