"""Is a source distribution pure Python, or does building it compile code? (for `kit lock`)

kit reads the sdist itself: it asks the index for the file (PEP 691 JSON), checks its sha256, and
looks at the files inside. An sdist with no native sources (C, C++, CUDA, Cython, Rust, Fortran) and no
native build backend builds by copying Python files: any image can build it. Otherwise it names the
compilers the build needs.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from dataclasses import dataclass

from packaging.utils import canonicalize_name, parse_sdist_filename

from kit.errors import OperationError

DEFAULT_INDEX = "https://pypi.org/simple"
# File suffix -> the compiler a build of that source needs (the names `kit check` explains).
NATIVE = {".c": "gcc", ".cc": "g++", ".cpp": "g++", ".cxx": "g++", ".cu": "nvcc", ".pyx": "gcc", ".f90": "gfortran", ".f": "gfortran"}
NATIVE_FILES = {"Cargo.toml": "cargo", "CMakeLists.txt": "cmake"}


@dataclass(frozen=True)
class SdistKind:
    name: str
    version: str
    filename: str
    sha256: str
    compilers: tuple[str, ...]  # empty: pure Python

    @property
    def pure(self) -> bool:
        return not self.compilers

    def describe(self) -> str:
        """`pure-python` or `compiles(gcc,nvcc)`: the lock header's word for it (no spaces)."""
        return "pure-python" if self.pure else f"compiles({','.join(self.compilers)})"


def index_url(configured: str | None) -> str:
    return (configured or os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL") or DEFAULT_INDEX).rstrip("/")


def classify(name: str, version: str, index: str | None = None) -> SdistKind:
    """Fetch `name==version`'s sdist from the index and classify what building it takes."""
    import httpx

    base = index_url(index)
    try:
        with httpx.Client(timeout=60, follow_redirects=True) as client:
            page = client.get(f"{base}/{canonicalize_name(name)}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            page.raise_for_status()
            files = page.json().get("files", [])
            entry = next((f for f in files if _is_sdist_of(f["filename"], name, version)), None)
            if entry is None:
                raise OperationError(f"{name}=={version}: the index ({base}) lists no source distribution", fix="pin a version that has a wheel")
            data = client.get(entry["url"]).content
    except httpx.HTTPError as exc:
        raise OperationError(f"could not read {name}=={version}'s sdist from {base}: {exc}", fix="check the network or the index URL") from None
    digest = hashlib.sha256(data).hexdigest()
    want = entry.get("hashes", {}).get("sha256")
    if want and want != digest:
        raise OperationError(f"{entry['filename']}: sha256 {digest} is not the index's {want}", fix="retry; the download was corrupted")
    return SdistKind(name=canonicalize_name(name), version=version, filename=entry["filename"], sha256=digest, compilers=compilers_needed(entry["filename"], data))


def _is_sdist_of(filename: str, name: str, version: str) -> bool:
    try:
        n, v = parse_sdist_filename(filename)
    except ValueError:
        return False
    return n == canonicalize_name(name) and str(v) == version


def compilers_needed(filename: str, data: bytes) -> tuple[str, ...]:
    """The compilers a build of this sdist needs, from the files it contains; () when none."""
    names = _members(filename, data)
    found = set()
    for member in names:
        base = member.rsplit("/", 1)[-1]
        if base in NATIVE_FILES:
            found.add(NATIVE_FILES[base])
        suffix = "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""
        if suffix in NATIVE:
            found.add(NATIVE[suffix])
    return tuple(sorted(found))


def _members(filename: str, data: bytes) -> list[str]:
    if filename.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return zf.namelist()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        return [m.name for m in tf.getmembers() if m.isfile()]
