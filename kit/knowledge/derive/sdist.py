"""The sdists of a package on PyPI: listed from the PEP 691 JSON simple API, downloaded once into a cache
outside the repository, checked against the index's sha256, and read in memory (tarfile, never extracted)."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import parse_sdist_filename
from packaging.version import InvalidVersion, Version

INDEX = "https://pypi.org/simple/"
ACCEPT = "application/vnd.pypi.simple.v1+json"
CACHE = Path(os.environ.get("KIT_KNOWLEDGE_CACHE", Path.home() / ".cache" / "kit-knowledge")) / "sdists"


@dataclass(frozen=True)
class Release:
    """One version on the index and its sdist (None when the release was published without one)."""

    version: str
    sdist: str | None = None
    url: str | None = None
    sha256: str | None = None
    size: int = 0
    yanked: str | None = None  # the index's reason when the sdist is yanked (still installable by an exact pin)


def releases(package: str, index: str = INDEX, fetcher=None) -> list[Release]:
    """Every final or post release of `package`, oldest first, with its .tar.gz sdist if any (yanked ones too: a pin installs them).

    `fetcher` (kit.knowledge.derive.fetch.Fetcher, when the whole refresh shares one) asks its own index and counts the bytes.
    """
    if fetcher is not None:
        doc = fetcher.project(package)
    else:
        req = urllib.request.Request(f"{index.rstrip('/')}/{package}/", headers={"Accept": ACCEPT})
        with urllib.request.urlopen(req, timeout=60) as resp:
            doc = json.load(resp)
    sdists: dict[str, dict] = {}
    for f in doc["files"]:
        if not f["filename"].endswith(".tar.gz"):
            continue
        try:
            _, version = parse_sdist_filename(f["filename"])
        except Exception:  # a file name the index accepted long ago but packaging no longer parses
            continue
        sdists[str(version)] = f
    out = []
    for v in doc["versions"]:
        try:
            parsed = Version(v)
        except InvalidVersion:
            continue
        if parsed.is_prerelease or parsed.is_devrelease:
            continue
        f = sdists.get(str(parsed))
        if f is None:
            out.append(Release(v))
        else:
            yanked = f.get("yanked") or None
            yanked = (yanked if isinstance(yanked, str) else "yanked") if yanked else None
            out.append(Release(v, f["filename"], f["url"], f["hashes"]["sha256"], f.get("size", 0), yanked))
    return sorted(out, key=lambda r: Version(r.version))


def fetch(release: Release, cache: Path = CACHE, fetcher=None) -> tuple[Path, int]:
    """The cached sdist of `release` (downloaded if absent), and the bytes downloaded now (0 from cache)."""
    assert release.sdist and release.url and release.sha256
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / release.sdist
    if path.exists() and _sha256(path) == release.sha256:
        return path, 0
    tmp = path.with_suffix(".part")
    h = hashlib.sha256()
    if fetcher is not None:
        data = fetcher.get(release.url)
        h.update(data)
        tmp.write_bytes(data)
    else:
        with urllib.request.urlopen(release.url, timeout=600) as resp, tmp.open("wb") as out:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                out.write(block)
    if h.hexdigest() != release.sha256:
        tmp.unlink()
        raise ValueError(f"{release.sdist}: sha256 {h.hexdigest()} does not match the index's {release.sha256}")
    tmp.replace(path)
    return path, path.stat().st_size


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SdistTree:
    """The .py files of one sdist, by their path inside the package root (the directory holding `package/`)."""

    def __init__(self, path: Path, package: str):
        self.files: dict[str, bytes] = {}
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".py"):
                    continue
                parts = member.name.split("/")
                # sdist-name/vllm/x.py, or sdist-name/python/sglang/x.py: the path from the package directory
                start = 1 if parts[1:2] == [package] else 2 if parts[1:3] == ["python", package] else 0
                if not start:
                    continue
                rel = "/".join(parts[start:])
                data = tar.extractfile(member)
                if data is not None and rel not in self.files:
                    self.files[rel] = data.read()

    def read(self, path: str) -> str | None:
        data = self.files.get(path)
        return data.decode("utf-8", "replace") if data is not None else None

    def under(self, prefix: str) -> list[str]:
        return sorted(p for p in self.files if p.startswith(prefix))


if __name__ == "__main__":  # download every sdist of the named packages into the cache (no parsing)
    import sys

    for pkg in sys.argv[1:]:
        for r in releases(pkg):
            if r.sdist:
                p, n = fetch(r)
                print(pkg, r.version, n, flush=True)
            else:
                print(pkg, r.version, "no sdist", flush=True)
