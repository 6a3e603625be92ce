"""Record the shared libraries compiled kernels need (ELF DT_NEEDED), reading a bounded prefix of each.

For each release of the packages in KERNELS, the Linux x86_64 wheel the index store names: its zip
directory (range requests on the tail), then, for each member matching the package's pattern, the
member's first blocks, inflated incrementally until kit.knowledge.derive.elf_read has its answer or
CAP compressed bytes were downloaded. A whole wheel is never downloaded. Each fact names the wheel
file and sha256 and the method that produced it (see elf_read).

Written to store/needed/<package>.json; a release already there is not read again.
"""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.version import Version

from . import elf_read
from .fetch import Fetcher
from .index import _preference
from .remote_zip import RemoteZip
from .storefile import read_doc, write_doc

CAP = 16 * 1024 * 1024  # compressed bytes read per member, at most
DYNAMIC_REACH = 48 * 1024 * 1024  # chase PT_DYNAMIC only when it lies this near the start
MAX_MEMBERS = 6  # members read per wheel; the rest are listed as not read

KERNELS: dict[str, re.Pattern[str]] = {
    "vllm": re.compile(r"^vllm/_C[^/]*\.so$"),
    "sgl-kernel": re.compile(r"^sgl_kernel/(?:[^/]+/)?common_ops[^/]*\.so$"),
    "sglang-kernel": re.compile(r"^sgl_kernel/(?:[^/]+/)?common_ops[^/]*\.so$"),
    "flashinfer-python": re.compile(r"^flashinfer/.*\.so$"),
}
PACKAGES = KERNELS


def member_needed(zf: RemoteZip, name: str) -> dict[str, Any]:
    buf = bytearray()
    size = zf.members()[name].size
    for block in zf.stream(name, CAP):
        buf += block
        if elf_read.enough(buf, DYNAMIC_REACH):
            break
    found = elf_read.needed(bytes(buf), whole=len(buf) >= size)
    return {**found.as_dict(), "prefix": len(buf)}


def wheel_needed(fetcher: Fetcher, url: str, size: int, pattern: re.Pattern[str]) -> dict[str, Any]:
    zf = RemoteZip(fetcher, url, size)
    names = sorted(n for n in zf.members() if pattern.match(n))
    members = {n: member_needed(zf, n) for n in names[:MAX_MEMBERS]}
    out: dict[str, Any] = {"members": members}
    if names[MAX_MEMBERS:]:
        out["not_read"] = names[MAX_MEMBERS:]
    return out


def _linux_wheel(files: list[dict[str, Any]]) -> dict[str, Any] | None:
    wheels = [f for f in files if f["name"].endswith(".whl") and not f.get("yanked")]
    linux = [f for f in wheels if any("linux" in p and p.endswith("x86_64") for p in f["platform"]) or f["platform"] == ["any"]]
    return min(linux, key=lambda f: _preference(f["name"])) if linux else None


def refresh_package(fetcher: Fetcher, store_dir: Path, name: str, log=print) -> dict[str, int]:
    files_doc = read_doc(store_dir / "files" / f"{name}.json")
    path = store_dir / "needed" / f"{name}.json"
    old = read_doc(path)["releases"] if path.exists() else {}
    releases = dict(old)
    todo = []
    for version, files in files_doc["releases"].items():
        if version in old:
            continue
        pick = _linux_wheel(files)
        if pick:
            todo.append((version, pick))
    urls = {f["filename"]: f["url"] for f in fetcher.project(name)["files"]} if todo else {}

    def one(item: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any] | None, str | None]:
        version, f = item
        try:
            found = wheel_needed(fetcher, urls[f["name"]], f["size"], KERNELS[name])
        except Exception as exc:  # one unreadable wheel must not lose the others
            return version, None, f"{f['name']}: {exc}"
        return version, {"file": f["name"], "sha256": f["sha256"], **found}, None

    with ThreadPoolExecutor(6) as pool:
        for version, rec, err in pool.map(one, todo):
            if err:
                log(f"{name} {version}: not read ({err}); will retry on the next refresh", file=sys.stderr)
            else:
                releases[version] = rec
    doc = {"package": name, "cap_bytes": CAP, "pattern": KERNELS[name].pattern, "releases": {v: releases[v] for v in sorted(releases, key=Version)}}
    write_doc(path, doc)
    return {"new": len(releases) - len(old), "releases": len(releases)}


def refresh(store_dir: Path, packages: list[str] | None = None, fetcher: Fetcher | None = None, log=print) -> dict[str, dict[str, int]]:
    """Record DT_NEEDED of the kernels of packages (default: all of KERNELS) under store_dir."""
    fetcher = fetcher or Fetcher()
    summary = {}
    for name in packages or sorted(KERNELS):
        if name not in KERNELS:
            continue
        summary[name] = refresh_package(fetcher, store_dir, name, log=log)
        log(f"{name}: kernels of {summary[name]['releases']} releases, {summary[name]['new']} new")
    return summary
