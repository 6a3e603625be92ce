"""Record the GPU architectures each PyPI torch build ships kernels for, from the build itself.

torch compiles its TORCH_CUDA_ARCH_LIST into libtorch_python.so as the string that
`torch.cuda.get_arch_list()` returns ("sm_50 sm_60 ... sm_90"). For each torch release's Linux x86_64
wheel, this streams that member through HTTP range requests (inflating as it goes) and stops at the
first such string: about 8-11 MB downloaded of a 700+ MB wheel. `compute_XX` entries (PTX) are
recorded when the string names them (no PyPI build so far does). A build whose library holds no such
string (torch before 1.6) is recorded with `archs: null`: unknown.

Written to store/archs/torch.json; a release already there is not read again.
"""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.version import Version

from .elf import _linux_wheel
from .fetch import Fetcher
from .remote_zip import RemoteZip
from .storefile import read_doc, write_doc

MEMBER = "torch/lib/libtorch_python.so"
CAP = 64 * 1024 * 1024  # compressed bytes, at most: the whole member of every release so far
ARCH_STRING = re.compile(rb"(?<![\w])(?:sm|compute)_\d+a?(?: (?:sm|compute)_\d+a?)+(?![\w])")
PACKAGES = {"torch": None}


def arch_string(zf: RemoteZip, member: str) -> tuple[str | None, int]:
    """The first arch list string in member, and the decompressed offset it ends at (or bytes read)."""
    carry, seen = b"", 0
    for block in zf.stream(member, CAP):
        buf = carry + block
        hit = ARCH_STRING.search(buf)
        # A hit that touches the end of the buffer may continue in the next block.
        if hit and hit.end() < len(buf):
            return hit.group(0).decode(), seen - len(carry) + hit.end()
        seen += len(block)
        carry = buf[-256:]
    return None, seen


def refresh(store_dir: Path, packages: list[str] | None = None, fetcher: Fetcher | None = None, log=print) -> dict[str, Any]:
    """Record the arch lists of torch releases not yet in store/archs/torch.json."""
    if packages is not None and "torch" not in packages:
        return {}
    fetcher = fetcher or Fetcher()
    files_doc = read_doc(store_dir / "files" / "torch.json")
    path = store_dir / "archs" / "torch.json"
    releases = dict(read_doc(path)["releases"]) if path.exists() else {}
    todo = [(v, _linux_wheel(files)) for v, files in files_doc["releases"].items() if v not in releases]
    todo = [(v, w) for v, w in todo if w and w["name"].endswith(".whl") and "any" not in w["platform"]]
    urls = {f["filename"]: f["url"] for f in fetcher.project("torch")["files"]} if todo else {}

    def one(item: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any] | None, str | None]:
        version, wheel = item
        try:
            zf = RemoteZip(fetcher, urls[wheel["name"]], wheel["size"])
            if MEMBER not in zf.members():
                return version, {"file": wheel["name"], "sha256": wheel["sha256"], "archs": None, "member": None}, None
            found, offset = arch_string(zf, MEMBER)
        except Exception as exc:  # one unreadable wheel must not lose the others
            return version, None, f"{wheel['name']}: {exc}"
        # No string: torch before 1.6 did not embed one; the build's archs are unknown, not none.
        archs = sorted(set(found.split()), key=lambda a: (int(re.sub(r"\D", "", a)), a)) if found else None
        return version, {"file": wheel["name"], "sha256": wheel["sha256"], "member": MEMBER, "string": found, "offset": offset, "archs": archs}, None

    with ThreadPoolExecutor(4) as pool:
        for version, rec, err in pool.map(one, todo):
            if err:
                log(f"torch {version}: arch list not read ({err}); will retry on the next refresh", file=sys.stderr)
            else:
                releases[version] = rec
    new = len([v for v, _ in todo if v in releases])
    write_doc(path, {"package": "torch", "cap_bytes": CAP, "releases": {v: releases[v] for v in sorted(releases, key=Version)}})
    log(f"torch: arch lists of {len(releases)} releases, {new} new")
    return {"torch": {"new": new, "releases": len(releases)}}
