"""Record what the package index says about every release: metadata, files, tags, yanks.

For each package in PACKAGES and each of its releases at or above the floor (pre-releases included):
  - the files (PEP 691 JSON simple API): name, sha256, size, yanked; for a wheel its Python, ABI and
    platform tags and the manylinux glibc floor (packaging.utils.parse_wheel_filename); sdists;
  - Requires-Dist and Requires-Python of one wheel (PEP 658 `<file>.metadata`; where the index has no
    such file, the wheel's own `*.dist-info/METADATA` read by HTTP range requests), named with the
    file and its sha256 it came from. A release with no wheel has no recorded metadata: an sdist's
    dependencies may be decided when it is built;
  - for torch, the CUDA runtime its PyPI Linux x86_64 build pins (`nvidia-cuda-runtime*==X.Y.Z`, or
    `cuda-toolkit[cudart]==X.Y.Z` from 2.11), with the requirement string it was read from.

Incremental: a release already in the store keeps its metadata and is not fetched again; its files and
yank flags are refreshed from the one index page per package. Output is sorted and stable.
"""

from __future__ import annotations

import email.parser
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .fetch import Fetcher, NotFound
from .remote_zip import RemoteZip
from .storefile import read_doc, write_doc

# package -> lowest release recorded (None: every release on the index). The engines and their
# kernels, attention and structured-output libraries are recorded whole; libraries the rules only need
# from the engines' era (late 2023 on) start there, so the store stays small.
PACKAGES: dict[str, str | None] = {
    "vllm": "0.2.0",
    "sglang": "0.1",
    "sgl-kernel": None,
    "sglang-kernel": None,
    "flashinfer-python": None,
    "flashinfer-cubin": None,
    "flashinfer-jit-cache": None,  # published on flashinfer.ai's own index; recorded as absent if so
    "xgrammar": None,
    "transformers": None,
    "torch": None,
    "huggingface-hub": None,
    "tokenizers": "0.13.0",
    "triton": "2.0.0",
    "numpy": "1.24.0",
    "numba": "0.57.0",
    "outlines": None,
    "outlines-core": None,
    "llguidance": None,
    "xformers": "0.0.22",
    "vllm-flash-attn": None,
    "hf-transfer": None,
}

# The legacy manylinux names and the glibc they stand for (PEP 600).
LEGACY_MANYLINUX = {"manylinux1": "2.5", "manylinux2010": "2.12", "manylinux2014": "2.17"}
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_")
_METADATA_MEMBER = re.compile(r"^[^/]+\.dist-info/METADATA$")
_CUDA_RUNTIME = re.compile(r"^nvidia-cuda-runtime(-cu\d+)?$")


def glibc_floor(platforms: list[str]) -> str | None:
    """The lowest glibc a wheel's manylinux platform tags promise to run on (None: no manylinux tag)."""
    floors = []
    for plat in platforms:
        m = _MANYLINUX.match(plat)
        if m:
            floors.append((int(m.group(1)), int(m.group(2))))
        else:
            legacy = LEGACY_MANYLINUX.get(plat.split("_", 1)[0])
            if legacy:
                floors.append(tuple(int(x) for x in legacy.split(".")))
    return ".".join(map(str, min(floors))) if floors else None


def file_facts(filename: str) -> tuple[Version, dict[str, Any]] | None:
    """The version a file belongs to and what its name says (None: not a wheel or sdist name)."""
    try:
        if filename.endswith(".whl"):
            _, version, _, tags = parse_wheel_filename(filename)
            tags_ = sorted(tags, key=str)
            plats = sorted({t.platform for t in tags_})
            facts = {
                "python": sorted({t.interpreter for t in tags_}),
                "abi": sorted({t.abi for t in tags_}),
                "platform": plats,
            }
            floor = glibc_floor(plats)
            if floor:
                facts["glibc"] = floor
            return version, facts
        _, version = parse_sdist_filename(filename)
        return version, {"sdist": True}
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def _preference(name: str) -> tuple:
    """Which wheel's metadata stands for the release: Linux x86_64 first, then the newest CPython."""
    if not name.endswith(".whl"):
        return (9,)
    tags: frozenset[Tag] = parse_wheel_filename(name)[3]
    plat = {t.platform for t in tags}
    linux_x86 = any(p.endswith("x86_64") and ("linux" in p) for p in plat)
    any_plat = "any" in plat
    py = max((int(t.interpreter[2:]) if t.interpreter[2:].isdigit() else 0) for t in tags)
    rank = 0 if linux_x86 else 1 if any_plat else 2
    # Prefer cp312 (the Python most stacks run) over newer ones that sometimes carry other pins.
    return (rank, abs(py - 312) if py >= 300 else 100 - py, name)


def parse_metadata(raw: bytes) -> dict[str, Any]:
    msg = email.parser.BytesHeaderParser().parsebytes(raw)
    return {"requires_python": msg.get("Requires-Python"), "requires_dist": [str(r).strip() for r in msg.get_all("Requires-Dist") or []]}


def read_metadata(fetcher: Fetcher, file: dict[str, Any]) -> dict[str, Any]:
    """Requires-* of one wheel: its PEP 658 metadata, else its METADATA member by range requests."""
    try:
        return {**parse_metadata(fetcher.get(file["url"] + ".metadata")), "via": "pep658"}
    except NotFound:
        pass
    zf = RemoteZip(fetcher, file["url"], file["size"])
    found = zf.find_in_tail(_METADATA_MEMBER)
    if found is None:
        names = [n for n in zf.members() if _METADATA_MEMBER.match(n)]
        if len(names) != 1:
            raise RuntimeError(f"{file['filename']}: expected one .dist-info/METADATA, found {names}")
        found = zf.members()[names[0]]
    return {**parse_metadata(zf.read(found.name)), "via": "wheel-range"}


_LINUX_X86 = {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64", "os_name": "posix"}


def cuda_runtime(requires_dist: list[str]) -> dict[str, str] | None:
    """The CUDA runtime a torch build pins on Linux x86_64 (nvidia-cuda-runtime-cuXX==X.Y.Z, or
    cuda-toolkit[cudart]==X.Y.Z from torch 2.11), with the requirement it was read from; None if none."""
    for raw in requires_dist:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if not (_CUDA_RUNTIME.match(name) or (name == "cuda-toolkit" and "cudart" in req.extras)):
            continue
        if req.marker is not None and not req.marker.evaluate({**_LINUX_X86, "extra": "", "python_version": "3.12", "python_full_version": "3.12.0"}):
            continue
        pins = [s.version for s in req.specifier if s.operator == "=="]
        if pins:
            major, minor = pins[0].split(".")[:2]
            return {"cuda": f"{major}.{minor}", "from": raw}
    return None


def _release_files(page: dict, floor: Version | None) -> dict[str, list[dict[str, Any]]]:
    by_version: dict[str, list[dict[str, Any]]] = {}
    for f in page["files"]:
        parsed = file_facts(f["filename"])
        if parsed is None:
            continue
        version, facts = parsed
        if floor is not None and version < floor:
            continue
        row = {"name": f["filename"], "sha256": f["hashes"].get("sha256"), "size": f.get("size"), **facts}
        if f.get("yanked"):
            row["yanked"] = f["yanked"] if isinstance(f["yanked"], str) and f["yanked"] else True
        row["_url"], row["_requires_python"] = f["url"], f.get("requires-python")
        by_version.setdefault(str(version), []).append(row)
    return by_version


def refresh_package(fetcher: Fetcher, store_dir: Path, name: str, floor: str | None, log=print) -> dict[str, int]:
    """Bring one package's store file up to date with the index; return counts for the summary."""
    path, files_path = store_dir / "index" / f"{name}.json", store_dir / "files" / f"{name}.json"
    old = read_doc(path) if path.exists() else {}
    old_releases = {v: _expand(old, r) for v, r in old.get("releases", {}).items()}
    try:
        page = fetcher.project(name)
    except NotFound:
        write_doc(path, {"package": name, "index": fetcher.index, "on_index": False, "floor": floor, "releases": {}})
        write_doc(files_path, {"package": name, "releases": {}})
        log(f"{name}: not on {fetcher.index}")
        return {"new": 0, "releases": 0}
    by_version = _release_files(page, Version(floor) if floor else None)
    todo = []
    releases: dict[str, dict[str, Any]] = {}
    for version, files in by_version.items():
        prev = old_releases.get(version)
        rel = {k: prev[k] for k in ("requires_python", "requires_dist", "metadata", "cuda") if prev and k in prev}
        files.sort(key=lambda r: r["name"])
        rel["files"] = files
        if all(f.get("yanked") for f in files):
            rel["yanked"] = next((f["yanked"] for f in files if isinstance(f["yanked"], str)), True)
        if Version(version).local:
            rel["local"] = Version(version).local
        releases[version] = rel
        if prev is None:
            todo.append(version)

    def fetch_one(version: str) -> tuple[str, dict[str, Any] | None, str | None]:
        wheels = sorted((f for f in releases[version]["files"] if f["name"].endswith(".whl")), key=lambda f: _preference(f["name"]))
        if not wheels:
            return version, None, None
        pick = wheels[0]
        try:
            meta = read_metadata(fetcher, {"url": pick["_url"], "size": pick["size"], "filename": pick["name"]})
        except Exception as exc:  # one bad file must not lose the rest of the refresh
            return version, None, f"{pick['name']}: {exc}"
        meta["file"], meta["sha256"] = pick["name"], pick["sha256"]
        return version, meta, None

    with ThreadPoolExecutor(12) as pool:
        for version, meta, err in pool.map(fetch_one, sorted(todo, key=Version)):
            rel = releases[version]
            if err:
                log(f"{name} {version}: metadata not read ({err}); will retry on the next refresh", file=sys.stderr)
                del releases[version]
                continue
            if meta is None:
                rel["metadata"] = None
                rel["requires_python"] = next((f["_requires_python"] for f in rel["files"] if f["_requires_python"]), None)
                rel["requires_dist"] = None
                continue
            rel["requires_python"] = meta["requires_python"]
            rel["requires_dist"] = meta["requires_dist"]
            rel["metadata"] = {"file": meta["file"], "sha256": meta["sha256"], "via": meta["via"]}
            if name == "torch":
                rel["cuda"] = cuda_runtime(meta["requires_dist"])
    for rel in releases.values():
        for f in rel["files"]:
            f.pop("_url", None)
            f.pop("_requires_python", None)
    files = {v: releases[v].pop("files") for v in sorted(releases, key=Version)}
    doc = {"package": name, "index": fetcher.index, "floor": floor, "releases": releases}
    # Metadata and files apart: `kit check` reads only the metadata, the smaller half.
    write_doc(files_path, {"package": name, "releases": files})
    write_doc(path, _compact(doc))
    return {"new": len([v for v in todo if v in releases]), "releases": len(releases)}


def _compact(doc: dict[str, Any]) -> dict[str, Any]:
    """Requires-Dist strings once per package (a table), releases sorted by version."""
    strings = sorted({s for r in doc["releases"].values() for s in r.get("requires_dist") or []})
    at = {s: i for i, s in enumerate(strings)}
    releases = {}
    for v in sorted(doc["releases"], key=Version):
        r = dict(doc["releases"][v])
        if r.get("requires_dist") is not None:
            r["requires_dist"] = [at[s] for s in r["requires_dist"]]
        releases[v] = r
    return {**{k: v for k, v in doc.items() if k != "releases"}, "strings": strings, "releases": releases}


def _expand(doc: dict[str, Any], rel: dict[str, Any]) -> dict[str, Any]:
    strings = doc.get("strings", [])
    out = dict(rel)
    if out.get("requires_dist") is not None:
        out["requires_dist"] = [strings[i] for i in out["requires_dist"]]
    return out


def refresh(store_dir: Path, packages: list[str] | None = None, fetcher: Fetcher | None = None, log=print) -> dict[str, dict[str, int]]:
    """Refresh the index facts of packages (default: all of PACKAGES) under store_dir."""
    fetcher = fetcher or Fetcher()
    names = [canonicalize_name(p) for p in packages] if packages else sorted(PACKAGES)
    unknown = [n for n in names if n not in PACKAGES]
    if unknown:
        raise ValueError(f"not recorded by kit: {', '.join(unknown)} (PACKAGES in {__name__})")
    summary = {}
    for name in names:
        summary[name] = refresh_package(fetcher, store_dir, name, PACKAGES[name], log=log)
        log(f"{name}: {summary[name]['releases']} releases, {summary[name]['new']} new")
    return summary
