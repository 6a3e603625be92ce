"""What rules ask the knowledge store. Cheap: each package's file is read on first use, nothing at import.

Versions are compared as PEP 440 versions (`0.9.2` == `0.9.2.0`). A local version (`2.9.0+cu126`) is a
different build from the public release: its metadata is not the PyPI release's, so `release()` does
not answer for it, while `torch_cuda()` reads its CUDA from the local tag. None always means "kit does
not know" (a package or release not recorded, a fact no artifact showed), never "no".

    releases(pkg) -> tuple[str, ...]
        every recorded release of pkg, oldest first (empty if pkg is not recorded).
    release(pkg, version) -> Release | None
        requires_dist (tuple of PEP 508 strings, None when no wheel's metadata was read: sdist-only),
        requires_python, yanked (False or the reason / True), files (WheelFile / sdist rows with
        python/abi/platform tags and glibc floor), sdist_only, metadata_source ("file sha256 via").
    torch_cuda(version) -> str | None
        "12.6" for torch 2.7.1 (its PyPI Linux x86_64 build pins nvidia-cuda-runtime-cu12==12.6.77),
        "12.6" for 2.9.0+cu126 (the local tag), "cpu" for +cpu, None when unknown.
    torch_archs(version) -> frozenset[str] | None
        the GPU architectures that torch build ships kernels for ("sm_80", ...; "compute_XX" where the
        build names PTX), as compiled into its libtorch_python.so (what torch.cuda.get_arch_list()
        returns). 2.7.1 -> sm_50..sm_90, no sm_100; 2.8.0 -> sm_75..sm_120. A local variant is
        answered only when its CUDA is the PyPI build's (2.7.1+cu126 yes, 2.9.0+cu126 None); +cpu ->
        frozenset().
    torch_archs_source(version) -> dict | None
        the wheel file, sha256, member and string torch_archs() read.
    needed_libs(pkg, version) -> dict[str, list[str]] | None
        per compiled member of the release's Linux x86_64 wheel, the shared libraries it needs
        (DT_NEEDED: libnuma.so.1, libcudart.so.13, ...); {} for a wheel without compiled members.
    needed_libs_source(pkg, version) -> dict | None
        the wheel file, sha256 and, per member, how the list was read (see derive/elf_read.py).
    wheel_glibc_floor(pkg, version, python, platform="x86_64") -> Version | None
        the lowest glibc among the release's manylinux wheels installable on that Python and CPU.
    has_wheel_for(pkg, version, python_version, glibc, arch="x86_64") -> bool | None
        whether a wheel installs on CPython python_version on Linux arch with that glibc (glibc None:
        the glibc is not checked); None when the release is not recorded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from packaging.version import InvalidVersion, Version

from . import STORE_DIR

LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY = re.compile(r"^(manylinux1|manylinux2010|manylinux2014)_(\w+)$")
_LOCAL_CUDA = re.compile(r"^cu(\d+)(\d)$")


@dataclass(frozen=True)
class WheelFile:
    name: str
    sha256: str
    python: tuple[str, ...] = ()
    abi: tuple[str, ...] = ()
    platform: tuple[str, ...] = ()
    glibc: Version | None = None
    sdist: bool = False
    yanked: bool | str = False


@dataclass(frozen=True)
class Release:
    package: str
    version: str
    requires_dist: tuple[str, ...] | None
    requires_python: str | None
    yanked: bool | str
    metadata_source: str | None

    @property
    def files(self) -> tuple[WheelFile, ...]:
        """The release's files (read from store/files/ on first use: `kit check` rarely needs them)."""
        return _files(self.package, self.version)

    @property
    def sdist_only(self) -> bool:
        return bool(self.files) and all(f.sdist for f in self.files)

    @property
    def wheels(self) -> tuple[WheelFile, ...]:
        return tuple(f for f in self.files if not f.sdist)


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Doc:
    """One store file, parsed line by line on demand (the format of derive/storefile.py): a check
    asks about a handful of releases, so only their lines and the strings they cite are decoded."""

    def __init__(self, text: str):
        lines = text.split("\n")
        self.header: dict[str, Any] = {}
        self._strings: list[str] = []
        self._releases: dict[str, str] = {}
        section = None
        for line in lines[1:]:
            if line in ('"strings":[', '"releases":{'):
                section = line[1 : line.index('"', 1)]
            elif line in ("],", "}", ""):
                section = None
            elif section == "strings":
                self._strings.append(line.rstrip(","))
            elif section == "releases":
                key = line[1 : line.index('"', 1)]
                self._releases[key] = line
            else:
                self.header.update(json.loads("{" + line.rstrip(",") + "}"))
        self._parsed: dict[str, Any] = {}

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self._releases)

    def release(self, key: str) -> Any:
        if key not in self._releases:
            key = self.equal_key(key)
        if key not in self._parsed:
            line = self._releases.get(key)
            if line is None:
                return None
            self._parsed[key] = json.loads(line[len(key) + 3 :].rstrip(","))
        return self._parsed[key]

    def equal_key(self, key: str) -> str:
        """The recorded spelling of a version PEP 440 calls equal (0.9.2.0 == 0.9.2), else key."""
        try:
            wanted = Version(key)
            return next((k for k in self._releases if Version(k) == wanted), key)
        except InvalidVersion:
            return key

    def string(self, i: int) -> str:
        return json.loads(self._strings[i])


@cache
def _doc(kind: str, pkg: str) -> _Doc | None:
    try:
        return _Doc((STORE_DIR / kind / f"{pkg}.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _key(version: str) -> str | None:
    try:
        return str(Version(str(version)))
    except InvalidVersion:
        return None


def releases(pkg: str) -> tuple[str, ...]:
    doc = _doc("index", _canon(pkg))
    return doc.versions if doc else ()


@cache
def release(pkg: str, version: str) -> Release | None:
    pkg = _canon(pkg)
    doc, key = _doc("index", pkg), _key(version)
    r = doc.release(key) if doc is not None and key is not None else None
    if r is None:
        return None
    key = doc.equal_key(key) if key not in doc.versions else key
    meta = r.get("metadata")
    return Release(
        package=pkg,
        version=key,
        requires_dist=None if r.get("requires_dist") is None else tuple(doc.string(i) for i in r["requires_dist"]),
        requires_python=r.get("requires_python"),
        yanked=r.get("yanked", False),
        metadata_source=f"{pkg}=={key} {meta['file']} sha256:{meta['sha256']} ({meta['via']})" if meta else None,
    )


@cache
def _files(pkg: str, key: str) -> tuple[WheelFile, ...]:
    doc = _doc("files", pkg)
    return tuple(
        WheelFile(
            name=f["name"],
            sha256=f["sha256"],
            python=tuple(f.get("python", ())),
            abi=tuple(f.get("abi", ())),
            platform=tuple(f.get("platform", ())),
            glibc=Version(f["glibc"]) if f.get("glibc") else None,
            sdist=bool(f.get("sdist")),
            yanked=f.get("yanked", False),
        )
        for f in ((doc.release(key) or []) if doc else [])
    )


def torch_cuda(version: str) -> str | None:
    """The CUDA of a torch build: from its local tag (+cu126 -> 12.6, +cpu), else from what the PyPI build pins."""
    try:
        v = Version(str(version))
    except InvalidVersion:
        return None
    if v.local:
        if v.local == "cpu":
            return "cpu"
        m = _LOCAL_CUDA.match(v.local)
        return f"{m.group(1)}.{m.group(2)}" if m else None
    doc = _doc("index", "torch")
    r = doc.release(str(v)) if doc else None
    cuda = r.get("cuda") if r else None
    return cuda["cuda"] if cuda else None


def torch_archs(version: str) -> frozenset[str] | None:
    """The sm_XX (and compute_XX, where the build names PTX) a torch build ships kernels for, read
    from the string compiled into its libtorch_python.so; None when kit does not know."""
    try:
        v = Version(str(version))
    except InvalidVersion:
        return None
    if v.local == "cpu":
        return frozenset()
    rec = torch_archs_source(v.public)
    if rec is None or rec.get("archs") is None:
        return None
    # A local build (+cu126) comes from PyTorch's own index; PyTorch publishes its default CUDA
    # variant to PyPI without the tag, so only the variant with PyPI's CUDA is the same build.
    if v.local and torch_cuda(str(v)) != torch_cuda(v.public):
        return None
    return frozenset(rec["archs"])


def torch_archs_source(version: str) -> dict[str, Any] | None:
    """Where torch_archs() read a PyPI release's list: wheel file, sha256, member, the string itself."""
    doc, key = _doc("archs", "torch"), _key(version)
    return doc.release(key) if doc and key else None


def needed_libs(pkg: str, version: str) -> dict[str, list[str]] | None:
    rec = needed_libs_source(pkg, version)
    return {m: list(v["needed"]) for m, v in rec["members"].items()} if rec else None


def needed_libs_source(pkg: str, version: str) -> dict[str, Any] | None:
    doc, key = _doc("needed", _canon(pkg)), _key(version)
    return doc.release(key) if doc and key else None


def _platform_ok(plat: str, arch: str, glibc: Version | None) -> Version | None | bool:
    """The glibc floor of a compatible manylinux platform tag, True for `any`, False if incompatible."""
    if plat == "any":
        return True
    m = _MANYLINUX.match(plat)
    if m:
        floor, plat_arch = Version(f"{m.group(1)}.{m.group(2)}"), m.group(3)
    else:
        m = _LEGACY.match(plat)
        if not m:
            return False
        floor, plat_arch = Version("%d.%d" % LEGACY_MANYLINUX[m.group(1)]), m.group(2)
    if plat_arch != arch or (glibc is not None and floor > glibc):
        return False
    return floor


def _python_ok(f: WheelFile, py: tuple[int, int]) -> bool:
    """Whether a wheel's Python/ABI tags install on CPython py (standard, not free-threaded, build)."""
    for interp in f.python:
        digits = interp[2:]
        if interp.startswith("py"):
            if digits == str(py[0]) or (len(digits) > 1 and digits[0] == str(py[0]) and int(digits[1:]) <= py[1]):
                return True
        elif interp.startswith("cp") and digits.isdigit() and digits[0] == str(py[0]):
            minor = int(digits[1:])
            if "abi3" in f.abi and minor <= py[1]:
                return True
            if minor == py[1] and (f"cp{digits}" in f.abi or "none" in f.abi):
                return True
    return False


def _py(python: str) -> tuple[int, int]:
    parts = str(python).split(".")
    return int(parts[0]), int(parts[1])


def wheel_glibc_floor(pkg: str, version: str, python: str, platform: str = "x86_64") -> Version | None:
    rel = release(pkg, version)
    if rel is None:
        return None
    floors = []
    for f in rel.wheels:
        if not _python_ok(f, _py(python)):
            continue
        for plat in f.platform:
            got = _platform_ok(plat, platform, None)
            if isinstance(got, Version):
                floors.append(got)
    return min(floors) if floors else None


def has_wheel_for(pkg: str, version: str, python_version: str, glibc: Version | str | None, arch: str = "x86_64") -> bool | None:
    rel = release(pkg, version)
    if rel is None:
        return None
    g = Version(str(glibc)) if glibc is not None else None
    return any(
        _python_ok(f, _py(python_version)) and any(_platform_ok(p, arch, g) is not False for p in f.platform) for f in rel.wheels
    )
