"""Record package metadata (Requires-Dist, Requires-Python) from the package index into kit/data/metadata.json.

kit check reads this snapshot so that it can compare pins against what each package declares
without the network. Run it again when a profile pins a release that is not recorded yet:

    python scripts/record_metadata.py            # every vLLM release >= 0.8.4 and every pin in profiles/
    python scripts/record_metadata.py sglang==0.5.2 vllm==0.34.0

It asks pip for the metadata only (`pip install --dry-run --no-deps --report`, which reads the
index's PEP 658 metadata files and downloads no wheel).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "kit" / "data" / "metadata.json"
FLOOR = {"vllm": Version("0.8.4")}
# pip matches --platform tags exactly, so name every glibc level a wheel may be tagged with.
PLATFORMS = [arg for n in ("1", "2010", "2014", "_2_17", "_2_24", "_2_27", "_2_28", "_2_31", "_2_34", "_2_35", "_2_39")
             for arg in ("--platform", f"manylinux{n}_x86_64")]


def index_versions(name: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Available versions: (.*)", out)
    return [v.strip() for v in match.group(1).split(",")] if match else []


def metadata(req: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--no-deps", "--ignore-installed",
            "--only-binary", ":all:", "--python-version", "3.12", *PLATFORMS,
            "--target", str(Path(tmp) / "t"), "--report", str(report), req,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": tmp, "PIP_CONSTRAINT": "", "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"})
        if proc.returncode != 0:
            # No wheel: an sdist's dependencies may be computed at build time (flashinfer-python's
            # setup.py pins the torch it was built against), so nothing trustworthy can be recorded.
            return {"error": "no wheel on the index (sdist only); its metadata is decided at build time"}
        item = json.loads(report.read_text())["install"][0]
        meta = item["metadata"]
        return {
            "requires_python": meta.get("requires_python"),
            "requires_dist": meta.get("requires_dist", []),
            "source": item["download_info"]["url"].rsplit("/", 1)[-1],
        }


def profile_pins() -> set[str]:
    pins = set()
    for path in (ROOT / "profiles").glob("*.toml"):
        for name, version in tomllib.loads(path.read_text()).get("packages", {}).items():
            pins.add(f"{canonicalize_name(name)}=={version}")
    return pins


def main(argv: list[str]) -> None:
    wanted = set(argv)
    if not wanted:
        wanted = profile_pins()
        for name, floor in FLOOR.items():
            wanted |= {f"{name}=={v}" for v in index_versions(name) if not Version(v).is_prerelease and Version(v) >= floor}
    current = json.loads(OUT.read_text()) if OUT.exists() else {"packages": {}}
    todo = sorted(w for w in wanted if w not in current["packages"])
    with ThreadPoolExecutor(8) as pool:
        for req, meta in zip(todo, pool.map(metadata, todo)):
            if "error" in meta:
                print(f"skip {req}: {meta['error']}", file=sys.stderr)
                continue
            current["packages"][req] = meta
            print(f"recorded {req}")
    current["recorded"] = date.today().isoformat()
    current["how"] = "pip install --dry-run --no-deps --report (the index's metadata for each release); see scripts/record_metadata.py"
    current["packages"] = dict(sorted(current["packages"].items()))
    OUT.write_text(json.dumps(current, indent=1, sort_keys=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
