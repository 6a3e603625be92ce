"""What a profile's base image holds: kit/data/images.toml and images.recorded.json, evaluated.

On `kit check`'s path: reads two small data files, imports nothing heavy. A fact kit does not know
stays None (never a guess); `ImageFacts.unknown` names what could not be checked.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from packaging.version import InvalidVersion, Version

from kit import catalog

# The Debian release kit assumes for debian_slim when the profile names no builder version: the
# release of every builder version from 2024.04 to 2025.06 (bookworm).
DEFAULT_BUILDER_VERSION = "2025.06"
_CUDA_TAG = re.compile(r":(\d+\.\d+(?:\.\d+)?)-")
_PYTHON_TAG = re.compile(r"^python:(3\.\d+)")


@dataclass(frozen=True)
class ImageFacts:
    base: str
    known: bool  # a row of images.toml matched
    os: str | None = None
    glibc: Version | None = None
    python: str | None = None  # the image's own Python `3.X`; None when Modal adds the profile's
    python_from_profile: bool = False  # Modal installs the profile's image.python (debian_slim, add_python)
    python_on_path: bool | None = None  # `python` on PATH (Modal's from_registry needs it)
    entrypoint: tuple[str, ...] = ()  # an ENTRYPOINT that does not run its arguments (Modal's command): cleared
    cuda: str | None = None
    nvcc: bool | None = None
    libnuma: bool | None = None
    compilers: bool | None = None
    slim: bool = False
    engine: str | None = None  # the engine an official engine image holds
    packages: dict[str, str] = field(default_factory=dict)  # what the engine image holds, canonical name -> version
    engine_extra: str | None = None  # the extra the image installs the engine with (`sglang[all]`)
    no_deps: tuple[str, ...] = ()  # installed over the engine's metadata (--no-deps): held, but no resolver constraint
    sources: tuple[str, ...] = ()

    @property
    def unknown(self) -> list[str]:
        """What kit could not check for this image, in the words a finding uses."""
        missing = []
        if self.glibc is None:
            missing.append("glibc (the lock's platform tag and the wheels' manylinux floors)")
        if self.nvcc is None:
            missing.append("nvcc (JIT kernels: FlashInfer, DeepGEMM)")
        if self.python is None and not self.python_from_profile:
            missing.append("Python (the version uv resolves for)")
        return missing


@cache
def _data() -> tuple[dict[str, Any], dict[str, Any]]:
    toml = catalog.data_file("images.toml")
    recorded = json.loads(resources.files("kit").joinpath("data", "images.recorded.json").read_text(encoding="utf-8"))
    return toml, recorded


def image_facts(base: str, builder_version: str | None = None) -> ImageFacts:
    """The facts of one base image (and, for debian_slim, of one Modal image builder version)."""
    toml, recorded = _data()
    row = next((r for r in toml.get("image", []) if _matches(base, r["match"])), None)
    if row is None:
        return ImageFacts(base=base, known=False)
    sources = list(row.get("sources", []))
    os_name, glibc = row.get("os"), row.get("glibc")
    os_row = next((r for r in toml.get("os", []) if fnmatch.fnmatch(os_name or base, r["match"])), None)
    if os_row is not None:
        os_name, glibc = os_row["os"], os_row["glibc"]
        sources += os_row["sources"]
    if base == "debian_slim":
        slim_row = recorded["debian_slim"][builder_version or DEFAULT_BUILDER_VERSION]
        os_name, glibc = slim_row["os"], slim_row["glibc"]
        sources += slim_row["sources"]
    python = row.get("python")
    if row.get("python_from_tag"):
        m = _PYTHON_TAG.match(base)
        python = m.group(1) if m else None
    cuda = row.get("cuda")
    if row.get("cuda_from_tag"):
        m = _CUDA_TAG.search(base)
        cuda = m.group(1) if m else None
    engine_row = recorded["engine_images"].get(row["match"]) if row.get("engine") else None  # engine rows match one tag
    if engine_row:
        sources += engine_row["sources"][1:]
    return ImageFacts(
        base=base,
        known=True,
        os=os_name,
        glibc=_version(glibc),
        python=python,
        python_from_profile=bool(row.get("python_from_profile")),
        python_on_path=row.get("python_on_path"),
        entrypoint=tuple(row.get("entrypoint", ())),
        cuda=cuda,
        nvcc=row.get("nvcc"),
        libnuma=row.get("libnuma"),
        compilers=row.get("compilers"),
        slim=bool(row.get("slim", False)),
        engine=row.get("engine"),
        packages=dict(engine_row["packages"]) if engine_row else {},
        engine_extra=row.get("engine_extra"),
        no_deps=tuple(engine_row.get("no_deps", ())) if engine_row else (),
        sources=tuple(sources),
    )


def _matches(base: str, match: str | list[str]) -> bool:
    return any(fnmatch.fnmatchcase(base, m) for m in ([match] if isinstance(match, str) else match))


def _version(text: str | None) -> Version | None:
    try:
        return Version(str(text)) if text else None
    except InvalidVersion:
        return None


def is_release(version: str | Version) -> bool:
    """A published release: not a dev, pre- or local build (`0.22.1rc1.dev188`, `0.9.0+g1a2b3c`)."""
    v = version if isinstance(version, Version) else _version(version)
    return v is not None and not (v.is_devrelease or v.is_prerelease or v.local)


def python_series(builder_version: str) -> tuple[list[str], str]:
    """The Python series Modal's image builder accepts at this builder version, and the source of that fact."""
    _, recorded = _data()
    rec = recorded["python_series"]
    return list(rec["series"].get(builder_version, [])), rec["source"]
