"""Record what each vLLM and SGLang release's source says, into kit/knowledge/store/engines/<engine>.json.

    python -m kit.knowledge refresh                  # all recorders, this one included
    python -m kit.knowledge.derive.source            # every engine; only releases not yet recorded
    python -m kit.knowledge.derive.source vllm       # one engine

For every release on PyPI (vllm from 0.2.0, sglang from its first), the sdist is downloaded once into
~/.cache/kit-knowledge/sdists (KIT_KNOWLEDGE_CACHE), checked against the index's sha256 and read in memory
with tarfile + ast: nothing of the engine is imported or run. A release without an sdist is recorded as
such (its facts unknown). The store keeps each release's facts as a delta against the previous recorded
release (sets as added/removed names), so it stays small; kit/knowledge/engines.py replays it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from packaging.version import Version

from kit.knowledge.delta import decode, encode
from kit.knowledge.derive import source_sglang, source_vllm
from kit.knowledge.derive.sdist import CACHE, INDEX, Release, SdistTree, fetch, releases

STORE = Path(__file__).resolve().parent.parent / "store"  # the store root; this recorder writes engines/<engine>.json
PACKAGES = ("vllm", "sglang")
PARSER = 1  # bump when a parser changes what it records: every release is then read again (from the cache)
ENGINES: dict[str, tuple[Callable[[SdistTree], tuple[dict, dict]], str]] = {
    "vllm": (source_vllm.facts, "0.2.0"),
    "sglang": (source_sglang.facts, "0"),
}


def refresh(store_dir: Path = STORE, packages: list[str] | None = None, *, fetcher=None, log=None, cache: Path = CACHE, index: str = INDEX) -> dict:
    """Record every release of each engine not yet in store_dir/engines/; returns per engine what was done.

    `fetcher` is the refresh's shared HTTP client (`python -m kit.knowledge refresh` passes one); without it, urllib.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    summary = {}
    for engine in packages or list(ENGINES):
        if engine not in ENGINES:
            continue  # another recorder's package
        summary[engine] = refresh_engine(engine, store_dir / "engines", cache, index, log, fetcher)
        s = summary[engine]
        log(
            f"{engine}: {s['releases']} releases ({len(s['without_sdist'])} without sdist), {len(s['added'])} recorded now, "
            f"{s['bytes_downloaded']} bytes downloaded, {s['seconds']} s, store {s['store_bytes']} bytes"
        )
    return summary


def refresh_engine(engine: str, engines_dir: Path, cache: Path, index: str, log, fetcher=None) -> dict:
    parse, first = ENGINES[engine]
    path = engines_dir / f"{engine}.json"
    recorded = load(path) if path.exists() else {}
    if recorded and recorded.get("parser") != PARSER:
        recorded = {}  # a changed parser: read every release again
    known = {r["version"]: r for r in recorded.get("releases", [])}
    started, downloaded, added = time.monotonic(), 0, []
    rows = []
    for rel in releases(engine, index, fetcher):
        if Version(rel.version) < Version(first):
            continue
        row = known.get(rel.version)
        if row is None or (row.get("sdist") is None and rel.sdist):
            row, nbytes = record(engine, rel, parse, cache, log, fetcher)
            downloaded += nbytes
            added.append(rel.version)
        rows.append(row)
    write(path, engine, index, rows)
    return {
        "releases": len(rows),
        "without_sdist": [r["version"] for r in rows if not r.get("sdist")],
        "added": added,
        "bytes_downloaded": downloaded,
        "seconds": round(time.monotonic() - started, 1),
        "store_bytes": path.stat().st_size,
    }


def record(engine: str, rel: Release, parse, cache: Path, log, fetcher=None) -> tuple[dict, int]:
    """One release's row: its sdist and full facts, or the note that it has no sdist."""
    if not rel.sdist:
        log(f"{engine} {rel.version}: no sdist on the index (facts unknown)")
        return {"version": rel.version, "sdist": None}, 0
    sdist, nbytes = fetch(rel, cache, fetcher)
    log(f"{engine} {rel.version}: {rel.sdist}" + (f" (downloaded {nbytes} bytes)" if nbytes else " (cached)"))
    facts, sources = parse(SdistTree(sdist, engine))
    row = {"version": rel.version, "sdist": rel.sdist, "sha256": rel.sha256, "facts": facts, "sources": sources}
    if rel.yanked:
        row["yanked"] = rel.yanked
    return row, nbytes


def load(path: Path) -> dict:
    doc = json.loads(path.read_text())
    return {**doc, "releases": decode(doc["releases"])}


def write(path: Path, engine: str, index: str, rows: list[dict]) -> None:
    """Write the store: sorted keys, one release a line (reviewable diffs), atomically."""
    head = {
        "comment": f"Written by `python -m kit.knowledge.derive.source {engine}` from each release's sdist (read with ast, never imported). "
        "Each release's facts and sources are a delta against the previous recorded release: "
        "{'+': added, '-': removed} for sets and maps, {'=': value} otherwise, {'drop': true} when a fact is gone. "
        "A release with sdist null has no sdist on the index: its facts are unknown. Do not edit by hand.",
        "engine": engine,
        "index": f"{index.rstrip('/')}/{engine}/",
        "parser": PARSER,
    }
    rows = sorted(rows, key=lambda r: Version(r["version"]))
    lines = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in encode(rows)]
    text = json.dumps(head, sort_keys=True, indent=1)[:-2] + ',\n "releases": [\n' + ",\n".join(lines) + "\n ]\n}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    unknown = [a for a in argv if a not in ENGINES]
    if unknown:
        print(f"unknown engine(s) {', '.join(unknown)}: choose from {', '.join(ENGINES)}", file=sys.stderr)
        return 2
    refresh(packages=argv or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
